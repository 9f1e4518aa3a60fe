"""Points in time from query parameters, in the forms Clusterpedia's ``since``/``before``
accept: RFC 3339 (``2006-01-02T15:04:05Z``, an offset, fractions of a second),
``2006-01-02 15:04:05``, ``2006-01-02``, and unix time in seconds or milliseconds.

The forms without a zone are UTC (the server's zone is nobody's business). Unix time with
up to 11 digits is seconds (until the year 5138), with 12 or 13 digits milliseconds.
Anything else is a 400 ``Status`` naming the parameter, never a 500: the input is matched
against a pattern of ASCII digits first, so no exotic digit, overflow or out-of-range field
reaches a conversion unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from kube.status import StatusError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TEXT = 64  # longer values are not times; the message quotes a prefix only
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII)
_DATE_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})", re.ASCII)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_UNIX = re.compile(r"\d{1,13}", re.ASCII)
_MILLIS_DIGITS = 12  # from here on, unix time is in milliseconds
FORMS = ("RFC 3339 (2006-01-02T15:04:05Z), '2006-01-02 15:04:05' (UTC), 2006-01-02,"
         " or unix seconds or milliseconds")


class BadTime(ValueError):
    """Text that is none of the accepted forms, or names no real moment."""


def _moment(parts: tuple[str | None, ...], *, offset: timedelta = timedelta(0)) -> datetime:
    parts = (*parts, None, None, None, None)[:7]  # a date alone is midnight
    year, month, day, hour, minute, second = (int(p or 0) for p in parts[:6])
    fraction = parts[6] or ""
    micro = int((fraction + "000000")[:6])  # nanoseconds (Go's RFC3339Nano) are cut to micro
    try:
        local = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
        return local - offset
    except (ValueError, OverflowError) as exc:  # month 13, February 30, year 0, ...
        raise BadTime(str(exc)) from exc


def parse_time(text: str) -> datetime:
    """A timezone-aware UTC ``datetime``, or ``BadTime``."""
    if len(text) > MAX_TEXT:
        raise BadTime("too long")
    if match := _RFC3339.fullmatch(text):
        groups = match.groups()
        offset = timedelta(0)
        if groups[8]:
            hours, minutes = int(groups[9]), int(groups[10])
            if hours > 23 or minutes > 59:
                raise BadTime("offset out of range")
            offset = timedelta(hours=hours, minutes=minutes) * (1 if groups[8] == "+" else -1)
        return _moment(groups[:7], offset=offset)
    if match := _DATE_TIME.fullmatch(text) or _DATE.fullmatch(text):
        return _moment(match.groups())
    if _UNIX.fullmatch(text):
        # Whole units added to the epoch: no float rounding of milliseconds.
        unit = timedelta(milliseconds=1) if len(text) >= _MILLIS_DIGITS else timedelta(seconds=1)
        return EPOCH + int(text) * unit
    raise BadTime("not a time")


def time_param(query: Mapping[str, str], name: str) -> datetime | None:
    """The time in parameter ``name``; None when absent or empty; a 400 Status when bad."""
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return parse_time(text)
    except BadTime as exc:
        shown = text[:MAX_TEXT].encode("ascii", "backslashreplace").decode()
        raise StatusError(400, "BadRequest", f"invalid value for {name}: {shown!r} ({exc}); expected"
                          f" {FORMS}") from exc


def rfc3339(moment: datetime) -> str:
    """How times leave the API: UTC, microseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
