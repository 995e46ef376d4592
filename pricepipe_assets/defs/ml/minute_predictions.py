"""Next-minute predictions after every candles run: each minute model's forecast of the next close.

Apart from the training assets because it runs in every `candles_1m_job` run, reading the
newest candles from Cassandra rather than the lake, and answers for every minute model at once.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import datetime as dt
from typing import Any

import dagster as dg
import numpy as np
from dagster import AssetExecutionContext

from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.metadata import Materialized
from pricepipe_assets.defs.ml.training import MINUTE_LSTM_MODEL, MINUTE_MODEL, NAIVE, load_model, publish
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.storage.live_tables import recent_minute_candles
from pricepipe_assets.storage.prediction_tables import UPSERT_MINUTE_MODEL_SCORE


def _recent_candles(cassandra: CassandraResource, symbol: str, newest_ms: int, count: int) -> Any:
    """The ``count`` 1m candles up to ``newest_ms`` from Cassandra, oldest first, as a frame with
    epoch-millisecond open times (what the minute features are computed from)."""
    import pandas as pd

    frame = pd.DataFrame(recent_minute_candles(cassandra, symbol, newest_ms, count))
    if frame.empty:
        return frame
    frame["open_time"] = (frame["open_time"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)
    return frame.sort_values("open_time").reset_index(drop=True)


def _newest_candles(context: AssetExecutionContext) -> dict[str, int]:
    """Per symbol, the newest candle the latest `candles_live` run wrote (ms), from its metadata."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey("candles_live"))
    if event is None or event.asset_materialization is None:
        return {}
    newest = event.asset_materialization.metadata.get("newest_by_symbol")
    if newest is None:
        return {}
    return {symbol: int(dt.datetime.fromisoformat(text).timestamp() * 1000) for symbol, text in newest.value.items()}


@dg.asset(
    group_name="ml",
    kinds={"kafka", "scikitlearn", "keras"},
    deps=["candles_live", "minute_model", MINUTE_LSTM_MODEL],
    description="Next-minute predictions, made in every `candles_1m_job` run right after `candles_live`: for each "
    "symbol of the batch, the newest SGD minute model and the newest LSTM (or the naive baseline where a model lost "
    "to it) forecast the close of the minute after the newest stored candle, with its interval, and publish it to "
    "`predictions` (horizon `1m`) under their own model names. Features are computed from the last two hours of "
    "candles in Cassandra.",
)
def minute_predictions(context: AssetExecutionContext, lake: LakeResource, cassandra: CassandraResource,
                       kafka: KafkaResource) -> Materialized:
    published, scores = [], []
    skipped: dict[str, str] = {}
    refused: dict[str, str] = {}
    for symbol, newest_ms in sorted(_newest_candles(context).items()):
        latest = [load_model(context, lake, name, symbol, refused) for name in (MINUTE_MODEL, MINUTE_LSTM_MODEL)]
        models = [m.stored for m in latest if m.stored is not None]
        if not models:
            skipped[symbol] = ("no minute model loaded: its files were refused (see refused_files)"
                               if any(m.refused for m in latest) else "no minute model trained yet")
            continue
        # Imported once a model exists: pandas and scikit-learn would add a second to every candles
        # run of a platform that has not trained one, and the next run waits for this one to end.
        from pricepipe_assets.forecasting.online import MINUTE_HISTORY, minute_features_tail
        from pricepipe_assets.forecasting.serving import naive_forecast, to_predictions

        # The LSTM reads the features of its last `window` minutes, each needing the warm-up before it.
        history = MINUTE_HISTORY + max(getattr(m.model, "window", 1) for m in models) - 1
        features = minute_features_tail(_recent_candles(cassandra, symbol, newest_ms, history))
        if features.empty or int(features["open_time"].iloc[-1]) != newest_ms:
            skipped[symbol] = f"fewer than {history} consecutive candles up to {utc_iso(newest_ms)}"
            continue
        for stored in models:
            if stored.serve_baseline:
                name, forecast = NAIVE, naive_forecast(features.iloc[-1], "1m",
                                                        np.array([stored.extra["naive_half_width"]]))
            else:
                name, forecast = stored.model.name, stored.model.forecast(features)
            published += to_predictions(forecast, symbol, name, stored.version, "1m", newest_ms + INTERVAL_MS["1m"])
            scores.append((symbol, stored.model.name, stored.version,
                           stored.metrics["model"]["mae"] / stored.metrics["naive"]["mae"], not stored.serve_baseline))
    publish(kafka, published)
    cassandra.write_all(UPSERT_MINUTE_MODEL_SCORE, scores)  # what `/predictions` picks its default model by
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(published), "skipped": dg.MetadataValue.json(skipped),
        "refused_files": dg.MetadataValue.json(refused),
        "targets": dg.MetadataValue.json({p.symbol: utc_iso(p.target_time) for p in published})})
