"""Hostile batches at the ingest listener (real HTTP, real store): wrong types, huge strings,
deep nesting, NUL bytes, bad UTF-8, duplicate keys, missing fields, good and bad objects
mixed. Each is refused whole with a 4xx ``Status`` and changes nothing stored, or is applied
with its bad objects skipped and counted (README "Limits"); never a 5xx."""

from __future__ import annotations

import io
from typing import Any

import asyncpg
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import protocol
from tests.factories import PODS, pod
from tests.syncer.conftest import Ingest

TYPE = protocol.type_to_dict(PODS)
CHANGES = protocol.changes_path("fuzz")
_STATE = """
SELECT (SELECT count(*) FROM change_log),
       (SELECT coalesce(max(seq), 0) FROM change_log),
       (SELECT md5(coalesce(string_agg(concat_ws('|', namespace, name, uid, resource_version, object::text),
                                       ',' ORDER BY namespace, name), '')) FROM resources),
       (SELECT string_agg(concat_ws('|', grp, resource, checkpoint, object_count), ',' ORDER BY grp, resource)
          FROM sync_state)
"""

SCALAR = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                   st.floats(allow_nan=False), st.text(max_size=20),
                   st.sampled_from(["\x00", "a\x00b", "\ud800", "x" * 70_000, "../..", "%00"]))


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"a": [value]}
    return value


BAD_POD = st.one_of(
    st.builds(lambda name, extra: pod(name, 1) | extra,
              st.one_of(st.text(max_size=300), st.sampled_from(["a\x00b", "a/b", "%2F", "x" * 300])),
              st.dictionaries(st.sampled_from(["metadata", "kind", "apiVersion", "spec"]), SCALAR,
                              max_size=2)),
    st.integers(min_value=50, max_value=3000).map(lambda d: pod("deep", 1) | {"spec": _nested(d)}),
    st.builds(lambda key, value: pod("labelled", 1, labels={key: value}), st.text(max_size=300),
              st.text(max_size=100)),
)
BAD_OBJECT = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), BAD_POD)
GOOD_OBJECT = st.integers(min_value=0, max_value=5).map(lambda i: pod(f"good-{i}", 100 + i))
GOOD_EVENT = st.builds(lambda t, o: {"type": t, "object": o},
                       st.sampled_from(["ADDED", "MODIFIED", "DELETED"]), GOOD_OBJECT)
BAD_POD_EVENT = st.builds(lambda t, o: {"type": t, "object": o}, st.sampled_from(["ADDED", "MODIFIED"]),
                          BAD_POD)
EVENT = st.one_of(
    st.builds(lambda t, o: {"type": t, "object": o},
              st.sampled_from(["ADDED", "MODIFIED", "DELETED"]), st.one_of(GOOD_OBJECT, BAD_OBJECT)),
    st.builds(lambda t, o: {"type": t, "object": o}, st.one_of(SCALAR, st.just("BOOKMARK")), GOOD_OBJECT),
    st.dictionaries(st.sampled_from(["type", "object", "x"]), SCALAR, max_size=3),
    SCALAR,
)
WILD_ENVELOPE = st.fixed_dictionaries(
    {"type": st.one_of(st.just(TYPE), SCALAR, st.dictionaries(st.sampled_from(list(TYPE)), SCALAR)),
     "resourceVersion": st.one_of(st.integers(min_value=1, max_value=10**6).map(str), SCALAR),
     "events": st.one_of(st.lists(EVENT, max_size=6), SCALAR)},
    optional={"after": SCALAR, "extra": SCALAR})
# A well-formed envelope around events good and bad: the skip-and-count path.
MIXED_ENVELOPE = st.fixed_dictionaries(
    {"type": st.just(TYPE), "resourceVersion": st.integers(min_value=1, max_value=10**9).map(str),
     "events": st.lists(st.one_of(GOOD_EVENT, BAD_POD_EVENT), min_size=1, max_size=6)})
ENVELOPE = st.one_of(WILD_ENVELOPE, MIXED_ENVELOPE, MIXED_ENVELOPE)


def _raw(envelope: dict[str, Any]) -> bytes:
    return orjson.dumps(envelope, option=orjson.OPT_NON_STR_KEYS) if _encodable(envelope) else b"{}"


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


BROKEN_BYTES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"[]", b"null", b'"x"', b"\xff\xfe{}", b'{"type": "\xc3\x28"}',
                     b'{"type": {}, "type": {}}', b"[" * 100_000 + b"]" * 100_000, b'{"a":1}\x00',
                     # duplicate keys: the last one counts, as in every JSON reader Kubernetes uses
                     b'{"events": [], "events": [1], "resourceVersion": "1", "type": '
                     + orjson.dumps(TYPE) + b"}"]),
    ENVELOPE.map(lambda e: _raw(e)[:-1] if len(_raw(e)) > 1 else b"{"),  # truncated
)


async def _state(pool: asyncpg.Pool) -> tuple[Any, ...]:
    row = await pool.fetchrow(_STATE)
    return tuple(row)


async def _post(ingest: Ingest, token: str, body: bytes) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    async with ingest.session.post(ingest.url + CHANGES, data=io.BytesIO(body), headers=headers) as resp:
        raw = await resp.read()
        return resp.status, orjson.loads(raw)


_registered: dict[str, str] = {}


async def _token(ingest: Ingest) -> str:
    if ingest.url not in _registered:  # once per test (its ingest listener and database)
        _registered[ingest.url] = await ingest.register_push("fuzz")
    return _registered[ingest.url]


@given(st.one_of(ENVELOPE.map(_raw), BROKEN_BYTES))
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_a_hostile_batch_is_refused_whole_or_applied_with_its_bad_objects_counted(
        ingest: Ingest, pool: asyncpg.Pool, body: bytes) -> None:
    token = await _token(ingest)
    before = await _state(pool)
    status, answer = await _post(ingest, token, body)
    assert status < 500, (body[:300], status, answer)
    if status >= 400:
        assert answer["kind"] == "Status" and answer["code"] == status, answer
        assert await _state(pool) == before, ("a refused batch wrote", body[:300])
        return
    assert status == 200, answer
    events = orjson.loads(body)["events"]
    assert answer["skipped"] <= len(events) and answer["applied"] <= len(events), (answer, body[:300])
    after = await _state(pool)
    assert after[0] - before[0] == answer["applied"], (answer, body[:300])  # one log entry per change
