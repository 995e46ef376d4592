"""The checks' rules on their own: gaps come out as whole ranges however long the outage, an early
close is named beside the gap after it, and a stored candle's close time must lie in its minute and
agree with its completeness flag."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from pricepipe_assets.defs.lake.checks import gap_ranges, symbol_gap_report
from pricepipe_assets.defs.live import ohlc_violations

DAY_MS = 1704067200000
MINUTE = 60_000


def _minutes(*minutes: int) -> list[int]:
    return [DAY_MS + MINUTE * m for m in minutes]


def test_a_gap_longer_than_any_listing_limit_is_one_range() -> None:
    present = _minutes(0, 1, *range(1000, 1440))
    assert gap_ranges(present) == [(DAY_MS + 2 * MINUTE, DAY_MS + 999 * MINUTE)]


def test_gap_ranges_ignore_duplicates_and_order_and_find_every_gap() -> None:
    present = _minutes(5, 0, 1, 1, 3, 7, 8)
    two, four, six = _minutes(2, 4, 6)
    assert gap_ranges(present) == [(two, two), (four, four), (six, six)]
    assert gap_ranges([]) == [] and gap_ranges(_minutes(4)) == []


def test_an_early_close_is_named_beside_the_gap_after_it_and_listed_even_without_one() -> None:
    full = [(t, t + MINUTE - 1) for t in _minutes(0, 1, 5, 6, 8)]
    early = [(DAY_MS + 2 * MINUTE, DAY_MS + 2 * MINUTE + 12_345), (DAY_MS + 7 * MINUTE, DAY_MS + 7 * MINUTE)]
    gaps, closes = symbol_gap_report(full + early)
    assert gaps == [{"first": "2024-01-01T00:03:00+00:00", "last": "2024-01-01T00:04:00+00:00", "minutes": 2,
                     "after_early_close": {"open_time": "2024-01-01T00:02:00+00:00",
                                           "close_time": "2024-01-01T00:02:12.345000+00:00"}}]
    assert closes == [{"open_time": "2024-01-01T00:02:00+00:00", "close_time": "2024-01-01T00:02:12.345000+00:00"},
                      {"open_time": "2024-01-01T00:07:00+00:00", "close_time": "2024-01-01T00:07:00+00:00"}]


def _stored(close_after_ms: int, is_complete: bool | None) -> SimpleNamespace:
    open_time = dt.datetime(2024, 1, 1)
    return SimpleNamespace(open_time=open_time, close_time=open_time + dt.timedelta(milliseconds=close_after_ms),
                           open=1.0, high=2.0, low=0.5, close=1.5, is_complete=is_complete)


@pytest.mark.parametrize(("close_after_ms", "is_complete", "problems"), [
    (59_999, True, []),
    (59_999, None, []),  # a row stored before the column existed
    (31_250, False, []),
    (0, False, []),
    (31_250, True, ["is_complete disagrees with close_time"]),
    (31_250, None, ["is_complete disagrees with close_time"]),
    (59_999, False, ["is_complete disagrees with close_time"]),
    (60_000, True, ["close_time outside [open_time, open_time + 59.999 s]"]),
    (-1, False, ["close_time outside [open_time, open_time + 59.999 s]"]),
])
def test_a_stored_close_time_must_lie_in_its_minute_and_agree_with_is_complete(
        close_after_ms: int, is_complete: bool | None, problems: list[str]) -> None:
    assert ohlc_violations(_stored(close_after_ms, is_complete)) == problems
