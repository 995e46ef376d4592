"""The LSTM minute model as an asset on real minutes: warm-started versions, scored against the naive
forecast and the SGD model on the same minutes, checked, and its predictions published beside the SGD model's."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_pyspark import LazyPySparkResource

from pricepipe_assets.contract.topics import CANDLES_1M
from pricepipe_assets.defs.ml.features import minute_features
from pricepipe_assets.defs.ml.minute_models import minute_lstm_model, minute_model
from pricepipe_assets.defs.ml.training import MINUTE_LSTM_MODEL
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource, ModelRulesResource
from pricepipe_assets.storage import model_store
from pricepipe_assets_tests.support.kafka_runs import definitions, drain, publish_candles
from pricepipe_assets_tests.support.lake_fill import real_minutes, write_raw_candles

FAST = {"ops": {"minute_lstm_model": {"config": {"epochs": 1}}}}


def _materialize(spark_config: dict[str, str], lake: LakeResource, instance: dg.DagsterInstance,
                 *assets: Any) -> dg.ExecuteInProcessResult:
    return dg.materialize([minute_features, *assets], instance=instance, run_config=FAST, resources={
        "spark": LazyPySparkResource(spark_config=spark_config), "lake": lake, "model_rules": ModelRulesResource()})


def test_the_lstm_learns_only_new_minutes_is_checked_against_naive_and_sgd_and_publishes_under_its_name(
        spark: Any, spark_config: dict[str, str], kafka: KafkaResource, cassandra: CassandraResource,
        local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    candles = real_minutes(shared_data, tmp_path, "BTCUSDT", dt.date(2024, 1, 1), dt.date(2024, 1, 3))
    instance = dg.DagsterInstance.ephemeral()
    write_raw_candles(local_lake, candles[:2 * 1440])
    first = _materialize(spark_config, local_lake, instance, minute_lstm_model)
    learned_first = first.asset_materializations_for_node("minute_lstm_model")[0].metadata[
        "BTCUSDT/minutes_learned"].value
    write_raw_candles(local_lake, candles)
    second = _materialize(spark_config, local_lake, instance, minute_lstm_model, minute_model)
    metadata = second.asset_materializations_for_node("minute_lstm_model")[0].metadata
    assert metadata["BTCUSDT/minutes_learned"].value == learned_first + 1440
    assert metadata["BTCUSDT/minutes_fitted_now"].value == 1440
    assert len(model_store.versions(local_lake, MINUTE_LSTM_MODEL, "BTCUSDT")) == 2
    table = metadata["BTCUSDT/metrics"].value
    assert all(f"| {who} |" in table for who in ("model", "naive", "sgd_minute"))
    assert 0.9 < metadata["BTCUSDT/mae_ratio_to_naive"].value < 1.1
    assert 0.9 < metadata["BTCUSDT/sgd_mae_ratio_to_naive"].value < 1.1
    assert 0 < metadata["BTCUSDT/interval_coverage"].value <= 1
    assert metadata["BTCUSDT/plot"].value.startswith("![")
    check = next(c for c in second.get_asset_check_evaluations() if c.asset_key == dg.AssetKey(MINUTE_LSTM_MODEL))
    assert check.check_name == "not_worse_than_baseline"
    assert metadata["refused_files"].value == {}  # the first run's version loaded, so the second warm-started
    stored = model_store.load_latest(local_lake, MINUTE_LSTM_MODEL, "BTCUSDT").stored
    assert stored is not None and set(stored.metrics) == {"model", "naive", "sgd_minute"}

    publish_candles(kafka, shared_data, tmp_path, day=dt.date(2024, 1, 3))
    (candle_run,) = drain(definitions(kafka, cassandra, local_lake), CANDLES_1M, kafka, instance)
    made = candle_run.asset_materializations_for_node("minute_predictions")[0].metadata
    assert made["dagster/row_count"].value == 2  # the SGD model's and the LSTM's (or naive for a failed check)
    assert made["targets"].value == {"BTCUSDT": "2024-01-04T00:00:00+00:00"}
    assert made["skipped"].value == {} and made["refused_files"].value == {}
    forecast = stored.model.forecast(_tail(local_lake))
    assert forecast["predicted"].iloc[0] == pytest.approx(candles[-1].close, rel=0.01)


def _tail(lake: LakeResource) -> Any:
    from pricepipe_assets.defs.ml.training import MINUTE_FEATURES_DATASET, features_frame

    return features_frame(lake, MINUTE_FEATURES_DATASET, "BTCUSDT").tail(60)
