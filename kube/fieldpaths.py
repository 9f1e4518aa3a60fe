r"""Field conditions on any JSON path of an object: the parser, and the evaluator watches use.

Kubernetes selects only on the fields it registers for each kind (``kube.selectors``). The
read API also takes any JSON path of the object, as Clusterpedia's enhanced field selector
does (https://clusterpedia.io/docs/usage/search/#field-selector), and answers paths through
lists too, which Clusterpedia refuses. ``apiserver.query`` compiles the requirements parsed
here to SQL; :meth:`PathRequirement.matches` evaluates them on an object in memory (for
watches), and a test checks that the two agree on generated objects.

Grammar (requirements separated by commas, all of them must hold, as in Kubernetes):

* a path: keys of ASCII letters, digits, ``_`` and ``-`` joined by dots (``spec.replicas``);
  any other key quoted in brackets, ``metadata.annotations['a.b/c']`` or ``["a.b/c"]``
  (``\'``, ``\"`` and ``\\`` inside stand for the character); ``[]`` steps into every
  element of a list (``spec.containers[].ports[].containerPort``). At most 16 steps, keys
  of at most 253 characters;
* ``path=v``, ``path==v``, ``path!=v``, ``path in (a,b)``, ``path notin (a,b)`` (at most 100
  values), ``path`` (exists), ``!path`` (does not exist), ``path>v`` and ``path<v`` with a
  number or an RFC 3339 time; at most 20 requirements;
* a value runs to the next unescaped comma (in a set: comma or closing parenthesis),
  without the blanks around it. ``\,``, ``\=`` and ``\\`` stand for the character, as in
  Kubernetes' field selectors (k8s.io/apimachinery/pkg/fields/selector.go), and so do
  ``\(`` and ``\)``; any other escape, and an unescaped ``=``, are refused, as there.

What a path reaches: following a key step into an object's member, and ``[]`` into every
element of a list. Nothing is unwrapped or wrapped implicitly: a key step on a list or a
scalar, and ``[]`` on anything but a list, reach nothing (``spec.containers.image`` reaches
nothing: ``containers`` is a list). A JSON null is no value: Kubernetes omits empty fields,
and a null one reads as absent.

* ``=`` and ``in``: some value reached equals one of the values. Values compare as JSON
  scalar text: a value equals a JSON string of the same text, a JSON number of the same
  numeric value when the value is written as a JSON number (``spec.replicas=3`` matches 3
  and 3.0; ``=03`` only the string "03"), and a boolean when it is ``true`` or ``false``.
  An object or a list equals no value.
* ``!=`` and ``notin``: no value reached equals any of them, so an absent path satisfies
  them; they are exactly the negation of ``=`` and ``in``.
* exists: the path reaches a value (an object or a list counts); ``!path``: it reaches none.
* ``>`` and ``<``: some value reached is a JSON number above (below) the bound written as a
  number, or, for a bound written as an RFC 3339 time, a string that is such a time
  (``2006-01-02T15:04:05Z``, fractions, offsets) at a later (earlier) instant. Other values
  never compare; a bound that is neither is refused.

Numbers compare by decimal value. A watch reads objects with orjson, which reads an integer
beyond 64 bits, or a decimal with more than 17 significant digits, as the nearest binary
float; such numbers (Kubernetes objects hold none) may compare otherwise there than in a
list. Times are read as ``kube_time`` reads them in PostgreSQL (syncer.migrations,
migration 6), down to its rounding to microseconds, which :func:`time_micros` mirrors.

Indexes: ``spec.containers[].image`` with ``=`` or ``in`` on pods is narrowed by the GIN
index on the ``pod_images`` column (migration 8), then checked exactly; ``spec.nodeName``
and ``status.phase`` are fields Kubernetes selects on (``kube.selectors``) and have their
own indexes. Every other path is checked on each object of the type and place asked for,
so combine it with a namespace, a label or an indexed field on large types. This holds for
``metadata.ownerReferences[].uid`` too: the indexed search by owner is the ``ownerUID``
parameter, on the ``owner_uid`` column.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

Step = str | None  # a key, or None: every element of a list ("[]")
PathOp = Literal["=", "!=", "in", "notin", "exists", "!", "gt", "lt"]

MAX_REQUIREMENTS = 20
MAX_DEPTH = 16
MAX_KEY_LENGTH = 253
MAX_VALUES = 100
MAX_NUMBER_LENGTH = 40
MAX_QUOTED = 64  # characters of a value quoted in a message

# A JSON number with at most a two-digit exponent: PostgreSQL's numeric holds every one.
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]{1,2})?", re.ASCII)
# What kube_time accepts (syncer.migrations), character for character.
_TIME = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):([0-5][0-9]):"
    r"([0-5][0-9](?:\.[0-9]{1,9})?|60(?:\.0{1,9})?)(?:[Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))", re.ASCII)
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_VALUE_ESCAPES = frozenset("\\,=()")
_OPERATORS: tuple[tuple[str, PathOp], ...] = (("==", "="), ("!=", "!="), ("=", "="), (">", "gt"), ("<", "lt"))
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_POSTGRES_EPOCH_S = 946_684_800.0  # 2000-01-01, where PostgreSQL counts its microseconds from


class PathSyntaxError(ValueError):
    """A field selector that cannot be parsed (HTTP 400); the message says what and where."""


# -- values ---------------------------------------------------------------------------------

def json_number(text: str) -> Decimal | None:
    """``text`` as a number when it is written as a JSON number (bounded), else None."""
    if len(text) > MAX_NUMBER_LENGTH or not _NUMBER.fullmatch(text):
        return None
    return Decimal(text)


def time_micros(text: str) -> int | None:
    """Microseconds since 1970 of an RFC 3339 time, computed as ``kube_time`` computes it
    (seconds as a float8, then ``to_timestamp``'s rounding), or None if it is not one."""
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute = (int(match.group(i)) for i in range(1, 6))
    year = max(year, 1)  # kube_time's greatest(year, 1)
    if day > calendar.monthrange(year, month)[1]:
        return None
    offset = 0
    if match.group(7):
        sign = -1 if match.group(7) == "-" else 1
        offset = sign * (int(match.group(8)) * 3600 + int(match.group(9)) * 60)
    days = date(year, month, day).toordinal() - _EPOCH_DAY
    seconds = float(days) * 86400 + hour * 3600 + minute * 60 + float(match.group(6)) - offset
    # to_timestamp(float8): moved to PostgreSQL's epoch, times 10^6, rint (half to even).
    return round((seconds - _POSTGRES_EPOCH_S) * 1e6) + int(_POSTGRES_EPOCH_S) * 1_000_000


def scalar_equals(item: Any, value: str) -> bool:
    """Whether a JSON value equals a selector value (module docstring)."""
    if isinstance(item, bool):
        return value == ("true" if item else "false")
    if isinstance(item, str):
        return item == value
    if isinstance(item, int | float):
        number = json_number(value)
        return number is not None and _decimal(item) == number
    return False


def _decimal(item: int | float) -> Decimal:
    # repr: the shortest text that reads back as the float, the text PostgreSQL sent for it.
    return Decimal(item) if isinstance(item, int) else Decimal(repr(item))


def reach(obj: Any, path: Sequence[Step]) -> Iterator[Any]:
    """The values ``path`` reaches in ``obj``, nulls left out."""
    if not path:
        if obj is not None:
            yield obj
        return
    step, rest = path[0], path[1:]
    if step is None:
        if isinstance(obj, list):
            for element in obj:
                yield from reach(element, rest)
    elif isinstance(obj, Mapping) and step in obj:
        yield from reach(obj[step], rest)


# -- requirements -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Term:
    """One parsed requirement: a path, an operator and its values (one for ``=``, ``!=``,
    ``gt``, ``lt``; the set for ``in``, ``notin``; none for exists and ``!``)."""

    path: tuple[Step, ...]
    op: PathOp
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PathRequirement:
    """A requirement on a JSON path; for ``gt``/``lt`` the bound is a number or a time
    (microseconds since 1970), the other one None."""

    path: tuple[Step, ...]
    op: PathOp
    values: tuple[str, ...] = ()
    number: Decimal | None = None
    micros: int | None = None

    def matches(self, obj: Mapping[str, Any]) -> bool:
        found = reach(obj, self.path)
        match self.op:
            case "exists":
                return any(True for _ in found)
            case "!":
                return not any(True for _ in found)
            case "=" | "in":
                return any(scalar_equals(item, v) for item in found for v in self.values)
            case "!=" | "notin":
                return not any(scalar_equals(item, v) for item in found for v in self.values)
            case "gt" | "lt":
                return any(self._beyond(item) for item in found)
        raise AssertionError(self.op)  # pragma: no cover - the Literal is exhaustive

    def _beyond(self, item: Any) -> bool:
        value: Decimal | int | None = None
        bound: Decimal | int = 0
        if self.number is not None and isinstance(item, int | float) and not isinstance(item, bool):
            value, bound = _decimal(item), self.number
        elif self.micros is not None and isinstance(item, str):
            value, bound = time_micros(item), self.micros
        if value is None:
            return False
        return value > bound if self.op == "gt" else value < bound


def requirement(term: Term) -> PathRequirement:
    """The requirement of a parsed term: for ``>`` and ``<``, the bound read as a number or
    a time (PathSyntaxError if it is neither)."""
    if term.op not in ("gt", "lt"):
        return PathRequirement(term.path, term.op, term.values)
    text = term.values[0]
    number = json_number(text)
    if number is not None:
        return PathRequirement(term.path, term.op, term.values, number=number)
    micros = time_micros(text)
    if micros is None:
        sign = ">" if term.op == "gt" else "<"
        raise PathSyntaxError(
            f"invalid fieldSelector: bad number or time after '{sign}' in {render(term.path)}:"
            f" {_quoted(text)} is neither a number (e.g. 3, -1.5) nor an RFC 3339 time"
            " (e.g. 2006-01-02T15:04:05Z)")
    return PathRequirement(term.path, term.op, term.values, micros=micros)


def dotted(path: Sequence[Step]) -> str | None:
    """``a.b.c`` for a path of keys without dots (how Kubernetes names fields), else None."""
    if any(step is None or "." in step or not step for step in path):
        return None
    return ".".join(step for step in path if step is not None)


def render(path: Sequence[Step]) -> str:
    """The path in the selector's syntax."""
    out: list[str] = []
    for step in path:
        if step is None:
            out.append("[]")
        elif step and set(step) <= _KEY_CHARS:
            out.append(("." if out else "") + step)
        else:
            escaped = step.replace("\\", "\\\\").replace("'", "\\'")
            out.append(f"['{escaped}']")
    return "".join(out)


def _quoted(value: str) -> str:
    return repr(value if len(value) <= MAX_QUOTED else value[:MAX_QUOTED] + "...")


# -- the parser -------------------------------------------------------------------------------

def parse(text: str) -> list[Term]:
    """The requirements of a field selector in the grammar above (PathSyntaxError if not)."""
    if "\x00" in text:
        raise PathSyntaxError("invalid fieldSelector: a NUL character is not allowed")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PathSyntaxError("invalid fieldSelector: not valid Unicode text") from exc
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def fail(self, what: str, *, at: int | None = None) -> PathSyntaxError:
        where = (self.pos if at is None else at) + 1
        return PathSyntaxError(f"invalid fieldSelector: {what} (at character {where})")

    def blanks(self) -> None:
        while self.peek().isspace():
            self.pos += 1

    def parse(self) -> list[Term]:
        terms: list[Term] = []
        while True:
            self.blanks()
            if self.peek() == ",":  # an empty requirement, as Kubernetes skips it
                self.pos += 1
                continue
            if not self.peek():
                return terms
            terms.append(self.term())
            if len(terms) > MAX_REQUIREMENTS:
                raise self.fail(f"more than {MAX_REQUIREMENTS} requirements")
            self.blanks()
            if self.peek() not in (",", ""):
                raise self.fail(f"expected ',' or the end after a requirement, found {_quoted(self.peek())}")

    def term(self) -> Term:
        negated = self.peek() == "!"
        if negated:
            self.pos += 1
        path = self.path()
        end = self.pos
        self.blanks()
        if self.peek() in (",", ""):
            return Term(path, "!" if negated else "exists")
        if negated:
            raise self.fail("'!path' (does not exist) takes no operator or value")
        for sign, op in _OPERATORS:
            if self.text.startswith(sign, self.pos):
                self.pos += len(sign)
                if op in ("gt", "lt") and self.peek() == "=":
                    raise self.fail(f"unknown operator '{sign}=': use '>' or '<'", at=self.pos - 1)
                return Term(path, op, (self.value(in_set=False),))
        word = self.word()
        if word in ("in", "notin") and self.pos - len(word) > end:
            return Term(path, "in" if word == "in" else "notin", self.value_set(word))
        raise self.fail("unknown operator after the path "
                        f"{render(path)}: expected =, ==, !=, in, notin, >, <, ',' or the end",
                        at=self.pos - len(word))

    def word(self) -> str:
        start = self.pos
        while self.peek().isalpha():
            self.pos += 1
        return self.text[start:self.pos]

    # paths

    def path(self) -> tuple[Step, ...]:
        steps: list[Step] = []
        start = self.pos
        steps.append(self.bracket() if self.peek() == "[" else self.key())
        if steps[0] is None:
            raise self.fail("bad path: a path starts with a key, not []", at=start)
        while self.peek() in (".", "["):
            if self.peek() == ".":
                self.pos += 1
                steps.append(self.key())
            else:
                steps.append(self.bracket())
            if len(steps) > MAX_DEPTH:
                raise self.fail(f"bad path: more than {MAX_DEPTH} steps", at=start)
        return tuple(steps)

    def key(self) -> str:
        start = self.pos
        while self.peek() and self.peek() in _KEY_CHARS:
            self.pos += 1
        if self.pos == start:
            found = _quoted(self.peek()) if self.peek() else "the end"
            raise self.fail(f"bad path: expected a key of letters, digits, '_' and '-', or a key quoted in"
                            f" brackets (['a.b/c']), found {found}")
        return self.checked_key(self.text[start:self.pos], start)

    def checked_key(self, key: str, start: int) -> str:
        if len(key) > MAX_KEY_LENGTH:
            raise self.fail(f"bad path: a key longer than {MAX_KEY_LENGTH} characters", at=start)
        return key

    def bracket(self) -> Step:
        start = self.pos
        self.pos += 1  # "["
        if self.peek() == "]":
            self.pos += 1
            return None
        quote = self.peek()
        if quote not in ("'", '"'):
            raise self.fail("bad path: '[' starts [] (every element of a list) or a quoted key"
                            " (['a.b/c'])", at=start)
        self.pos += 1
        chars: list[str] = []
        while self.peek() != quote:
            char = self.peek()
            if not char:
                raise self.fail("bad path: a quoted key is not closed", at=start)
            if char == "\\":
                escaped = self.text[self.pos + 1:self.pos + 2]
                if escaped not in ("\\", "'", '"'):
                    raise self.fail(f"bad path: invalid escape sequence {_quoted(char + escaped)} in a"
                                    " quoted key (\\\\, \\' and \\\" are allowed)")
                char = escaped
                self.pos += 1
            chars.append(char)
            self.pos += 1
        self.pos += 1  # the closing quote
        if self.peek() != "]":
            raise self.fail("bad path: expected ']' after a quoted key")
        self.pos += 1
        return self.checked_key("".join(chars), start)

    # values

    def value(self, *, in_set: bool) -> str:
        """A value up to an unescaped comma (or, in a set, a closing parenthesis)."""
        stops = (",", ")") if in_set else (",",)
        chars: list[str] = []
        while self.peek() and self.peek() not in stops:
            char = self.peek()
            if char == "\\":
                escaped = self.text[self.pos + 1:self.pos + 2]
                if escaped not in _VALUE_ESCAPES:
                    raise self.fail(f"invalid escape sequence {_quoted(char + escaped)} in a value"
                                    " (\\\\, \\, and \\= are allowed, and \\( and \\))")
                char = escaped
                self.pos += 1
            elif char == "=":
                raise self.fail("unescaped '=' in a value (write \\= for the character)")
            chars.append(char)
            self.pos += 1
        # Escaped characters are never blanks: stripping leaves them.
        return "".join(chars).strip()

    def value_set(self, word: str) -> tuple[str, ...]:
        self.blanks()
        if self.peek() != "(":
            raise self.fail(f"'{word}' must be followed by a set of values in parentheses: (a,b)")
        self.pos += 1
        self.blanks()
        if self.peek() == ")":
            raise self.fail(f"the set of values after '{word}' can't be empty")
        values: list[str] = []
        while True:
            values.append(self.value(in_set=True))
            if len(values) > MAX_VALUES:
                raise self.fail(f"more than {MAX_VALUES} values after '{word}'")
            stop = self.peek()
            if not stop:
                raise self.fail(f"the set of values after '{word}' is not closed with ')'")
            self.pos += 1
            if stop == ")":
                return tuple(dict.fromkeys(values))
