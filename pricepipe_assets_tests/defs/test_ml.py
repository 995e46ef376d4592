"""The models as assets on real data: trained from lake features, scored against the naive
baseline, saved as versions, and their forecasts reaching Cassandra through Kafka."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
from dagster_pyspark import LazyPySparkResource

from pricepipe_assets.contract.topics import CANDLES_1M, PREDICTIONS
from pricepipe_assets.defs.ml.daily import daily_forecast, daily_model
from pricepipe_assets.defs.ml.features import daily_features, minute_features
from pricepipe_assets.defs.ml.minute_models import minute_model
from pricepipe_assets.defs.ml.training import DAILY_MODEL, MINUTE_MODEL
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource, ModelRulesResource
from pricepipe_assets.storage import model_store
from pricepipe_assets.storage.lake_datasets import CURATED_CANDLES
from pricepipe_assets_tests.support.kafka_runs import definitions, drain, publish_candles
from pricepipe_assets_tests.support.lake_fill import real_minutes, write_raw_candles

DAY_MS = 86_400_000


def _resources(spark_config: dict[str, str], lake: LakeResource, kafka: KafkaResource | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {"spark": LazyPySparkResource(spark_config=spark_config), "lake": lake,
                                 "model_rules": ModelRulesResource()}
    if kafka is not None:
        resources["kafka"] = kafka
    return resources


def _daily_history(shared_data: Path) -> pa.Table:
    """Real multi-year daily BTCUSDT candles, shaped like the curated zone (the last, still-open day dropped)."""
    frame = pd.read_csv(shared_data / "daily_candles/yanniedog_spot_BTCUSDT_1d.csv").iloc[:-1]
    open_time = (pd.to_datetime(frame["timestamp"], utc=True) - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(
        milliseconds=1)
    return pa.table({"interval": ["1d"] * len(frame), "symbol": ["BTCUSDT"] * len(frame), "open_time": open_time,
                     "open": frame["open"], "high": frame["high"], "low": frame["low"], "close": frame["close"],
                     "volume": frame["volume"], "is_complete": [True] * len(frame)})


def _forecast_rows(cassandra: CassandraResource) -> list[Any]:
    return list(cassandra.session().execute(
        "SELECT made_at, target_time, model, predicted, lower, upper, reason FROM forecasts "
        "WHERE symbol = 'BTCUSDT' AND bucket = '2026-01-01'"))


def test_the_daily_model_publishes_a_15_day_forecast_with_ordered_bounds_that_reaches_cassandra(
        spark: Any, spark_config: dict[str, str], kafka: KafkaResource, cassandra: CassandraResource,
        local_lake: LakeResource, shared_data: Path) -> None:
    history = _daily_history(shared_data)
    local_lake.write_dataset(history, CURATED_CANDLES, ["interval", "symbol"], "history")
    result = dg.materialize([daily_features, daily_model, daily_forecast],
                            resources=_resources(spark_config, local_lake, kafka),
                            run_config={"ops": {"daily_model": {"config": {"origins": 12, "step_days": 30}}}},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    trained = result.asset_materializations_for_node("daily_model")[0].metadata
    assert trained["BTCUSDT/mae_ratio_to_naive"].value > 0
    assert "naive" in trained["BTCUSDT/metrics"].value and "directional_accuracy" in trained["BTCUSDT/metrics"].value
    assert trained["BTCUSDT/plot"].value.startswith("![")
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "not_worse_than_baseline"

    drain(definitions(kafka, cassandra, local_lake), PREDICTIONS, kafka, dg.DagsterInstance.ephemeral())
    rows = _forecast_rows(cassandra)
    last_day = pd.Timestamp(history["open_time"][-1].as_py(), unit="ms")
    assert [row.target_time for row in rows] == [last_day + pd.Timedelta(days=d) for d in range(1, 16)]
    assert all(row.lower <= row.predicted <= row.upper for row in rows)
    stored = model_store.load_latest(local_lake, DAILY_MODEL, "BTCUSDT").stored
    assert stored is not None and {row.model for row in rows} == {"naive" if stored.serve_baseline else "rf_daily"}


def test_a_daily_model_worse_than_the_baseline_is_replaced_by_the_naive_forecast(
        spark: Any, spark_config: dict[str, str], kafka: KafkaResource, cassandra: CassandraResource,
        local_lake: LakeResource, shared_data: Path) -> None:
    local_lake.write_dataset(_daily_history(shared_data), CURATED_CANDLES, ["interval", "symbol"], "history")
    dg.materialize([daily_features, daily_model], resources=_resources(spark_config, local_lake),
                   run_config={"ops": {"daily_model": {"config": {"origins": 10, "step_days": 30}}}},
                   instance=dg.DagsterInstance.ephemeral())
    stored = model_store.load_latest(local_lake, DAILY_MODEL, "BTCUSDT").stored
    assert stored is not None
    model_store.save(local_lake, dataclasses.replace(stored, version=model_store.new_version(
        dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)), serve_baseline=True))

    result = dg.materialize([daily_forecast], resources=_resources(spark_config, local_lake, kafka),
                            instance=dg.DagsterInstance.ephemeral())
    ratio = stored.metrics["model"]["mae"] / stored.metrics["naive"]["mae"]
    reason = f"rf_daily MAE {ratio:.2f} × naive over 10 walk-forward origins"
    served_by = result.asset_materializations_for_node("daily_forecast")[0].metadata["BTCUSDT/served_by"].value
    assert served_by.startswith("naive (version ") and served_by.endswith(f": {reason}")
    drain(definitions(kafka, cassandra, local_lake), PREDICTIONS, kafka, dg.DagsterInstance.ephemeral())
    rows = _forecast_rows(cassandra)
    assert len(rows) == 15 and {row.model for row in rows} == {"naive"} and {row.reason for row in rows} == {reason}
    assert {row.predicted for row in rows} == {_daily_history(shared_data)["close"][-1].as_py()}


class _Planted:
    """A file planted in the lake: unpickled, it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return Path.touch, (self.marker,)


