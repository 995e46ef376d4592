from __future__ import annotations

from typing import Any

from pricepipe_assets.alerts.rules import RunOutcome, counter_rate, failure_streak, symbols_in


def _run(n: int, failed: bool, will_retry: bool = False) -> RunOutcome:
    return RunOutcome(f"r{n}", failed, will_retry, float(n))


def test_the_streak_counts_failures_since_the_last_success_and_skips_runs_that_were_retried() -> None:
    newest_first = [_run(6, True), _run(5, True, will_retry=True), _run(4, True), _run(3, False), _run(2, True)]
    assert [r.run_id for r in failure_streak(newest_first)] == ["r6", "r4"]


def test_a_retried_run_whose_retry_succeeded_is_no_failure() -> None:
    assert failure_streak([_run(2, False), _run(1, True, will_retry=True)]) == []


def test_a_counter_rate_waits_for_a_minute_of_samples() -> None:
    memo: dict[str, Any] = {}
    assert counter_rate(memo, "dl", 100, 0.0) is None
    assert counter_rate(memo, "dl", 130, 30.0) is None
    assert counter_rate(memo, "dl", 160, 120.0) == 30.0
    assert counter_rate(memo, "dl", 10, 200.0) is None  # the topic was recreated


def test_symbols_are_read_from_lists_maps_and_maps_by_topic() -> None:
    assert symbols_in(["ETHUSDT", "BTCUSDT"]) == ("BTCUSDT", "ETHUSDT")
    assert symbols_in({"BTCUSDT": [{"first": "x"}]}) == ("BTCUSDT",)
    assert symbols_in({"candles.1m": {"BTCUSDT": "t"}, "trades": {"XBTUSD": "t"}}) == ("BTCUSDT", "XBTUSD")
    assert symbols_in(None) == ()
