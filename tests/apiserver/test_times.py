"""Times in query parameters: every accepted form, and bad input as a 400 Status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apiserver.times import BadTime, parse_time, rfc3339, time_param
from kube.status import StatusError

MOMENT = datetime(2026, 1, 2, 15, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-02T15:04:05Z", MOMENT),
    ("2026-01-02t15:04:05z", MOMENT),
    ("2026-01-02T17:04:05+02:00", MOMENT),
    ("2026-01-02T10:34:05-04:30", MOMENT),
    ("2026-01-02T15:04:05.25Z", MOMENT.replace(microsecond=250000)),
    ("2026-01-02T15:04:05.123456789Z", MOMENT.replace(microsecond=123456)),  # Go's RFC3339Nano
    ("2026-01-02 15:04:05", MOMENT),
    ("2026-01-02", MOMENT.replace(hour=0, minute=0, second=0)),
    (str(int(MOMENT.timestamp())), MOMENT),
    (str(int(MOMENT.timestamp()) * 1000 + 7), MOMENT.replace(microsecond=7000)),
    ("0", datetime(1970, 1, 1, tzinfo=UTC)),
    ("99999999999", datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)),  # 11 digits: still seconds
])
def test_every_form(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", [
    "", "yesterday", "2026-13-01", "2026-02-30", "0000-01-01", "2026-01-02T25:00:00Z",
    "2026-01-02T15:04:05", "2026-01-02T15:04:05+24:00", "2026-01-02T15:04:05+02:60",
    "2026-01-02 15:04", "2026-1-2", "-5", "1.5", "12345678901234", "\u00b2\u00b2",
    "\uff12\uff10\uff12\uff16-01-02",  # full-width digits
    "2026-01-02T15:04:05.Z", "2026-01-02T15:04:05Z ", " 2026-01-02", "9" * 200,
    "9999-12-31T23:59:59-01:00",  # past the last moment a datetime can hold
])
def test_bad_input(text: str) -> None:
    with pytest.raises(BadTime):
        parse_time(text)


def test_a_bad_parameter_is_a_400_naming_it() -> None:
    with pytest.raises(StatusError) as info:
        time_param({"since": "2026-02-30"}, "since")
    assert (info.value.code, info.value.reason) == (400, "BadRequest")
    assert "since" in info.value.message and "2026-02-30" in info.value.message
    assert time_param({}, "since") is None and time_param({"since": ""}, "since") is None


def test_times_leave_as_utc_rfc3339() -> None:
    assert rfc3339(MOMENT.replace(microsecond=5)) == "2026-01-02T15:04:05.000005Z"
    assert parse_time(rfc3339(MOMENT)) == MOMENT
