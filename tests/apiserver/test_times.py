"""``apiserver.times.parse_time``: the spellings of a time that since/before accept."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apiserver.times import parse_time


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2026-01-02t03:04:05z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2026-01-02T03:04:05.123456789Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
    ("2026-01-02T03:04:05.5+02:00", datetime(2026, 1, 2, 1, 4, 5, 500000, tzinfo=UTC)),
    ("2026-01-02T03:04:05-07:30", datetime(2026, 1, 2, 10, 34, 5, tzinfo=UTC)),
    ("2026-01-02 03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),
    (" 2026-01-02 ", datetime(2026, 1, 2, tzinfo=UTC)),
    ("0", datetime(1970, 1, 1, tzinfo=UTC)),
    ("1767323045", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("9999999999", datetime(2286, 11, 20, 17, 46, 39, tzinfo=UTC)),
    ("17673230451", datetime(1970, 7, 24, 13, 13, 50, 451000, tzinfo=UTC)),  # 11 digits: milliseconds
    ("1767323045123", datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)),
])
def test_accepted_forms(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(("text", "says"), [
    ("", "expected RFC 3339"), ("yesterday", "expected RFC 3339"), ("2026-01-02T03:04:05", "expected"),
    ("2026-01-02T03:04", "expected"), ("2026/01/02", "expected"), ("12345678901234", "expected"),
    ("-1", "expected"), ("1e9", "expected"), ("2026-01-02T03:04:05+25:00", "expected"),
    ("2026-01-02T03:04:05.1234567890Z", "expected"),
    ("\u0662\u0660\u0662\u0666-01-02", "expected"), ("\u0661\u0662\u0663", "expected"),  # Arabic digits
    ("2026-02-30", "day is out of range"), ("2026-13-01", "month must be in 1..12"),
    ("2026-01-02T24:00:00Z", "hour must be in 0..23"), ("9999-12-31T23:59:59-01:00", "out of range"),
])
def test_refused_forms_name_what_is_accepted(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="invalid time") as info:
        parse_time(text)
    assert says in str(info.value)


def test_a_long_value_is_not_repeated_whole() -> None:
    with pytest.raises(ValueError) as info:
        parse_time("x" * 10_000)
    assert len(str(info.value)) < 300
