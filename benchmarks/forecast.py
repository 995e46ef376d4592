"""15-day daily forecasts, walk-forward: naive, DailyModel, statsforecast AutoETS and AutoARIMA.

Every model forecasts from the same origins with only the candles up to each origin, and is
scored by the same functions on the same days, so the table compares like with like. The
naive last value is the baseline; "vs naive" is each model's MAE over the naive MAE.

    .venv/bin/python benchmarks/forecast.py [--data CSV] [--origins 40] [--step 15] [--level 0.9]

Needs the ``bench`` extra (statsforecast). The default data is the multi-year BTCUSDT daily file
of ``../shared/data`` (see its PROVENANCE.md); its last row is a candle still open and is dropped.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import AutoARIMA, AutoETS

from pricepipe_assets.contract.forecasts import HORIZON_DAYS
from pricepipe_assets.defs.resources.spark import spark_resource
from pricepipe_assets.forecasting.features import daily_features, to_pandas
from pricepipe_assets.forecasting.metrics import all_metrics
from pricepipe_assets.forecasting.models import DailyModel
from pricepipe_assets.forecasting.walk_forward import DAY_MS, Evaluation, evaluate_daily
from pricepipe_assets.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "daily_candles" / "yanniedog_spot_BTCUSDT_1d.csv"
# Crypto trades every day of the week, so a daily price series has no weekly season to model;
# season_length=7 only adds seasonal candidates that would fit noise (on a spot check it picked
# the same or nearly the same forecasts, 3 (ARIMA) to 19 (ETS) times slower).
SEASON_LENGTH = 1


def read_daily_csv(path: Path, symbol: str) -> pd.DataFrame:
    """Candles of a ``timestamp,open,high,low,close,volume`` file without its last (open) row.

    ``timestamp`` is the candle's UTC day as ``YYYY-MM-DD``; it becomes ``open_time`` in ms.
    """
    raw = pd.read_csv(path)
    if list(raw.columns) != ["timestamp", "open", "high", "low", "close", "volume"]:
        raise SystemExit(f"{path}: expected the columns timestamp,open,high,low,close,volume, got {list(raw.columns)}")
    raw = raw.iloc[:-1]
    days = pd.to_datetime(raw["timestamp"], format="%Y-%m-%d", utc=True)
    candles = raw.drop(columns="timestamp").astype(float)
    candles.insert(0, "open_time", days.astype("int64") // 1_000_000)
    candles.insert(0, "symbol", symbol)
    gaps = np.count_nonzero(np.diff(candles["open_time"].to_numpy()) != DAY_MS)
    if gaps:
        print(f"warning: {gaps} gaps between consecutive days in {path}", file=sys.stderr)
    return candles


def features_of(candles: pd.DataFrame) -> pd.DataFrame:
    session = spark_resource(Settings.from_env({"PRICEPIPE_SPARK_MASTER": "local[2]"})).spark_session
    session.sparkContext.setLogLevel("ERROR")
    try:
        return to_pandas(daily_features(session.createDataFrame(candles)))
    finally:
        session.stop()


def statsforecast_scores(candles: pd.DataFrame, evaluation: Evaluation, level: float) -> dict[str, dict[str, float]]:
    """AutoETS and AutoARIMA refitted at each origin on the closes up to it, scored like the others.

    Their intervals are their own (``level=``); coverage is counted on the same cases as the
    conformal intervals (origins with enough earlier residuals) so all coverages are comparable.
    """
    series = pd.DataFrame({"unique_id": candles["symbol"], "ds": pd.to_datetime(candles["open_time"], unit="ms"),
                           "y": candles["close"]})
    percent = round(level * 100)
    forecasts = []
    for origin in evaluation.origins:
        engine = StatsForecast(models=[AutoETS(season_length=SEASON_LENGTH), AutoARIMA(season_length=SEASON_LENGTH)],
                               freq="D", n_jobs=1)
        forecast = engine.forecast(df=series[candles["open_time"] <= origin], h=HORIZON_DAYS, level=[percent])
        steps = np.arange(1, HORIZON_DAYS + 1)
        if not (forecast["ds"].to_numpy() == pd.to_datetime(origin + steps * DAY_MS, unit="ms").to_numpy()).all():
            raise SystemExit(f"statsforecast's days after {day(origin)} are not the 15 days after the origin")
        forecasts.append(forecast.assign(origin=origin, step=steps))
    joined = evaluation.frame.merge(pd.concat(forecasts), on=["origin", "step"], how="left", validate="one_to_one")
    calibrated = joined["lower"].notna()
    scores = {}
    for name in ("AutoETS", "AutoARIMA"):
        lower = joined[f"{name}-lo-{percent}"].where(calibrated)
        upper = joined[f"{name}-hi-{percent}"].where(calibrated)
        scores[name] = all_metrics(joined["actual"], joined[name], joined["last_known"], lower, upper)
    return scores


def day(ms: int) -> str:
    return pd.to_datetime(ms, unit="ms", utc=True).strftime("%Y-%m-%d")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="daily candles CSV (default: %(default)s)")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--origins", type=int, default=40, help="walk-forward origins (default: %(default)s)")
    parser.add_argument("--step", type=int, default=15, help="days between origins (default: %(default)s)")
    parser.add_argument("--level", type=float, default=0.9, help="interval level (default: %(default)s)")
    args = parser.parse_args(argv)

    print("command:", shlex.join([os.path.relpath(sys.executable), *sys.argv]))
    candles = read_daily_csv(args.data, args.symbol)
    print(f"data: {args.data.name}, {len(candles)} closed daily candles "
          f"{day(candles['open_time'].iloc[0])} .. {day(candles['open_time'].iloc[-1])}")

    started = time.perf_counter()
    features = features_of(candles)
    print(f"features (Spark local[2]): {len(features)} rows in {time.perf_counter() - started:.1f} s")

    model = DailyModel(level=args.level)
    started = time.perf_counter()
    evaluation = evaluate_daily(model, features, n_origins=args.origins, step=args.step)
    model_seconds = time.perf_counter() - started
    started = time.perf_counter()
    others = statsforecast_scores(candles, evaluation, args.level)
    others_seconds = time.perf_counter() - started

    calibrated = evaluation.frame["lower"].notna()
    print(f"origins: {len(evaluation.origins)} every {args.step} days, {day(evaluation.origins[0])} .. "
          f"{day(evaluation.origins[-1])}; forecast days {day(evaluation.evaluated_from)} .. "
          f"{day(evaluation.evaluated_to)}; {evaluation.n_predictions} forecasts "
          f"({calibrated.sum()} with calibrated conformal intervals, where coverage is measured)")
    print(f"walk-forward time: {model.name} {model_seconds:.1f} s, AutoETS + AutoARIMA {others_seconds:.1f} s")
    rows = {"naive": evaluation.metrics["naive"], f"DailyModel ({model.name})": evaluation.metrics["model"], **others}
    naive_mae = evaluation.metrics["naive"]["mae"]
    header = ("model", "MAE", "vs naive", "RMSE", "MAPE %", "direction", f"coverage@{args.level:g}", "width %")
    print()
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for name, m in rows.items():
        print(f"| {name} | {m['mae']:,.0f} | {m['mae'] / naive_mae:.3f} | {m['rmse']:,.0f} | {m['mape']:.2f} | "
              f"{m['directional_accuracy']:.3f} | {m['interval_coverage']:.3f} | {100 * m['interval_width']:.1f} |")


if __name__ == "__main__":
    main()
