"""Times given in query parameters (``since``, ``before``): the forms Clusterpedia users send.

Accepted, and nothing else (a bad value is the caller's 400, never a guess):

* RFC 3339, as Kubernetes writes times: ``2006-01-02T15:04:05Z``, ``...05.123456Z``,
  ``...05+02:00``;
* ``2006-01-02 15:04:05`` and ``2006-01-02``, both read as UTC (the server's clock is no
  business of the caller's, and Kubernetes keeps every time in UTC);
* unix time: up to 10 digits are seconds, 11 to 13 digits milliseconds (10 digits of
  seconds reach the year 2286, so the lengths never overlap in practice).

Fractions of a second finer than a microsecond are cut off (PostgreSQL keeps microseconds).
The result is always timezone-aware, in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# ASCII digits only: Python's \d would take any script's digits.
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)", re.ASCII)
_DATE_TIME = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2}) (?P<time>\d{2}:\d{2}:\d{2})", re.ASCII)
_DATE = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2})", re.ASCII)
_UNIX = re.compile(r"\d{1,13}", re.ASCII)
_SECONDS_DIGITS = 10
EXPECTED = ("RFC 3339 (2006-01-02T15:04:05Z), '2006-01-02 15:04:05' or '2006-01-02' (both UTC),"
            " or unix seconds or milliseconds")
_SHOWN = 64  # characters of a bad value repeated in a message


def parse_time(text: str) -> datetime:
    """``text`` as an aware UTC datetime, or ``ValueError`` naming the accepted forms."""
    value = text.strip()
    try:
        parsed = _parse(value)
    except (ValueError, OverflowError) as exc:  # a month 13, a day 30 of February, ...
        raise ValueError(f"invalid time {_shown(text)}: {exc}") from exc
    if parsed is None:
        raise ValueError(f"invalid time {_shown(text)}: expected {EXPECTED}")
    return parsed


def _parse(value: str) -> datetime | None:
    if _UNIX.fullmatch(value):
        number = int(value)
        if len(value) <= _SECONDS_DIGITS:
            return datetime.fromtimestamp(number, UTC)
        return datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=number)
    match = _RFC3339.fullmatch(value)
    if match:
        fraction = (match["fraction"] or "")[:6].ljust(6, "0")
        zone = "+00:00" if match["zone"] in ("Z", "z") else match["zone"]
        return datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}{zone}").astimezone(UTC)
    match = _DATE_TIME.fullmatch(value) or _DATE.fullmatch(value)
    if match:
        clock = match.groupdict().get("time") or "00:00:00"
        return datetime.fromisoformat(f"{match['date']}T{clock}+00:00")
    return None


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")
