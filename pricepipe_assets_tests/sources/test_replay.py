"""The replayer on real dump history, publishing to the real Kafka, paced by a fake clock.

Wall-clock durations are never asserted (machines are noisy): the replayer's clock and sleep are
replaced by a clock that moves only when the replayer sleeps, and the sleeps it asks for are checked.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.records import Candle, Record, Trade
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.sources.replay import Rejected, Replayer, merge_by_event_time
from pricepipe_assets_tests.support.kafka_reads import consume

MAY_8_2026 = dt.date(2026, 5, 8)
MAY_8_2026_MS = int(dt.datetime(2026, 5, 8, tzinfo=dt.UTC).timestamp() * 1000)
JAN_1_2024 = dt.date(2024, 1, 1)
HOUR_MS = 3_600_000


class FakeClock:
    """Wall time that moves only when the replayer sleeps; every requested sleep is kept."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture()
def dumps(shared_data: Path, tmp_path: Path) -> BinanceDumps:
    return BinanceDumps(tmp_path / "cache", (shared_data / "binance").as_uri())


@pytest.fixture()
def publisher(kafka: KafkaResource) -> Publisher:
    kafka.ensure_topics(topics.ALL_TOPICS)
    return kafka.publisher()


def hour_candles(dumps: BinanceDumps) -> Iterator[Record | Rejected]:
    return dumps.records(Dataset.klines("BTCUSDT", "1h"), MAY_8_2026, MAY_8_2026)


def perp_trades(dumps: BinanceDumps, hours: int) -> list[Trade]:
    """The first ``hours`` of the BTCUSD_PERP trades of 2026-05-08 (the candles' day)."""
    trades = dumps.records(Dataset.agg_trades("BTCUSD_PERP", market="futures/cm"), MAY_8_2026, MAY_8_2026)
    end = MAY_8_2026_MS + hours * HOUR_MS
    return [t for t in itertools.takewhile(lambda t: t.event_time < end, trades) if isinstance(t, Trade)]


def minute_candles(dumps: BinanceDumps, count: int) -> list[Record | Rejected]:
    return list(itertools.islice(dumps.records(Dataset.klines("BTCUSDT", "1m"), JAN_1_2024, JAN_1_2024), count))


def test_merge_puts_each_candle_at_its_close_time_among_the_trades(dumps: BinanceDumps) -> None:
    candles = list(hour_candles(dumps))
    trades = perp_trades(dumps, hours=24)

    merged = list(merge_by_event_time([candles, trades]))

    assert len(merged) == 24 + len(trades)
    times = [item.event_time for item in merged if not isinstance(item, Rejected)]
    assert times == sorted(times)
    trade_times = [t.ts for t in trades]
    positions = [i for i, item in enumerate(merged) if isinstance(item, Candle)]
    for candles_before, (position, candle) in enumerate(zip(positions, candles, strict=True)):
        assert position - candles_before == bisect.bisect_left(trade_times, candle.close_time)


def test_rejected_input_is_replayed_where_it_appeared_in_its_stream(dumps: BinanceDumps) -> None:
    candles = minute_candles(dumps, 3)
    bad = Rejected("somewhere", b"garbage", "not a row")
    trades = perp_trades(dumps, hours=1)[:2]

    merged = list(merge_by_event_time([[candles[0], bad, *candles[1:]], trades]))

    assert merged == [candles[0], bad, candles[1], candles[2], *trades]


def test_replay_at_full_speed_publishes_every_record_and_dead_letter_exactly_once(
        dumps: BinanceDumps, publisher: Publisher, kafka: KafkaResource) -> None:
    candles = list(hour_candles(dumps))
    trades = perp_trades(dumps, hours=2)
    bad = Rejected("binance-dumps test", b"1,2,3", "a Binance kline row needs at least 9 columns, got 3")
    clock = FakeClock()
    replayer = Replayer(publisher, speed=None, clock=clock, sleep=clock.sleep)

    status = replayer.run([*candles[:3], bad, *candles[3:]], trades)

    assert clock.sleeps == []
    assert status.published == {topics.CANDLES_1H: 24, topics.TRADES: len(trades)}
    assert status.dead_letters == 1
    assert status.market_time_ms == candles[-1].close_time
    assert not status.stopped
    assert f"{topics.CANDLES_1H} 24 " in status.line() and f"{topics.TRADES} {len(trades):,} " in status.line()
    arrived = [Trade.from_json(m.value()) for m in consume(kafka, topics.TRADES, len(trades))]
    assert arrived == trades
    assert [Candle.from_json(m.value()) for m in consume(kafka, topics.CANDLES_1H, 24)] == candles
    assert publisher.delivered[publisher.topic_prefix + topics.DEADLETTER] == 1


