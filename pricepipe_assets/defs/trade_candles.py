"""The stage from `trades` to `candles.1m`: 1m candles for the symbols with trades and no kline source.

How minutes close, why the whole batch is committed although some minutes stay open, and how late
trades and replays converge: see :mod:`pricepipe_assets.transforms.trade_candles`.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import dagster as dg
from dagster import AssetExecutionContext

from pricepipe_assets.contract.topics import CANDLES_1M, TRADES
from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.kafka_fed import OffsetRangesConfig, batch_metadata, consumer_group
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.topics import topic_key
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.kafka.batches import Batch
from pricepipe_assets.transforms import trade_candles as candles_of_trades

NAME = "trade_candles"
# The asset whose stored trades this stage reads back; it never reads further than that one committed.
TRADE_STORE = "trade_stats_minute"


def _stored_ends(kafka: KafkaResource, config: OffsetRangesConfig) -> dict[int, int]:
    """Per partition, the run's range end, but no further than the trade store committed: every
    trade this stage commits is then in Cassandra for the runs that read its minute back."""
    stored = kafka_batches.committed_and_watermarks(kafka, consumer_group(TRADE_STORE), TRADES)
    ends = {partition: high for partition, (_, _, high) in stored.items()}
    if config.offset_ranges:
        ranges = [r for r in kafka_batches.parse_ranges(config.offset_ranges) if r.topic == TRADES]
        ends = {r.partition: min(r.end, ends.get(r.partition, 0)) for r in ranges}
    return {partition: min(end, stored[partition][0] or 0) for partition, end in ends.items() if partition in stored}


def _read(context: AssetExecutionContext, kafka: KafkaResource, config: OffsetRangesConfig) -> Batch:
    group = consumer_group(NAME)
    ranges = kafka_batches.group_ranges(kafka, group, TRADES, _stored_ends(kafka, config))
    batch = kafka_batches.read(kafka, group, ranges, dead_letter=False)
    context.log.info(f"{TRADES}: read {len(batch.records)} records from "
                     f"{kafka_batches.format_ranges(ranges) or 'nothing new'} (stored by {TRADE_STORE})")
    return batch


def trade_candles_asset(grace_s: int) -> dg.AssetsDefinition:
    """``trade_candles``, closing a minute ``grace_s`` (``PRICEPIPE_TRADE_CANDLE_GRACE_S``) after its end."""
    kline_exchanges = ", ".join(f"`{name}`" for name in sorted(candles_of_trades.KLINE_EXCHANGES))

    @dg.asset(
        name=NAME,
        group_name="live",
        kinds={"kafka", "cassandra"},
        deps=[topic_key(TRADES), TRADE_STORE],
        description=f"1m candles built from `trades` and published to `{CANDLES_1M}` (OHLC, volume, quote volume, "
        f"trade count of the minute's distinct trades) for every trade whose `exchange` has no kline source in "
        f"pricepipe, i.e. is not {kline_exchanges}: BitMEX, the futures aggTrades replay (BTCUSD_PERP in the demo); "
        "a symbol with the venue's klines keeps those. The candle's `exchange` is its trades'. A minute is published "
        f"once the symbol's newest trade is {grace_s} s past its end; a late trade republishes its minute, amended, "
        f"from the trades `{TRADE_STORE}` stored, and a replay publishes identical candles. Each symbol's newest "
        "trade time is committed with the offsets, so a later run publishes the minutes left open.",
    )
    def trade_candles(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                      cassandra: CassandraResource) -> dg.MaterializeResult:
        group = consumer_group(NAME)
        batch = _read(context, kafka, config)
        batch_plan = candles_of_trades.plan(
            batch.records, candles_of_trades.committed_watermarks(kafka, group, TRADES), grace_s * 1000)
        published = candles_of_trades.candles(cassandra, batch_plan)
        publisher = kafka.publisher()
        for candle in published:
            publisher.publish(candle)
        publisher.flush()
        candles_of_trades.commit_with_watermarks(kafka, group, batch.ranges, batch_plan.watermarks)
        return dg.MaterializeResult(metadata={
            **batch_metadata(len(published), batch),
            "candles_published": len(published),
            "open_from": dg.MetadataValue.json({s: utc_iso(ms) for s, ms in sorted(batch_plan.open_minutes.items())}),
        })

    return trade_candles
