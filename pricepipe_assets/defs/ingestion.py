"""The `ingestion` group: the Kafka topics every writer needs, and history backfills into them,
partitioned by symbol and day so any range can be filled from the UI."""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import datetime as dt
from collections.abc import Sequence

import dagster as dg
from dagster import AssetExecutionContext

from pricepipe_assets.contract.topics import ALL_TOPICS, CANDLES_1M
from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.metadata import Materialized
from pricepipe_assets.defs.partitions import symbol_day_partitions
from pricepipe_assets.defs.resources.binance import BinanceResource
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dump_files import Dataset


@dg.asset(
    group_name="ingestion",
    kinds={"kafka"},
    description="The Kafka topics of pricepipe's data contract (candles, trades, quotes, predictions, dead letters), "
    "created with the configured partitions and retention when missing. Idempotent, so materializing it again is "
    "always safe; an asset rather than start-up code so the UI shows when the topics were last ensured.",
)
def kafka_topics(kafka: KafkaResource) -> Materialized:
    created = kafka.ensure_topics(ALL_TOPICS)
    return dg.MaterializeResult(
        metadata={
            "topics": dg.MetadataValue.json([kafka.topic(name) for name in ALL_TOPICS]),
            "created_now": dg.MetadataValue.json(created),
            "partitions_per_topic": kafka.topic_partitions,
            "retention_hours": kafka.retention_hours,
        }
    )


def binance_history_asset(symbols: Sequence[str]) -> dg.AssetsDefinition:
    """``binance_history`` over the days of ``symbols`` (``PRICEPIPE_SYMBOLS``)."""

    @dg.asset(
        name="binance_history",
        partitions_def=symbol_day_partitions(symbols),
        group_name="ingestion",
        kinds={"kafka"},
        deps=["kafka_topics"],
        description="One day of a symbol's 1m candles from Binance's public dumps (checksum-verified), published to "
        "`candles.1m` like live data; the sensor-driven assets take it on to the lake and Cassandra. Bad rows go "
        "to `deadletter` with the reason. Backfill any range of days and symbols from the partitions view.",
    )
    def binance_history(
        context: AssetExecutionContext, kafka: KafkaResource, binance: BinanceResource
    ) -> Materialized:
        keys = context.partition_key.keys_by_dimension
        symbol, day = keys["symbol"], dt.date.fromisoformat(keys["date"])
        result = binance.dumps().backfill(kafka.publisher(), Dataset.klines(symbol, "1m"), day, day)
        context.log.info(f"{symbol} {day}: {result.records_published} candles published, {result.dead_letters} dead letters")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.records_published,
                "topic": kafka.topic(CANDLES_1M),
                "rows_read": result.rows_read,
                "dead_letters": result.dead_letters,
                "open_outside_low_high": result.quirks,
                "checksum_verified": result.verified == result.files,
                "first_close_time": "" if result.first_event_ms is None else utc_iso(result.first_event_ms),
                "last_close_time": "" if result.last_event_ms is None else utc_iso(result.last_event_ms),
            }
        )

    return binance_history


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[kafka_topics, binance_history_asset(settings.symbols)])
