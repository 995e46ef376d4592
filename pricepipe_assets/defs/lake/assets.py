"""The lake's raw zone: Kafka's candles, trades and order books as Hive-partitioned Parquet, exactly as delivered.

Files are named by Kafka partition and a fixed block of offsets (``p0-o000000010000`` holds
offsets [10000, 20000)), and each run starts reading at the beginning of the block its consumer
group stopped in. So a replay, or a run killed half-way and re-run over a longer range, rewrites
the same files whole instead of adding copies.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg
from dagster import AssetExecutionContext

from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.contract.records import CANDLE_TOPICS, Candle, Record, Trade
from pricepipe_assets.contract.topics import ORDERBOOK, TRADES
from pricepipe_assets.contract.utc import utc_day
from pricepipe_assets.defs.kafka import topic_key
from pricepipe_assets.defs.kafka_fed import (
    OffsetRangesConfig,
    batch_metadata,
    commit_batch,
    read_batch,
    run_topics,
)
from pricepipe_assets.defs.metadata import Materialized
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.kafka.batches import Batch, Delivered
from pricepipe_assets.storage.lake_datasets import (
    OFFSETS_PER_FILE,
    RAW_CANDLES,
    RAW_ORDER_BOOKS,
    RAW_TRADES,
    block_start,
    chunk_basename,
)
from pricepipe_assets.transforms import live_writes

# Both a topic's lake asset and its Cassandra assets are ready when its run starts; Dagster's executor
# takes the higher `dagster/priority` first. Readers wait on the live tables, nobody waits on the raw
# zone within seconds, so the lake write goes last and the live rows land a Kafka read and a Parquet
# write sooner.
AFTER_LIVE_TABLES = {"dagster/priority": "-1"}
# Columns the contract gained after files were written, with the value their rows mean: a candle
# stored before `is_complete` existed covered its whole interval (the contract refused the others).
ADDED_COLUMNS: dict[str, Any] = {"is_complete": True}


R = TypeVar("R", bound=Record)


def _record(item: Delivered, kind: type[R]) -> R:
    """The delivered record, which its topic makes a ``kind``."""
    if not isinstance(item.record, kind):
        raise TypeError(f"expected a {kind.__name__} from {item.topic}, got {type(item.record).__name__}")
    return item.record


def candle_row(item: Delivered) -> dict[str, Any]:
    candle = _record(item, Candle)
    return {**candle.to_dict(), "date": utc_day(candle.open_time), "kafka_partition": item.partition,
            "kafka_offset": item.offset}


def trade_row(item: Delivered) -> dict[str, Any]:
    trade = _record(item, Trade)
    return {**trade.to_dict(), "date": utc_day(trade.ts), "kafka_partition": item.partition, "kafka_offset": item.offset}


def book_row(item: Delivered) -> dict[str, Any]:
    book = _record(item, OrderBook)
    return {**book.to_dict(), "bids": [list(level) for level in book.bids], "asks": [list(level) for level in book.asks],
            "date": utc_day(book.ts), "kafka_partition": item.partition, "kafka_offset": item.offset}


def _with_added_columns(old: Any, schema: Any) -> Any:
    """An older file's rows with the columns of ``schema`` it predates, filled from :data:`ADDED_COLUMNS`."""
    import pyarrow as pa

    for name in schema.names:
        if name not in old.column_names:
            old = old.append_column(schema.field(name), pa.array([ADDED_COLUMNS[name]] * old.num_rows,
                                                                 schema.field(name).type))
    return old


