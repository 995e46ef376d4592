"""Predictions published to Kafka reach Cassandra through the stream worker, each beside the
actual close once that candle is stored, and daily forecasts are kept whole."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pricepipe_assets.contract.records import Prediction
from pricepipe_assets.contract.topics import CANDLES_1M, PREDICTIONS
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets_tests.support.kafka_runs import definitions, drain, publish_candles, source_candles
from pricepipe_assets_tests.support.stream_runs import materialized

DAY_MS = 1704067200000  # 2024-01-01, the day publish_candles replays
MINUTE_MS = 60_000


def _predict(target_time: int, horizon: str = "1m", predicted: float = 42_000.0) -> Prediction:
    return Prediction("BTCUSDT", "minute_sgd", "v1", horizon, target_time - MINUTE_MS, target_time, predicted,
                      predicted - 50.0, predicted + 50.0)


def test_predictions_reach_cassandra_beside_the_actual_close_once_known(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    defs, instance = definitions(kafka, cassandra, local_lake), dg.DagsterInstance.ephemeral()
    publisher = kafka.publisher()
    targets = [DAY_MS + 600 * MINUTE_MS + m * MINUTE_MS for m in range(3)]
    for target in targets:
        publisher.publish(_predict(target))
    publisher.flush()
    drain(defs, PREDICTIONS, kafka, instance)
    rows = list(cassandra.session().execute(
        "SELECT target_time, predicted, lower, upper, actual, model FROM predictions "
        "WHERE symbol = 'BTCUSDT' AND horizon = '1m' AND bucket = '2024-01-01'"))
    assert len(rows) == 3 and all(row.actual is None for row in rows)
    assert rows[0].lower <= rows[0].predicted <= rows[0].upper and rows[0].model == "minute_sgd"

    publish_candles(kafka, shared_data, tmp_path)
    drain(defs, CANDLES_1M, kafka, instance)
    publisher.publish(_predict(targets[-1] + MINUTE_MS))
    publisher.flush()
    drain(defs, PREDICTIONS, kafka, instance)

    closes = source_candles(shared_data).set_index("open_time")["close"]
    rows = list(cassandra.session().execute(
        "SELECT target_time, actual FROM predictions WHERE symbol = 'BTCUSDT' AND horizon = '1m' AND bucket = '2024-01-01'"))
    assert [row.actual for row in rows] == [closes[t] for t in [*targets, targets[-1] + MINUTE_MS]]
    assert materialized(instance, "predictions_live")["actuals_resolved"] == 4
    per_model = list(cassandra.session().execute(
        "SELECT target_time, actual FROM model_predictions WHERE symbol = 'BTCUSDT' AND horizon = '1m' "
        "AND bucket = '2024-01-01' AND model = 'minute_sgd' ORDER BY target_time ASC"))
    assert [row.actual for row in per_model] == [closes[t] for t in [*targets, targets[-1] + MINUTE_MS]]


def test_a_daily_forecast_is_kept_whole_and_bad_predictions_are_dead_lettered(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource) -> None:
    publisher = kafka.publisher()
    made_at = DAY_MS + 86_400_000 * 30
    for day in range(1, 16):
        publisher.publish(Prediction("BTCUSDT", "daily_forest", "v7", "1d", made_at, made_at + 86_400_000 * day,
                                     43_000.0 + day, 42_000.0, 44_500.0))
    publisher.flush()
    producer = kafka.producer()
    producer.produce(kafka.topic(PREDICTIONS), key=b"BTCUSDT", value=_predict(DAY_MS + 30_000).to_json())
    producer.flush(10)
    instance = dg.DagsterInstance.ephemeral()
    drain(definitions(kafka, cassandra, local_lake), PREDICTIONS, kafka, instance)

    forecast = list(cassandra.session().execute(
        "SELECT target_time, predicted, model_version FROM forecasts WHERE symbol = 'BTCUSDT' AND bucket = '2024-01-01'"))
    assert len(forecast) == 15 and {row.model_version for row in forecast} == {"v7"}
    assert [row.predicted for row in forecast] == [43_000.0 + day for day in range(1, 16)]
    metadata = materialized(instance, "predictions_live")
    assert metadata["dead_letters"] == 1 and metadata["forecast_rows"] == 15
