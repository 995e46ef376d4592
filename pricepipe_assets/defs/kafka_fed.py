"""What every Kafka-fed asset shares: its run config (the offset range a sensor chose), its
consumer group, reading its share of the range and describing the batch in metadata."""

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from pricepipe_assets.contract.utc import utc_day, utc_iso
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.kafka.batches import Batch, Delivered, OffsetRange


class OffsetRangesConfig(dg.Config):
    """The offsets a run covers, as the sensor's run key writes them."""

    offset_ranges: str = Field(
        default="",
        description="Ranges `topic:partition:from-to,...` chosen by the topic's sensor; each asset reads from its own "
        "consumer group's committed offset up to `to`. Empty: up to the newest offsets (a manual materialization).",
    )


def read_batch(context: dg.AssetExecutionContext, kafka: KafkaResource, config: OffsetRangesConfig, topic: str, *,
               dead_letter: bool = False, align_to: int = 1,
               on_records: Callable[[Sequence[Delivered]], None] | None = None) -> Batch:
    """This asset's unread part of the run's range of ``topic``, decoded (``on_records``: see
    :func:`kafka_batches.read`)."""
    ends = None
    if config.offset_ranges:
        ends = {r.partition: r.end for r in kafka_batches.parse_ranges(config.offset_ranges) if r.topic == topic}
    group = kafka.consumer_group(context.asset_key.to_user_string())
    ranges = kafka_batches.group_ranges(kafka, group, topic, ends, align_to=align_to)
    batch = kafka_batches.read(kafka, group, ranges, dead_letter=dead_letter, on_records=on_records)
    context.log.info(f"{topic}: read {len(batch.records)} records, {batch.dead_letters} bad, from "
                     f"{kafka_batches.format_ranges(ranges) or 'nothing new'}")
    return batch


def run_topics(config: OffsetRangesConfig, topics: Sequence[str]) -> list[str]:
    """The ones of ``topics`` this run covers: those its sensor chose a range of, or all of them for
    a manual materialization (no ranges), so an asset fed by several topics reads only its run's."""
    if not config.offset_ranges:
        return list(topics)
    chosen = {r.topic for r in kafka_batches.parse_ranges(config.offset_ranges)}
    return [topic for topic in topics if topic in chosen]


def commit_batch(context: dg.AssetExecutionContext, kafka: KafkaResource, batch: Batch) -> None:
    """Record the asset's progress; called only once the batch's write has succeeded."""
    kafka_batches.commit(kafka, kafka.consumer_group(context.asset_key.to_user_string()), batch.ranges)


def batch_metadata(rows_written: int, *batches: Batch) -> dict[str, Any]:
    """Rows written, offsets, event-time range, touched days and symbols (with each one's newest record) and
    dead letters of a materialization."""
    ranges: list[OffsetRange] = [r for batch in batches for r in batch.ranges]
    times = [t for batch in batches for t in batch.timestamps()]
    newest: dict[str, int] = {}
    for batch in batches:
        for item in batch.records:
            newest[item.record.key] = max(newest.get(item.record.key, 0), item.record.timestamp)
    return {
        "dagster/row_count": rows_written,
        "records_read": sum(len(batch.records) for batch in batches),
        "dead_letters": sum(batch.dead_letters for batch in batches),
        "offset_ranges": kafka_batches.format_ranges(ranges),
        "first_event_time": utc_iso(min(times)) if times else "",
        "last_event_time": utc_iso(max(times)) if times else "",
        "symbols": dg.MetadataValue.json(sorted(newest)),
        "newest_by_symbol": dg.MetadataValue.json({symbol: utc_iso(ms) for symbol, ms in sorted(newest.items())}),
        "days": dg.MetadataValue.json(sorted({utc_day(t) for t in times})),
    }