@pytest.mark.parametrize("good_version", [True, False], ids=["after_a_good_version", "alone"])
def test_a_planted_pickle_as_the_newest_daily_model_is_never_run_and_the_forecast_says_it_was_refused(
        kafka: KafkaResource, local_lake: LakeResource, shared_data: Path, tmp_path: Path, good_version: bool) -> None:
    from pricepipe_assets.forecasting.models import DailyModel

    local_lake.write_dataset(_daily_history(shared_data), CURATED_CANDLES, ["interval", "symbol"], "history")
    good, newer = (model_store.new_version(dt.datetime(2026, 1, 6, tzinfo=dt.UTC) + dt.timedelta(hours=h))
                   for h in (0, 1))
    if good_version:
        model_store.save(local_lake, model_store.StoredModel(
            DAILY_MODEL, "BTCUSDT", good, DailyModel(), {"model": {"mae": 2.0}, "naive": {"mae": 1.0}}, True,
            {"naive_half_widths": [0.05 * (d + 1) ** 0.5 for d in range(15)], "origins": 10}))
    planted = f"models/{DAILY_MODEL}/symbol=BTCUSDT/{newer}.pkl"
    local_lake.write_bytes(pickle.dumps(_Planted(tmp_path / "pwned")), planted)

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([daily_forecast], resources=_resources({}, local_lake, kafka), instance=instance)

    assert not (tmp_path / "pwned").exists()
    metadata = result.asset_materializations_for_node("daily_forecast")[0].metadata
    assert metadata["refused_files"].value == {planted: model_store.PICKLE_REFUSED}
    assert metadata["dagster/row_count"].value == 15
    assert metadata["BTCUSDT/served_by"].value == (
        f"naive (version {good}): rf_daily MAE 2.00 × naive over 10 walk-forward origins" if good_version else
        "naive (version history): no daily model loaded: 1 model file(s) refused as unsafe or unreadable")
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert f"BTCUSDT: model file {planted} refused, {model_store.PICKLE_REFUSED}" in logged


