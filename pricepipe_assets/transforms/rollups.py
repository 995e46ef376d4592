"""Spark transformations from the lake's raw zone to its curated zone.

The raw zone holds every Kafka message as delivered, so one candle or trade can appear more than
once (a source replayed, a feed reconnecting). Every rollup therefore starts from the newest
delivery of each key, which makes the curated zone the same however often the input was replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.storage.cassandra_schema import MOVING_AVERAGE_WINDOWS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

DAY_MS = INTERVAL_MS["1d"]


def newest_delivery(raw: DataFrame, keys: Sequence[str]) -> DataFrame:
    """One row per ``keys``: the one delivered last (highest Kafka partition, then offset)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy(*keys).orderBy(F.desc("kafka_partition"), F.desc("kafka_offset"))
    return raw.withColumn("_delivery", F.row_number().over(order)).filter("_delivery = 1").drop("_delivery")


def rollup_candles(minutes: DataFrame, interval: str) -> DataFrame:
    """Candles of ``interval`` from de-duplicated 1m candles.

    ``minutes`` counts the 1m candles behind each row and ``is_complete`` says whether all of them
    were there, so a partial current day, or a day with an exchange outage, is visible as such.
    """
    from pyspark.sql import functions as F

    step = INTERVAL_MS[interval]
    start = F.col("open_time") - F.col("open_time") % step
    return (
        minutes.groupBy("symbol", start.alias("open_time"))
        .agg(
            F.first("exchange").alias("exchange"),
            F.min_by("open", "open_time").alias("open"),
            F.max("high").alias("high"),
            F.min("low").alias("low"),
            F.max_by("close", "open_time").alias("close"),
            F.sum("volume").alias("volume"),
            F.sum("quote_volume").alias("quote_volume"),
            F.sum("trades").cast("long").alias("trades"),
            F.count("*").cast("int").alias("minutes"),
        )
        .withColumn("interval", F.lit(interval))
        .withColumn("close_time", F.col("open_time") + step - 1)
        .withColumn("is_complete", F.col("minutes") == step // INTERVAL_MS["1m"])
        .withColumn("date", F.to_date(F.timestamp_millis("open_time")))
    )


def with_venue_candles(rollup: DataFrame, venue: DataFrame) -> DataFrame:
    """One candle per symbol and period from two sources: ``rollup`` (from the lake's 1m candles) and
    ``venue`` (the exchange's own candles of the same interval, imported or backfilled).

    A rollup with every minute of its period wins: it is built from the finest data the lake
    holds and keeps up with a day still filling. Otherwise the venue's candle wins, since it saw
    minutes the lake lacks (years of daily history come only that way); a partial rollup is left
    only for periods the venue has no candle of. Each period is counted once, so features never
    see a day twice. ``minutes`` stays null on a venue's candle: no 1m candle is behind it.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    columns = {"minutes": F.lit(None), "date": F.to_date(F.timestamp_millis("open_time"))}
    venue_rows = venue.select(*(columns.get(name, F.col(name)).cast(rollup.schema[name].dataType).alias(name)
                                for name in rollup.columns)).withColumn("_rank", F.lit(1))
    ranked = rollup.withColumn("_rank", F.when(F.col("is_complete"), 0).otherwise(2)).unionByName(venue_rows)
    order = Window.partitionBy("symbol", "open_time").orderBy("_rank")
    return ranked.withColumn("_pick", F.row_number().over(order)).filter("_pick = 1").drop("_pick", "_rank")


def moving_averages(daily: DataFrame, windows: Sequence[int] = MOVING_AVERAGE_WINDOWS) -> DataFrame:
    """Trailing N-day simple moving averages of daily close: the day itself and the N-1 before it.

    The window is a range of calendar days, not of rows, so a missing day is never silently
    replaced by an older one; a day whose window is not full has no average.
    """
    from functools import reduce

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    day_number = (F.col("open_time") / DAY_MS).cast("long")
    by_day = daily.select("symbol", "open_time", "close", day_number.alias("day_number"))
    frames = []
    for window in windows:
        trailing = Window.partitionBy("symbol").orderBy("day_number").rangeBetween(-(window - 1), 0)
        frames.append(
            by_day.select(
                "symbol", "open_time", F.lit(window).alias("window"),
                F.avg("close").over(trailing).alias("sma"), F.count("close").over(trailing).alias("days"),
            ).filter(F.col("days") == window).drop("days")
        )
    return reduce(lambda left, right: left.unionByName(right), frames)


def trade_aggregates(trades: DataFrame, interval: str) -> DataFrame:
    """Per symbol and hour or day: count, volumes, buy/sell split, VWAP and price range of distinct trades."""
    from pyspark.sql import functions as F

    step = INTERVAL_MS[interval]
    start = F.col("ts") - F.col("ts") % step
    distinct = newest_delivery(trades, ["symbol", "exchange", "trade_id"])
    return (
        distinct.groupBy("symbol", start.alias("open_time"))
        .agg(
            F.count("*").alias("trades"),
            F.sum("size").alias("volume"),
            F.sum(F.col("size") * F.col("price")).alias("quote_volume"),
            F.sum(F.when(F.col("side") == "buy", F.col("size")).otherwise(0.0)).alias("buy_volume"),
            F.sum(F.when(F.col("side") == "sell", F.col("size")).otherwise(0.0)).alias("sell_volume"),
            F.min_by("price", F.struct("ts", "trade_id")).alias("first_price"),
            F.max_by("price", F.struct("ts", "trade_id")).alias("last_price"),
            F.max("price").alias("high"),
            F.min("price").alias("low"),
        )
        .withColumn("vwap", F.col("quote_volume") / F.col("volume"))
        .withColumn("interval", F.lit(interval))
        .withColumn("date", F.to_date(F.timestamp_millis("open_time")))
    )
