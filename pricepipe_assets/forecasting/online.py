"""The next-minute model's features for the newest candles, in pandas, for serving.

Training reads months of candles from the lake through Spark (:func:`features.minute_features`);
a live prediction needs the features of one candle from the last two hours, where starting a
JVM would cost more than the minute it predicts. The formulas are the same, column for column,
and a test holds the two implementations equal on real candles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pricepipe_assets.forecasting.feature_names import (
    MINUTE_FEATURES,
    MINUTE_RETURN_LAGS,
    MINUTE_RETURNS,
    MINUTE_VOL_WINDOWS,
    MINUTE_VOLUME_WINDOW,
    MINUTE_WARMUP,
    VOLUME_FLOOR,
)

# Candles to read for one prediction: the warm-up, plus the candle itself and one to spare.
MINUTE_HISTORY = MINUTE_WARMUP + 2


def minute_features_tail(candles: pd.DataFrame) -> pd.DataFrame:
    """Features of one symbol's consecutive 1m candles (``open_time, high, low, close, volume,
    trades``, any order), for the rows after the warm-up, with ``symbol, open_time, close``."""
    frame = candles.sort_values("open_time").reset_index(drop=True)
    log_close = np.log(frame["close"].astype(float))
    features = pd.DataFrame({"symbol": frame["symbol"], "open_time": frame["open_time"], "close": frame["close"]})
    for k in MINUTE_RETURNS:
        features[f"ret_{k}"] = log_close - log_close.shift(k)
    for k in MINUTE_RETURN_LAGS:
        features[f"ret_1_lag_{k}"] = features["ret_1"].shift(k)
    for n in MINUTE_VOL_WINDOWS:
        features[f"vol_{n}"] = features["ret_1"].rolling(n, min_periods=2).std(ddof=1)
    features["range"] = np.log(frame["high"].astype(float)) - np.log(frame["low"].astype(float))
    volume = frame["volume"].astype(float)
    mean = volume.rolling(MINUTE_VOLUME_WINDOW, min_periods=1).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(np.maximum(volume, mean * VOLUME_FLOOR)) - np.log(mean)
    features[f"volume_ratio_{MINUTE_VOLUME_WINDOW}"] = ratio.where(mean > 0, 0.0)
    trades = np.log1p(frame["trades"].astype(float))
    features["trades_change"] = trades - trades.shift(1)
    ready = features.index >= MINUTE_WARMUP
    return features[ready].dropna(subset=list(MINUTE_FEATURES)).reset_index(drop=True)