def test_speed_60_sleeps_one_second_per_market_minute(dumps: BinanceDumps, publisher: Publisher) -> None:
    candles = minute_candles(dumps, 30)
    clock = FakeClock()
    replayer = Replayer(publisher, speed=60, clock=clock, sleep=clock.sleep)

    status = replayer.run(candles)

    assert clock.sleeps == pytest.approx([1.0] * 29)
    assert status.published == {topics.CANDLES_1M: 30}
    assert publisher.delivered[publisher.topic_prefix + topics.CANDLES_1M] == 30


def test_speed_60_replays_half_an_hour_of_irregular_trades_in_thirty_seconds(
        dumps: BinanceDumps, publisher: Publisher) -> None:
    trades = [t for t in perp_trades(dumps, hours=1) if t.ts < MAY_8_2026_MS + 30 * 60_000]
    clock = FakeClock()
    replayer = Replayer(publisher, speed=60, clock=clock, sleep=clock.sleep)

    replayer.run(trades)

    market_seconds = (trades[-1].ts - trades[0].ts) / 1000
    assert market_seconds > 29 * 60
    assert sum(clock.sleeps) == pytest.approx(market_seconds / 60, abs=0.001)
    assert all(s > 0 for s in clock.sleeps)


def test_paced_replay_publishes_candles_and_trades_in_event_time_order(
        dumps: BinanceDumps, publisher: Publisher) -> None:
    candles = [c for c in hour_candles(dumps) if isinstance(c, Candle)]
    trades = perp_trades(dumps, hours=3)
    expected = sorted([(c.close_time, 0, i) for i, c in enumerate(candles)]
                      + [(t.ts, 1, i) for i, t in enumerate(trades)])
    prefixes = {(0, 0)} | set(itertools.accumulate(
        ((stream == 0, stream == 1) for _, stream, _ in expected), lambda a, b: (a[0] + b[0], a[1] + b[1])))
    clock = FakeClock()
    seen: list[tuple[int, int]] = []

    def sleep_and_note_what_was_published(seconds: float) -> None:
        clock.sleep(seconds)
        published = replayer.status().published
        seen.append((published.get(topics.CANDLES_1H, 0), published.get(topics.TRADES, 0)))

    replayer = Replayer(publisher, speed=3600, clock=clock, sleep=sleep_and_note_what_was_published)
    replayer.run(candles, trades)

    assert all(pair in prefixes for pair in seen)
    assert {candles_so_far for candles_so_far, _ in seen} >= {1, 2}, "the first candles come between trades"


def test_stop_event_ends_the_replay_with_everything_published_delivered(
        dumps: BinanceDumps, publisher: Publisher, kafka: KafkaResource) -> None:
    candles = minute_candles(dumps, 60)
    clock = FakeClock()
    stop = threading.Event()

    def sleep_then_stop_at_the_fifth(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 5:
            stop.set()

    status = Replayer(publisher, speed=60, stop=stop, clock=clock, sleep=sleep_then_stop_at_the_fifth).run(candles)

    assert status.stopped
    assert status.published == {topics.CANDLES_1M: 5}
    assert [Candle.from_json(m.value()) for m in consume(kafka, topics.CANDLES_1M, 5)] == candles[:5]


def test_stop_event_wakes_a_real_time_replay_from_its_sleep(dumps: BinanceDumps, publisher: Publisher) -> None:
    replayer = Replayer(publisher, speed=1.0)
    runner = threading.Thread(target=replayer.run, args=(minute_candles(dumps, 3),))
    runner.start()
    while not replayer.status().published:
        runner.join(0.01)

    replayer.stop.set()
    runner.join(30)

    assert not runner.is_alive(), "the replay kept sleeping after stop was set"
    assert replayer.status().published == {topics.CANDLES_1M: 1}


@pytest.mark.parametrize("speed", [0, -60])
def test_speed_must_be_a_positive_factor(speed: float, publisher: Publisher) -> None:
    with pytest.raises(ValueError, match="positive factor"):
        Replayer(publisher, speed=speed)