def write_chunks(lake: LakeResource, batch: Batch, dataset: str, partition_cols: list[str],
                 to_row: Callable[[Delivered], dict[str, Any]]) -> int:
    """Write the batch as one file per offset block and lake partition; returns the rows written.

    A read normally starts at its block's first offset, so the new file replaces the old one
    whole. When Kafka's retention has already dropped the start of the block, the rows the old
    file holds for those offsets are carried over instead of being lost with the rewrite.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    starts = {r.partition: r.start for r in batch.ranges}
    chunks: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for item in batch.records:
        chunks[(item.partition, block_start(item.offset))].append(to_row(item))
    for (partition, block), rows in chunks.items():
        basename = chunk_basename(partition, block)
        table = pa.Table.from_pylist(rows).drop_columns(["v"])
        if starts[partition] > block:
            hive = pa.schema([table.schema.field(name) for name in partition_cols])
            old = lake.read_named(dataset, basename, hive)
            if old is not None:
                kept = _with_added_columns(old.filter(pc.field("kafka_offset") < starts[partition]), table.schema)
                table = pa.concat_tables([kept.select(table.column_names).cast(table.schema), table])
        lake.write_dataset(table, dataset, partition_cols, basename)
    return len(batch.records)


@dg.asset(
    group_name="lake",
    kinds={"kafka", "parquet"},
    op_tags=AFTER_LIVE_TABLES,
    deps=[topic_key(topic) for topic in CANDLE_TOPICS.values()],
    description="Every candle from `candles.1m` (and `candles.1h` / `candles.1d`), as delivered, in the lake's raw "
    "zone: "
    "`raw/candles/interval=1m/symbol=BTCUSDT/date=2024-01-01/p<partition>-o<block start>-0.parquet`, one file "
    f"per block of {OFFSETS_PER_FILE:,} offsets. Replays rewrite the same files, so each Kafka message is stored "
    "once; bad messages go to `deadletter`. Candles the venue closed early are kept with `is_complete` false and "
    "counted in `early_closed`.",
)
def candles_lake(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                 lake: LakeResource) -> Materialized:
    batches, rows = [], 0
    for topic in run_topics(config, list(CANDLE_TOPICS.values())):
        batch = read_batch(context, kafka, config, topic, dead_letter=True, align_to=OFFSETS_PER_FILE)
        rows += write_chunks(lake, batch, RAW_CANDLES, ["interval", "symbol", "date"], candle_row)
        commit_batch(context, kafka, batch)
        batches.append(batch)
    return dg.MaterializeResult(metadata={**batch_metadata(rows, *batches),
                                          "early_closed": sum(live_writes.early_closed(batch.records) for batch in batches),
                                          "dataset": lake.path(RAW_CANDLES)})


@dg.asset(
    group_name="lake",
    kinds={"kafka", "parquet"},
    op_tags=AFTER_LIVE_TABLES,
    deps=[topic_key(TRADES)],
    description="Every trade from `trades`, as delivered, in the lake's raw zone: "
    "`raw/trades/symbol=.../date=.../p<partition>-o<block start>-0.parquet`, one file per block of "
    f"{OFFSETS_PER_FILE:,} offsets. Replays rewrite the same files; bad messages go to `deadletter`.",
)
def trades_lake(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                lake: LakeResource) -> Materialized:
    batch = read_batch(context, kafka, config, TRADES, dead_letter=True, align_to=OFFSETS_PER_FILE)
    rows = write_chunks(lake, batch, RAW_TRADES, ["symbol", "date"], trade_row)
    commit_batch(context, kafka, batch)
    return dg.MaterializeResult(metadata={**batch_metadata(rows, batch), "dataset": lake.path(RAW_TRADES)})


@dg.asset(
    group_name="lake",
    kinds={"kafka", "parquet"},
    op_tags=AFTER_LIVE_TABLES,
    deps=[topic_key(ORDERBOOK)],
    description="Every order book from `orderbook` (the top levels per side, at most one per symbol per "
    "PRICEPIPE_BOOK_PUBLISH_S), as delivered, in the lake's raw zone: the history of the books the live table "
    "keeps only the newest of, `raw/order_books/symbol=.../date=.../p<partition>-o<block start>-0.parquet` with "
    "`bids`/`asks` as lists of [price, size]. Replays rewrite the same files; bad messages go to `deadletter`.",
)
def order_books_lake(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                     lake: LakeResource) -> Materialized:
    batch = read_batch(context, kafka, config, ORDERBOOK, dead_letter=True, align_to=OFFSETS_PER_FILE)
    rows = write_chunks(lake, batch, RAW_ORDER_BOOKS, ["symbol", "date"], book_row)
    commit_batch(context, kafka, batch)
    return dg.MaterializeResult(metadata={**batch_metadata(rows, batch), "dataset": lake.path(RAW_ORDER_BOOKS)})


# The assets that read Kafka in runs; their topics (and so their jobs and sensors) are their deps.
KAFKA_FED = [candles_lake, trades_lake, order_books_lake]
