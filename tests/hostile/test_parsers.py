"""Property tests of what parses request text (pure, no server): every hostile input is a clean
error naming its parameter (a 400 ``Status``, or the parser's own error), never anything else;
valid input round-trips; and no request text ever becomes SQL text."""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from apiserver import pagination
from apiserver.params import (
    MAX_LIMIT,
    MAX_RESOURCE_VERSION,
    field_selector,
    label_selector,
    list_options,
    parse_resource_version,
)
from apiserver.query import EVERYTHING_SCOPE, Target, compiled, list_statement
from apiserver.search import search_options
from apiserver.times import BadTime, parse_time, time_param
from kube.selectors import LabelOp, Requirement, SelectorError, parse_field_selector, parse_label_selector
from kube.status import StatusError

# Text an attacker controls: any code point (surrogates and NUL included), and the
# characters selector grammars give meaning to, often.
HOSTILE = st.text(st.one_of(st.characters(codec=None), st.sampled_from("!=(),<>\\ .[]'\"\x00in")),
                  max_size=80)
SYNTAX = st.text(alphabet="abc=!(),<> \\.[]'\"-_/0123456789in", max_size=60)


def _refused(call: object, *, parameter: str) -> StatusError:
    """``call()`` raised a 400 Status naming ``parameter``."""
    assert callable(call)
    with pytest.raises(StatusError) as caught:
        call()
    error = caught.value
    assert (error.code, error.reason) == (400, "BadRequest")
    squashed = error.message.replace(" ", "").lower()
    assert parameter.replace(" ", "").lower() in squashed, error.message
    return error


# -- label selectors ------------------------------------------------------------------------------

NAME = st.from_regex(r"[a-z0-9]([-a-z0-9_.]{0,20}[a-z0-9])?", fullmatch=True)
PREFIX = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,2}", fullmatch=True)
KEY = st.one_of(NAME, st.builds(lambda p, n: f"{p}/{n}", PREFIX, NAME))
VALUE = st.one_of(st.just(""), NAME)


@st.composite
def requirement(draw: st.DrawFn) -> tuple[str, Requirement]:
    key = draw(KEY)
    op: LabelOp = draw(st.sampled_from(["=", "!=", "in", "notin", "exists", "!"]))
    written = "==" if op == "=" and draw(st.booleans()) else op
    if op in ("exists", "!"):
        return (key if op == "exists" else f"!{key}"), Requirement(key, op)
    if op in ("in", "notin"):
        values = draw(st.lists(NAME, min_size=1, max_size=4, unique=True))
        return f"{key} {op} ({','.join(values)})", Requirement(key, op, tuple(values))
    value = draw(VALUE)
    return f"{key}{written}{value}", Requirement(key, op, (value,))


@given(st.lists(requirement(), min_size=1, max_size=5))
def test_a_valid_label_selector_parses_to_its_requirements(reqs: list[tuple[str, Requirement]]) -> None:
    text = ",".join(t for t, _ in reqs)
    assert parse_label_selector(text).requirements == tuple(r for _, r in reqs)


def _holds(req: Requirement, labels: Mapping[str, str]) -> bool:
    """Kubernetes' meaning of one requirement, written independently of the parser."""
    present, value = req.key in labels, labels.get(req.key)
    return {"=": present and value in req.values, "in": present and value in req.values,
            "!=": not present or value not in req.values, "notin": not present or value not in req.values,
            "exists": present, "!": not present}[req.op]


@given(st.lists(requirement(), min_size=1, max_size=4),
       st.dictionaries(st.sampled_from(["a", "b", "x.io/c"]), st.sampled_from(["", "a", "b"]), max_size=3))
def test_a_label_selector_matches_what_kubernetes_would(reqs: list[tuple[str, Requirement]],
                                                         labels: dict[str, str]) -> None:
    keys = ["a", "b", "x.io/c"]
    # Point the generated keys at the labels' keys, so that matches are not all vacuous.
    rewritten = [(t.replace(r.key, keys[i % 3], 1), Requirement(keys[i % 3], r.op, r.values))
                 for i, (t, r) in enumerate(reqs)]
    selector = parse_label_selector(",".join(t for t, _ in rewritten))
    assert selector.matches(labels) == all(_holds(r, labels) for _, r in rewritten)


@given(st.one_of(HOSTILE, SYNTAX))
def test_any_label_selector_text_parses_or_is_a_400_naming_it(text: str) -> None:
    try:
        parse_label_selector(text)
    except SelectorError:
        _refused(lambda: label_selector(text), parameter="labelSelector")


@given(st.integers(min_value=1, max_value=50))
def test_an_overlong_label_selector_is_refused_before_it_is_parsed(extra: int) -> None:
    _refused(lambda: label_selector("a=b," * (4096 + extra)), parameter="labelSelector")


# -- field selectors and JSON paths ---------------------------------------------------------------

