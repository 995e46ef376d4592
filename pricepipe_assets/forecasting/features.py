"""Model features from candles, computed in Spark so the same code runs over the whole lake.

Every feature looks only backwards (Window functions over a symbol's candles ordered by
``open_time``), so a row's features are known at the close of its candle and a model fitted on
them never sees the future. Targets look forwards and are the only columns that do.

Prices enter as log prices: returns are differences of logs, which need no division (Spark runs
in ANSI mode, where dividing by zero fails the job) and make a 1 % move the same size at any
price level. Lags and windows count candles, not clock time; a missing candle (the lake's gap
report lists them) makes one return span the gap, but a target is set only when the candle it
looks at is exactly the expected number of intervals ahead, so models never learn a gap as a move.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from pricepipe_assets.contract.forecasts import HORIZON_DAYS
from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.forecasting.feature_names import (
    DAILY_FEATURES,
    DAILY_RETURNS,
    DAILY_SMA_WINDOWS,
    DAILY_TARGETS,
    DAILY_VOL_WINDOWS,
    DAILY_VOLUME_WINDOW,
    DAILY_WARMUP,
    MINUTE_FEATURES,
    MINUTE_RETURN_LAGS,
    MINUTE_RETURNS,
    MINUTE_VOL_WINDOWS,
    MINUTE_VOLUME_WINDOW,
    MINUTE_WARMUP,
    VOLUME_FLOOR,
)

_KEY = ("symbol", "open_time", "close")


def _by_symbol() -> WindowSpec:
    return Window.partitionBy("symbol").orderBy("open_time")


def _last(rows: int) -> WindowSpec:
    """The current candle and the ``rows - 1`` before it."""
    return _by_symbol().rowsBetween(-(rows - 1), Window.currentRow)


def _volume_ratio(window: int) -> Column:
    """log(volume / mean volume of the last ``window`` candles), finite even for zero volumes.

    A window without any volume (a halted market) gives 0: the candle is exactly as quiet as
    its past, which is what the ratio means.
    """
    mean = F.avg("volume").over(_last(window))
    ratio = F.log(F.greatest(F.col("volume"), mean * VOLUME_FLOOR)) - F.log(mean)
    return F.coalesce(ratio, F.lit(0.0))


def _ahead(steps: int, interval_ms: int) -> Column:
    """log(close[t + steps] / close[t]); null unless that candle is exactly ``steps`` intervals later."""
    later = F.lead("open_time", steps).over(_by_symbol())
    return F.when(later - F.col("open_time") == steps * interval_ms,
                  F.lead("log_close", steps).over(_by_symbol()) - F.col("log_close"))


def _returns(steps: tuple[int, ...]) -> dict[str, Column]:
    return {f"ret_{k}": F.col("log_close") - F.lag("log_close", k).over(_by_symbol()) for k in steps}


def _finish(frame: DataFrame, features: tuple[str, ...], targets: tuple[str, ...], warmup: int) -> DataFrame:
    """Drop each symbol's warm-up candles and rows with an undefined feature; keep null targets.

    The newest candles have no target yet but are kept: they are the rows forecasts start from.
    """
    ready = (F.row_number().over(_by_symbol()) > warmup)
    for name in features:
        ready = ready & F.col(name).isNotNull() & ~F.isnan(name)
    return (frame.withColumn("_ready", ready).where("_ready")
            .select(*_KEY, *(F.col(n).cast("double") for n in features),
                    *(F.col(n).cast("double") for n in targets)))


def minute_features(candles: DataFrame) -> DataFrame:
    """Features of 1-minute candles and ``target``, the next minute's log return.

    ``candles`` needs ``symbol, open_time, high, low, close, volume, trades``. One row per candle
    after each symbol's first ``MINUTE_WARMUP`` candles, with ``symbol, open_time, close``,
    the ``MINUTE_FEATURES`` columns and ``target`` (null on a symbol's last candle).
    """
    frame = candles.withColumn("log_close", F.log("close"))
    frame = frame.withColumns(_returns(MINUTE_RETURNS))
    frame = frame.withColumns({
        **{f"ret_1_lag_{k}": F.lag("ret_1", k).over(_by_symbol()) for k in MINUTE_RETURN_LAGS},
        **{f"vol_{n}": F.stddev_samp("ret_1").over(_last(n)) for n in MINUTE_VOL_WINDOWS},
        "range": F.log("high") - F.log("low"),
        f"volume_ratio_{MINUTE_VOLUME_WINDOW}": _volume_ratio(MINUTE_VOLUME_WINDOW),
        "trades_change": F.log1p("trades") - F.log1p(F.lag("trades", 1).over(_by_symbol())),
        "target": _ahead(1, INTERVAL_MS["1m"]),
    })
    return _finish(frame, MINUTE_FEATURES, ("target",), MINUTE_WARMUP)


def daily_features(candles: DataFrame) -> DataFrame:
    """Features of daily candles and ``target_1..target_15``, log returns 1 to 15 days ahead.

    ``candles`` needs ``symbol, open_time, high, low, close, volume``. One row per candle after
    each symbol's first ``DAILY_WARMUP`` candles, with ``symbol, open_time, close``, the
    ``DAILY_FEATURES`` columns and ``DAILY_TARGETS`` (null where the day is not known yet).
    """
    frame = candles.withColumn("log_close", F.log("close"))
    frame = frame.withColumns(_returns(DAILY_RETURNS))
    frame = frame.withColumns({
        **{f"vol_{n}": F.stddev_samp("ret_1").over(_last(n)) for n in DAILY_VOL_WINDOWS},
        **{f"sma_gap_{n}": F.col("log_close") - F.log(F.avg("close").over(_last(n))) for n in DAILY_SMA_WINDOWS},
        "range": F.log("high") - F.log("low"),
        f"volume_ratio_{DAILY_VOLUME_WINDOW}": _volume_ratio(DAILY_VOLUME_WINDOW),
        **{f"target_{h}": _ahead(h, INTERVAL_MS["1d"]) for h in range(1, HORIZON_DAYS + 1)},
    })
    return _finish(frame, DAILY_FEATURES, DAILY_TARGETS, DAILY_WARMUP)


def to_pandas(features: DataFrame) -> pd.DataFrame:
    """Collect features for the scikit-learn models, in (symbol, open_time) order.

    The models walk rows in time order, which Spark does not promise without a global sort;
    sorting the collected frame is cheaper than sorting in Spark.
    """
    frame: pd.DataFrame = features.toPandas()
    return frame.sort_values(["symbol", "open_time"], kind="stable").reset_index(drop=True)
