"""The model features' names and windows, apart from the Spark code that computes them, so the
models and the serving path can use them without importing Spark."""

from __future__ import annotations

from pricepipe_assets.contract.forecasts import HORIZON_DAYS

MINUTE_RETURNS = (1, 2, 3, 5, 15)
MINUTE_RETURN_LAGS = (1, 2, 3)
MINUTE_VOL_WINDOWS = (15, 60)
MINUTE_VOLUME_WINDOW = 60
MINUTE_FEATURES: tuple[str, ...] = (
    *(f"ret_{k}" for k in MINUTE_RETURNS),
    *(f"ret_1_lag_{k}" for k in MINUTE_RETURN_LAGS),
    *(f"vol_{n}" for n in MINUTE_VOL_WINDOWS),
    "range",
    f"volume_ratio_{MINUTE_VOLUME_WINDOW}",
    "trades_change",
)
# Candles a symbol needs before every minute feature is defined: the 60-return volatility uses
# returns 2..61, the 60-candle mean volume candles 1..60.
MINUTE_WARMUP = max(*MINUTE_VOL_WINDOWS, MINUTE_VOLUME_WINDOW, *MINUTE_RETURNS)

DAILY_RETURNS = (1, 2, 3, 7, 14, 30)
DAILY_VOL_WINDOWS = (7, 30)
DAILY_SMA_WINDOWS = (7, 30)
DAILY_VOLUME_WINDOW = 30
DAILY_FEATURES: tuple[str, ...] = (
    *(f"ret_{k}" for k in DAILY_RETURNS),
    *(f"vol_{n}" for n in DAILY_VOL_WINDOWS),
    *(f"sma_gap_{n}" for n in DAILY_SMA_WINDOWS),
    "range",
    f"volume_ratio_{DAILY_VOLUME_WINDOW}",
)
DAILY_WARMUP = max(*DAILY_VOL_WINDOWS, *DAILY_SMA_WINDOWS, DAILY_VOLUME_WINDOW, *DAILY_RETURNS)
DAILY_TARGETS: tuple[str, ...] = tuple(f"target_{h}" for h in range(1, HORIZON_DAYS + 1))

# A candle's volume is floored at this share of its window's mean before the log ratio, so a
# candle without trades gives log(1e-3) ~ -6.9 instead of -inf.
VOLUME_FLOOR = 1e-3
