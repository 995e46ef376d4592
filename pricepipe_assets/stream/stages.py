"""The stages of the stream worker: which live tables each consumer group feeds, from which topics.

A stage is one consumer group subscribed to its topics, and one write per batch through
:mod:`pricepipe_assets.transforms.live_writes`, the same functions a manual run would use. Assets
that must follow another one on the same records (the hourly statistics are summed from the
minute rows, `trade_candles` reads the stored trades back) are *followers* of that stage: they get
the same batch after it, in order, and their own consumer groups commit the same offsets, so each
asset's lag stays visible on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pricepipe_assets.contract.records import CANDLE_TOPICS
from pricepipe_assets.contract.topics import ORDERBOOK, PREDICTIONS, QUOTES, TRADES
from pricepipe_assets.kafka.batches import Delivered, OffsetRange
from pricepipe_assets.kafka.client import KafkaCluster
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.storage.cassandra import CassandraCluster
from pricepipe_assets.storage.live_tables import UPSERT_VENUE_CANDLE
from pricepipe_assets.transforms import live_writes
from pricepipe_assets.transforms import trade_candles as candles_of_trades
from pricepipe_assets.transforms.trade_stats import RecentMinutes


@dataclass(frozen=True)
class Written:
    """What one asset's write of a batch did: rows for `dagster/row_count`, and extra metadata."""

    rows: int
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stores:
    """The clients a write uses (one publisher per stage, for what `trade_candles` publishes and the
    dead letters); ``grace_ms`` is how long after a minute's end `trade_candles` closes it, and
    ``recent`` the minutes of trade statistics this stage wrote (forgotten when partitions move)."""

    kafka: KafkaCluster
    cassandra: CassandraCluster
    publisher: Publisher
    grace_ms: int
    recent: RecentMinutes = field(default_factory=RecentMinutes)


# A write gets the batch's records and the offset ranges they came from (for a follower that
# commits metadata with its offsets); it returns what it wrote.
Write = Callable[[Stores, Sequence[Delivered], Sequence[OffsetRange]], Written]


@dataclass(frozen=True)
class Step:
    """One asset's part of a stage: its write and whether it commits its offsets itself."""

    asset: str
    write: Write
    commits_itself: bool = False


@dataclass(frozen=True)
class Stage:
    """A consumer group (the first step's asset) subscribed to ``topics``; ``dead_letters`` are the
    topics whose bad messages this stage sends to `deadletter` (each topic has one such reader), and
    the records of ``activity`` advance their symbols' clock in `symbols` (each topic has one such
    writer; the worker writes it at its commits, not per batch)."""

    topics: tuple[str, ...]
    steps: tuple[Step, ...]
    dead_letters: frozenset[str] = frozenset()
    activity: frozenset[str] = frozenset()

    @property
    def asset(self) -> str:
        return self.steps[0].asset


def _candles(stores: Stores, records: Sequence[Delivered], _: Sequence[OffsetRange]) -> Written:
    rows = stores.cassandra.write_all(UPSERT_VENUE_CANDLE, live_writes.candle_rows(records))
    return Written(rows, {"early_closed": live_writes.early_closed(records)})


def _trade_stats_minute(stores: Stores, records: Sequence[Delivered], _: Sequence[OffsetRange]) -> Written:
    stored, minutes = live_writes.trades_and_minutes(stores.cassandra, records, stores.recent)
    return Written(minutes, {"trades_stored": stored})


def _trade_stats_hour(stores: Stores, records: Sequence[Delivered], _: Sequence[OffsetRange]) -> Written:
    return Written(live_writes.hour_stats(stores.cassandra, records))


def _trade_candles(stores: Stores, records: Sequence[Delivered], ranges: Sequence[OffsetRange]) -> Written:
    """Publish the minutes the batch closed, then commit with the new watermarks (see
    :mod:`pricepipe_assets.transforms.trade_candles`)."""
    group = stores.kafka.consumer_group(TRADE_CANDLES)
    plan = candles_of_trades.plan(records, candles_of_trades.committed_watermarks(stores.kafka, group, TRADES),
                                  stores.grace_ms)
    published = candles_of_trades.candles(stores.cassandra, plan)
    for candle in published:
        stores.publisher.publish(candle)
    stores.publisher.flush()
    candles_of_trades.commit_with_watermarks(stores.kafka, group, ranges, plan.watermarks)
    return Written(len(published), {"candles_published": len(published)})


def _latest_prices(stores: Stores, records: Sequence[Delivered], _: Sequence[OffsetRange]) -> Written:
    return Written(live_writes.latest_prices(stores.cassandra, records))


def _order_books(stores: Stores, records: Sequence[Delivered], _: Sequence[OffsetRange]) -> Written:
    rows, spreads = live_writes.order_books(stores.cassandra, records)
    return Written(rows, {"spread_by_symbol": spreads})


def _predictions(stores: Stores, records: Sequence[Delivered], _: Sequence[OffsetRange]) -> Written:
    writes = live_writes.predictions(stores.cassandra, records)
    return Written(writes.written, {"forecast_rows": writes.forecasts, "actuals_resolved": writes.resolved,
                                    "predictions_by_model": writes.by_model})


TRADE_CANDLES = "trade_candles"
STAGES: tuple[Stage, ...] = (
    Stage(tuple(CANDLE_TOPICS.values()), (Step("candles_live", _candles),), activity=frozenset(CANDLE_TOPICS.values())),
    Stage((TRADES,), (Step("trade_stats_minute", _trade_stats_minute), Step("trade_stats_hour", _trade_stats_hour),
                      Step(TRADE_CANDLES, _trade_candles, commits_itself=True)), activity=frozenset({TRADES})),
    Stage((QUOTES, ORDERBOOK, TRADES), (Step("latest_prices", _latest_prices),), frozenset({QUOTES}),
          frozenset({QUOTES})),
    Stage((ORDERBOOK,), (Step("order_books_live", _order_books),), activity=frozenset({ORDERBOOK})),
    Stage((PREDICTIONS,), (Step("predictions_live", _predictions),), frozenset({PREDICTIONS})),
)


def stage_topics() -> dict[str, tuple[str, ...]]:
    """Per asset the stream worker writes, the topics it reads."""
    return {step.asset: stage.topics for stage in STAGES for step in stage.steps}


def stage_assets() -> dict[str, tuple[str, ...]]:
    """Per topic, the assets the stream worker writes from it."""
    assets: dict[str, tuple[str, ...]] = {}
    for stage in STAGES:
        for topic in stage.topics:
            assets[topic] = (*assets.get(topic, ()), *(step.asset for step in stage.steps))
    return assets
