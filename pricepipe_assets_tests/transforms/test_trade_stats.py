"""Trade statistics on the real Cassandra: a minute written in several batches equals the group-by
of its distinct trades whether its trades come from the worker's memory or are read back, and the
memory spares the reads it is there for."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from pricepipe_assets.contract.records import Trade
from pricepipe_assets.defs.resources import CassandraResource
from pricepipe_assets.kafka.batches import Delivered
from pricepipe_assets.storage.live_tables import SELECT_MINUTES
from pricepipe_assets.transforms.live_writes import trades_and_minutes
from pricepipe_assets.transforms.trade_stats import RecentMinutes, TradeStats, utc_time

MINUTE = 1_778_198_400_000  # 2026-05-08 00:00 UTC
SYMBOL = "XBTUSD"


def trade(ts: int, trade_id: str, size: float = 1.0, side: str = "buy") -> Delivered:
    return Delivered("trades", 0, 0, Trade("bitmex", SYMBOL, trade_id, ts, side, size, 80_000.0 + ts % 997))


def stored_minute(cassandra: CassandraResource, minute: int) -> tuple[object, ...]:
    [row] = cassandra.session().execute(cassandra.prepare(SELECT_MINUTES), (SYMBOL, utc_time(minute).date(),
                                                                            utc_time(minute), utc_time(minute + 1)))
    return (row.trades, row.volume, row.quote_volume, row.buy_volume, row.sell_volume, row.vwap, row.last_price)


def expected(batches: Sequence[Sequence[Delivered]], minute: int) -> tuple[object, ...]:
    distinct = {(item.record.ts, item.record.trade_id): item.record for batch in batches for item in batch
                if item.record.ts - item.record.ts % 60_000 == minute}
    return TradeStats.of_trades([distinct[key] for key in sorted(distinct)]).row()


class CountedReads:
    """The queries a test's Cassandra client ran through ``read_all``."""

    def __init__(self) -> None:
        self.queries = 0


@pytest.fixture()
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountedReads]:
    counted, read_all = CountedReads(), CassandraResource.read_all

    def counting(self: CassandraResource, cql: str, parameters: Sequence[Sequence[object]]) -> list[list[object]]:
        counted.queries += len(parameters)
        return read_all(self, cql, parameters)

    monkeypatch.setattr(CassandraResource, "read_all", counting)
    yield counted


def test_a_minute_written_again_is_computed_from_memory_without_a_read(cassandra: CassandraResource,
                                                                       reads: CountedReads) -> None:
    recent = RecentMinutes()
    first = [trade(MINUTE + 1_000, "1"), trade(MINUTE + 2_000, "2", side="sell")]
    second = [trade(MINUTE + 2_000, "2", side="sell"), trade(MINUTE + 3_000, "3", 0.5)]
    assert trades_and_minutes(cassandra, first, recent) == (2, 1)
    before = reads.queries
    assert trades_and_minutes(cassandra, second, recent) == (2, 1)
    assert reads.queries == before
    assert stored_minute(cassandra, MINUTE) == pytest.approx(expected([first, second], MINUTE), rel=1e-12)


def test_a_new_owner_reads_back_the_trades_its_predecessor_wrote(cassandra: CassandraResource) -> None:
    first = [trade(MINUTE + 1_000, "1"), trade(MINUTE + 61_000, "2")]
    second = [trade(MINUTE + 4_000, "3", 2.0), trade(MINUTE + 62_000, "4", side="sell")]
    trades_and_minutes(cassandra, first, RecentMinutes())
    trades_and_minutes(cassandra, second, RecentMinutes())
    for minute in (MINUTE, MINUTE + 60_000):
        assert stored_minute(cassandra, minute) == pytest.approx(expected([first, second], minute), rel=1e-12)


def test_a_trade_later_than_the_memory_keeps_reads_its_minute_back(cassandra: CassandraResource) -> None:
    recent = RecentMinutes(keep_ms=5 * 60_000)
    batches = [[trade(MINUTE + 1_000, "1")], [trade(MINUTE + 10 * 60_000, "2")], [trade(MINUTE + 30_000, "3", 3.0)]]
    for batch in batches[:2]:
        trades_and_minutes(cassandra, batch, recent)
    assert recent.minute(SYMBOL, MINUTE) is None
    trades_and_minutes(cassandra, batches[2], recent)
    assert stored_minute(cassandra, MINUTE) == pytest.approx(expected(batches, MINUTE), rel=1e-12)


def test_forgotten_partitions_are_read_again(cassandra: CassandraResource) -> None:
    recent = RecentMinutes()
    first = [trade(MINUTE + 1_000, "1")]
    trades_and_minutes(cassandra, first, recent)
    recent.forget()
    assert recent.minute(SYMBOL, MINUTE) is None
    second = [trade(MINUTE + 5_000, "2")]
    trades_and_minutes(cassandra, second, recent)
    assert stored_minute(cassandra, MINUTE) == pytest.approx(expected([first, second], MINUTE), rel=1e-12)