PATH_KEY = st.from_regex(r"[A-Za-z_][-A-Za-z0-9_]{0,12}", fullmatch=True)
PATH = st.lists(st.one_of(PATH_KEY, st.just("[]")), min_size=1, max_size=5).map(
    lambda steps: ".".join(steps).replace(".[]", "[]").lstrip("[]") or "spec")
FIELD_VALUE = st.text(alphabet=string.ascii_letters + string.digits + "-_.:/", max_size=20)


@given(st.one_of(HOSTILE, SYNTAX), st.sampled_from(["Pod", "Deployment", "Node", "Widget"]))
def test_any_field_selector_text_parses_or_is_a_400_naming_it(text: str, kind: str) -> None:
    try:
        parse_field_selector(text, kind, json_paths=True)
    except SelectorError:
        _refused(lambda: field_selector(text, kind), parameter="fieldSelector")


@given(st.lists(st.tuples(PATH, st.sampled_from(["=", "!=", "in", "notin", "exists", "!", ">", "<"]),
                          FIELD_VALUE), min_size=1, max_size=4))
def test_a_json_path_selector_compiles_with_every_value_bound(terms: list[tuple[str, str, str]]) -> None:
    parts, values = [], []
    for path, op, value in terms:
        marked = f"zq{value}qz"  # found in the SQL text only if the value were pasted into it
        if op in ("exists", "!"):
            parts.append(path if op == "exists" else f"!{path}")
        elif op in (">", "<"):
            parts.append(f"{path}{op}{len(value)}")
        else:
            parts.append(f"{path} {op} ({marked})" if op in ("in", "notin") else f"{path}{op}{marked}")
            values.append(marked)
    try:
        fields = field_selector(",".join(parts), "Pod")
    except StatusError as error:  # e.g. a path whose key is a grammar word
        assert error.code == 400
        return
    _compiles_without(Target(group="", version="v1", resource="pods", kind="Pod", fields=fields), values)


def _compiles_without(target: Target, values: list[str]) -> None:
    """The list query for ``target`` compiles; each of ``values`` is in its bound parameters,
    none in its SQL text."""
    sql, params = compiled(list_statement(target, EVERYTHING_SCOPE, limit=10))
    bound = repr(params)
    for value in values:
        assert value not in sql and value in bound, value


@given(st.lists(st.tuples(KEY, st.text(min_size=4, max_size=30)), min_size=1, max_size=3))
def test_label_values_never_become_sql_text(pairs: list[tuple[str, str]]) -> None:
    marked = [(k, "zq" + "".join(c for c in v if c.isascii() and c.isalnum())[:20] + "qz") for k, v in pairs]
    labels = label_selector(",".join(f"{k}={v}" for k, v in marked))
    _compiles_without(Target(group="", version="v1", resource="pods", kind="Pod", labels=labels),
                      [v for _, v in marked])


# -- continue tokens ------------------------------------------------------------------------------

KEY_BYTES = st.binary(min_size=32, max_size=32)
CURSOR = st.builds(pagination.Cursor,
                   resource_version=st.integers(min_value=0, max_value=MAX_RESOURCE_VERSION),
                   after=st.lists(st.text(max_size=30), max_size=4).map(tuple))
QUERY = st.text(alphabet=string.hexdigits.lower(), min_size=24, max_size=24)


@given(CURSOR, QUERY, KEY_BYTES)
def test_a_continue_token_round_trips(cursor: pagination.Cursor, query: str, key: bytes) -> None:
    token = pagination.encode(cursor, query=query, key=key)
    assert pagination.decode(token, query=query, key=key) == cursor


@given(CURSOR, QUERY, KEY_BYTES, st.data())
def test_a_tampered_or_truncated_token_never_yields_another_position(
        cursor: pagination.Cursor, query: str, key: bytes, data: st.DataObject) -> None:
    token = pagination.encode(cursor, query=query, key=key)
    where = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    how = data.draw(st.sampled_from(["replace", "truncate", "insert", "delete"]))
    char = data.draw(st.characters(codec=None))
    changed = {"replace": token[:where] + char + token[where + 1:], "truncate": token[:where],
               "insert": token[:where] + char + token[where:],
               "delete": token[:where] + token[where + 1:]}[how]
    assume(changed != token)
    try:
        got = pagination.decode(changed, query=query, key=key)
    except pagination.BadContinue:
        return
    # Base64's last character carries unused bits: a change there may decode to the same bytes.
    assert got == cursor


@given(CURSOR, QUERY, QUERY, KEY_BYTES, KEY_BYTES)
def test_a_token_of_another_query_or_key_is_refused(cursor: pagination.Cursor, query: str, other_query: str,
                                                    key: bytes, other_key: bytes) -> None:
    token = pagination.encode(cursor, query=query, key=key)
    if other_query != query:
        with pytest.raises(pagination.BadContinue):
            pagination.decode(token, query=other_query, key=key)
    if other_key != key:
        with pytest.raises(pagination.BadContinue):
            pagination.decode(token, query=query, key=other_key)


