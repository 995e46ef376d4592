"""Test helpers: real data onto a test's topics, and the sensor → run loop executed in process."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd

from pricepipe_assets.defs import lake, live, ml
from pricepipe_assets.defs.lake.jobs import TOPIC_JOBS, job_name
from pricepipe_assets.defs.lake.sensors import kafka_sensor
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource, ModelRulesResource
from pricepipe_assets.defs.resources.spark import spark_resource
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets_tests.support.kline_files import KLINE_COLUMNS, kline_file
from pricepipe_assets_tests.support.stream_runs import catch_up

CANDLE_DAY = dt.date(2024, 1, 1)
TRADE_DAY = dt.date(2026, 5, 8)


def publish_candles(kafka: KafkaResource, shared_data: Path, cache_dir: Path, day: dt.date = CANDLE_DAY) -> int:
    dumps = BinanceDumps(cache_dir, (shared_data / "binance").as_uri())
    return dumps.backfill(kafka.publisher(), Dataset.klines("BTCUSDT", "1m"), day, day).records_published


def publish_trades(kafka: KafkaResource, shared_data: Path, cache_dir: Path) -> int:
    dumps = BinanceDumps(cache_dir, (shared_data / "binance").as_uri())
    dataset = Dataset.agg_trades("BTCUSD_PERP", "futures/cm")
    return dumps.backfill(kafka.publisher(), dataset, TRADE_DAY, TRADE_DAY).records_published


def source_candles(shared_data: Path, day: dt.date = CANDLE_DAY) -> pd.DataFrame:
    return pd.read_csv(kline_file(shared_data, "BTCUSDT", day.isoformat()), header=None, names=KLINE_COLUMNS)


def source_trades(shared_data: Path) -> pd.DataFrame:
    path = shared_data / f"binance/data/futures/cm/daily/aggTrades/BTCUSD_PERP/BTCUSD_PERP-aggTrades-{TRADE_DAY}.zip"
    return pd.read_csv(path)


def expected_minute_stats(source: pd.DataFrame) -> pd.DataFrame:
    """The reference for trade statistics: a pandas group-by of aggTrades rows per minute."""
    trades = source.sort_values(["transact_time", "agg_trade_id"])
    trades["minute"] = trades["transact_time"] - trades["transact_time"] % 60_000
    trades["quote"] = trades["quantity"] * trades["price"]
    trades["buy"] = trades["quantity"].where(~trades["is_buyer_maker"], 0.0)
    trades["sell"] = trades["quantity"].where(trades["is_buyer_maker"], 0.0)
    stats = trades.groupby("minute").agg(trades=("agg_trade_id", "size"), volume=("quantity", "sum"),
                                         quote_volume=("quote", "sum"), buy_volume=("buy", "sum"),
                                         sell_volume=("sell", "sum"), last_price=("price", "last"))
    stats["vwap"] = stats["quote_volume"] / stats["volume"]
    return stats.reset_index()


TRADE_CANDLE_COLUMNS = ["open", "high", "low", "close", "volume", "quote_volume", "trades"]


def expected_trade_candles(source: pd.DataFrame, grace_s: int) -> pd.DataFrame:
    """The reference for `trade_candles`: a pandas resample of aggTrades rows to 1m, indexed by open
    time, only minutes whose end the last trade is the grace period past (the later ones are still open)."""
    trades = source.sort_values(["transact_time", "agg_trade_id"])
    trades = trades.assign(quote=trades["quantity"] * trades["price"],
                           time=pd.to_datetime(trades["transact_time"], unit="ms")).set_index("time")
    minutes = trades.resample("1min").agg({"price": ["first", "max", "min", "last"], "quantity": "sum",
                                           "quote": "sum", "agg_trade_id": "count"})
    minutes.columns = TRADE_CANDLE_COLUMNS
    minutes = minutes[minutes["trades"] > 0]
    minutes.index = (minutes.index - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)
    newest = int(source["transact_time"].max())
    return minutes[minutes.index + 60_000 + grace_s * 1000 <= newest]


def definitions(kafka: KafkaResource, cassandra: CassandraResource, lake_resource: LakeResource) -> dg.Definitions:
    """The code location's Kafka-fed assets, the stream worker's tables, checks and jobs over the
    test's own resources."""
    settings = Settings.from_env({"PRICEPIPE_SPARK_MASTER": "local[2]"})
    return dg.Definitions.merge(
        *(group.definitions(settings) for group in (lake, live, ml)),
        dg.Definitions(resources={"kafka": kafka, "cassandra": cassandra, "lake": lake_resource,
                                  "model_rules": ModelRulesResource(), "spark": spark_resource(settings)}),
    )


def tick(topic: str, kafka: KafkaResource, instance: dg.DagsterInstance,
         cursor: str | None = None) -> dg.SensorResult:
    sensor = kafka_sensor(topic, minimum_interval_seconds=1)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"kafka": kafka})
    return sensor(context)


def run_requested(defs: dg.Definitions, topic: str, request: dg.RunRequest, instance: dg.DagsterInstance,
                  raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(job_name(topic))
    return job.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags,
                                  raise_on_error=raise_on_error)


def drain(defs: dg.Definitions, topic: str, kafka: KafkaResource, instance: dg.DagsterInstance,
          max_runs: int = 5, grace_s: int = Settings().trade_candle_grace_s) -> list[dg.ExecuteInProcessResult]:
    """What the platform does with ``topic``: the stream worker's stages write its live tables until
    they are caught up and report their materializations to ``instance``, then the topic's sensor is
    ticked and each requested run executed until the lake's assets see no lag (a topic without a
    batch job has none); returns the runs."""
    for event in catch_up(kafka, defs.resources["cassandra"], [topic], grace_s=grace_s):
        instance.report_runless_asset_event(event)
    results: list[dg.ExecuteInProcessResult] = []
    if topic not in TOPIC_JOBS:
        return results
    for _ in range(max_runs):
        outcome = tick(topic, kafka, instance)
        if not outcome.run_requests:
            return results
        results += [run_requested(defs, topic, request, instance) for request in outcome.run_requests]
    raise AssertionError(f"{topic} still lags after {max_runs} runs")