def test_the_minute_model_learns_only_new_minutes_and_its_predictions_follow_the_candles_into_cassandra(
        spark: Any, spark_config: dict[str, str], kafka: KafkaResource, cassandra: CassandraResource,
        local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    candles = real_minutes(shared_data, tmp_path, "BTCUSDT", dt.date(2024, 1, 1), dt.date(2024, 1, 3))
    instance = dg.DagsterInstance.ephemeral()
    write_raw_candles(local_lake, candles[:2 * 1440])
    first = dg.materialize([minute_features, minute_model], resources=_resources(spark_config, local_lake),
                           instance=instance)
    learned_first = first.asset_materializations_for_node("minute_model")[0].metadata["BTCUSDT/minutes_learned"].value
    write_raw_candles(local_lake, candles)
    second = dg.materialize([minute_features, minute_model], resources=_resources(spark_config, local_lake),
                            instance=instance)
    metadata = second.asset_materializations_for_node("minute_model")[0].metadata
    assert metadata["BTCUSDT/minutes_learned"].value == learned_first + 1440
    assert len(model_store.versions(local_lake, MINUTE_MODEL, "BTCUSDT")) == 2
    assert 0 < metadata["BTCUSDT/interval_coverage"].value <= 1

    defs = definitions(kafka, cassandra, local_lake)
    publish_candles(kafka, shared_data, tmp_path, day=dt.date(2024, 1, 3))
    (candle_run,) = drain(defs, CANDLES_1M, kafka, instance)
    targets = candle_run.asset_materializations_for_node("minute_predictions")[0].metadata["targets"].value
    assert targets == {"BTCUSDT": "2024-01-04T00:00:00+00:00"}
    drain(defs, PREDICTIONS, kafka, instance)
    (row,) = cassandra.session().execute(
        "SELECT target_time, model, predicted, lower, upper FROM predictions "
        "WHERE symbol = 'BTCUSDT' AND horizon = '1m' AND bucket = '2024-01-04'")
    assert row.lower <= row.predicted <= row.upper
    assert row.predicted == pytest.approx(candles[-1].close, rel=0.01)


def test_a_history_too_short_for_the_daily_model_still_gets_a_naive_forecast_that_says_so(
        spark: Any, spark_config: dict[str, str], kafka: KafkaResource, local_lake: LakeResource,
        shared_data: Path) -> None:
    history = _daily_history(shared_data).slice(0, 60)
    local_lake.write_dataset(history, CURATED_CANDLES, ["interval", "symbol"], "history")
    result = dg.materialize([daily_features, daily_model, daily_forecast],
                            resources=_resources(spark_config, local_lake, kafka), instance=dg.DagsterInstance.ephemeral())
    assert "too short" in result.asset_materializations_for_node("daily_model")[0].metadata["BTCUSDT/skipped"].value
    forecast = result.asset_materializations_for_node("daily_forecast")[0].metadata
    assert forecast["dagster/row_count"].value == 15
    assert forecast["BTCUSDT/served_by"].value == (
        "naive (version history): no daily model yet: 60 closed days of history, and it trains from "
        f"{ModelRulesResource().daily_min_train_days} days before its first walk-forward origin")


def test_the_baseline_check_fails_past_the_margin_and_names_the_symbols_that_fall_back() -> None:
    from pricepipe_assets.defs.ml.training import baseline_check

    within = baseline_check("daily_model", {"BTCUSDT": 1.04, "ETHUSDT": 0.97}, margin=0.05)
    past = baseline_check("daily_model", {"BTCUSDT": 1.06, "ETHUSDT": 0.97}, margin=0.05)
    assert within.passed and within.metadata["falls_back_to_naive"].value == []
    assert not past.passed and past.metadata["falls_back_to_naive"].value == ["BTCUSDT"]
    assert past.metadata["mae_ratio_to_naive"].value == {"BTCUSDT": 1.06, "ETHUSDT": 0.97}