@given(st.one_of(HOSTILE, st.text(alphabet=string.ascii_letters + string.digits + "-_.=", max_size=200)),
       QUERY, KEY_BYTES)
def test_any_continue_text_is_refused_cleanly(text: str, query: str, key: bytes) -> None:
    with pytest.raises(pagination.BadContinue):
        pagination.decode(text, query=query, key=key)


# -- times ----------------------------------------------------------------------------------------

MOMENT = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9000, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC))
OFFSET = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)


@given(MOMENT, OFFSET, st.integers(min_value=0, max_value=9), st.booleans(), st.booleans())
def test_rfc3339_in_its_variants_round_trips(moment: datetime, minutes: int, digits: int, zulu: bool,
                                             lower: bool) -> None:
    offset = timedelta(0) if zulu else timedelta(minutes=minutes)
    local = moment + offset
    fraction = f"{local.microsecond:06d}000"[:digits]
    zone = ("z" if lower else "Z") if zulu else \
        f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    text = local.strftime("%Y-%m-%d") + ("t" if lower else "T") + local.strftime("%H:%M:%S") + \
        (f".{fraction}" if digits else "") + zone
    expected = moment.replace(microsecond=int((fraction + "000000")[:6]) if digits else 0)
    assert parse_time(text) == expected


@given(MOMENT)
def test_the_other_forms_round_trip(moment: datetime) -> None:
    whole = moment.replace(microsecond=0)
    assert parse_time(whole.strftime("%Y-%m-%d %H:%M:%S")) == whole
    assert parse_time(whole.strftime("%Y-%m-%d")) == whole.replace(hour=0, minute=0, second=0)
    seconds = int((whole - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    if 0 <= seconds < 10**11:
        assert parse_time(str(seconds)) == whole


@given(st.one_of(HOSTILE, st.text(alphabet="0123456789-:TZz+. t", max_size=40)),
       st.sampled_from(["since", "before"]))
def test_any_time_text_is_a_moment_or_a_400_naming_the_parameter(text: str, name: str) -> None:
    try:
        parse_time(text)
    except BadTime:
        if text:  # empty: as if not given
            _refused(lambda: time_param({name: text}, name), parameter=name)
        if text.strip():  # the search API ignores a blank value
            _refused(lambda: search_options({name: text}, label_selector("")), parameter=name)


# -- list and watch parameters --------------------------------------------------------------------

PARAMETERS = ["limit", "resourceVersion", "resourceVersionMatch", "watch", "allowWatchBookmarks",
              "sendInitialEvents", "timeoutSeconds", "includeObject", "continue", "clusters"]
NUMBERISH = st.one_of(st.integers(min_value=-10**20, max_value=10**20).map(str),
                      st.text(alphabet="0123456789-+ e.x\u0663\uff11", max_size=25))


@given(st.dictionaries(st.sampled_from(PARAMETERS), st.one_of(HOSTILE, NUMBERISH,
                                                             st.sampled_from(["true", "1", "0", "Exact"])),
                       max_size=5))
def test_any_list_or_watch_parameters_parse_or_are_a_400(query: dict[str, str]) -> None:
    try:
        opts = list_options(query, "")
    except StatusError as error:
        assert (error.code, error.reason) == (400, "BadRequest"), error.message
        return
    assert 0 <= opts.limit <= MAX_LIMIT
    assert opts.timeout_seconds is None or opts.timeout_seconds >= 0


@given(st.one_of(NUMBERISH, HOSTILE), st.sampled_from(["limit", "timeoutSeconds"]))
def test_a_bad_integer_is_a_400_naming_its_parameter(text: str, name: str) -> None:
    try:
        value = int(text, 10) if text.isascii() else None
    except ValueError:
        value = None
    if value is not None and 0 <= value < 10**12 and text.strip() == text and text.lstrip("-").isdigit():
        opts = list_options({name: text}, "")
        assert (opts.limit if name == "limit" else opts.timeout_seconds) == \
            (min(value, MAX_LIMIT) if name == "limit" else value)
        return
    if text == "":
        return
    _refused(lambda: list_options({name: text}, ""), parameter=name)


@given(st.one_of(st.integers(min_value=0, max_value=MAX_RESOURCE_VERSION).map(str), NUMBERISH, HOSTILE))
def test_a_resource_version_is_a_sequence_or_a_400(text: str) -> None:
    if text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_RESOURCE_VERSION:
        assert parse_resource_version(text) == int(text)
        return
    _refused(lambda: parse_resource_version(text), parameter="resource version")
    if text not in ("", "0"):
        _refused(lambda: list_options({"resourceVersion": text}, ""), parameter="resource version")


@given(st.sampled_from(["watch", "allowWatchBookmarks", "sendInitialEvents"]), st.one_of(HOSTILE, SYNTAX))
def test_a_watch_flag_is_true_false_or_a_400_naming_it(name: str, text: str) -> None:
    if text.lower() in ("true", "1", "false", "0", ""):
        list_options({name: text}, "")
        return
    _refused(lambda: list_options({name: text}, ""), parameter=name)
