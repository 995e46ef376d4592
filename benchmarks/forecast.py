"""Forecasts beside the naive baseline: 15-day daily forecasts and next-minute predictions.

Daily: naive, DailyModel (as served: its forecast weighted by what its record earned, with
volatility-scaled conformal intervals) and statsforecast's AutoETS and AutoARIMA, walk-forward.
Every model forecasts from the same origins with only the candles up to each origin, and is scored
by the same functions on the same days, so the table compares like with like. Minute: the online
MinuteModel and the LSTM (LstmMinuteModel, fitted a day at a time), prequential on the same
minutes, beside the naive forecast with its rolling conformal band, on the minutes
``docs/forecasting.md`` chose the SGD model's defaults on.

"vs naive" is a model's MAE over the naive MAE; coverage, width and the interval (Winkler) score
are taken over the cases where the naive conformal band exists, the same cases for every model.
The run ends with ``figure: <name> = <value>`` lines.

    .venv/bin/python -m benchmarks.forecast [--data CSV] [--origins 40] [--step 15] [--level 0.9]
                                            [--minutes 2024-02-01:2024-02-20] [--minute-batch 60]
                                            [--lstm-block 1440] [--minutes-only]

Needs the ``bench`` extra (statsforecast). The default data is the multi-year BTCUSDT daily file
of ``../shared/data`` (its last row, a candle still open, is dropped) and Binance's BTCUSDT 1m
dumps there (see its PROVENANCE.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.ingest import dumps
from pricepipe_assets.contract.forecasts import HORIZON_DAYS
from pricepipe_assets.contract.records import Candle
from pricepipe_assets.defs.resources.spark import spark_resource
from pricepipe_assets.forecasting.evaluation import Evaluation
from pricepipe_assets.forecasting.features import daily_features, minute_features, to_pandas
from pricepipe_assets.forecasting.metrics import all_metrics
from pricepipe_assets.forecasting.models import DailyModel, MinuteModel
from pricepipe_assets.forecasting.walk_forward import DAY_MS, evaluate_daily, evaluate_minute
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dumps import Dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_DATA = SHARED / "daily_candles" / "yanniedog_spot_BTCUSDT_1d.csv"
DEFAULT_MINUTES = "2024-02-01:2024-02-20"
# Crypto trades every day of the week, so a daily price series has no weekly season to model;
# season_length=7 only adds seasonal candidates that would fit noise (on a spot check it picked
# the same or nearly the same forecasts, 3 (ARIMA) to 19 (ETS) times slower).
SEASON_LENGTH = 1
# What the minute features are computed from, one column per field of a candle.
MINUTE_COLUMNS = ("symbol", "open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades")


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


def read_minutes(data: Path, symbol: str, days: tuple[str, ...]) -> pd.DataFrame:
    """``symbol``'s 1m candles of ``days`` (consecutive ISO days) from the dumps mirror under ``data``,
    read as a backfill reads them (pricepipe's dumps client and parser): the candles the platform holds."""
    first, last = dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1])
    records = list(dumps(data.resolve()).records(Dataset.klines(symbol, "1m"), first, last))
    refused = [record for record in records if not isinstance(record, Candle)]
    if refused:
        raise SystemExit(f"{len(refused)} rows of {symbol}'s dumps {first}..{last} were refused, the first: {refused[0]}")
    return pd.DataFrame({column: [getattr(candle, column) for candle in records] for column in MINUTE_COLUMNS})


def day_span(text: str) -> tuple[str, ...]:
    """``FIRST:LAST`` (ISO days, both included) as the list of days."""
    first, last = (dt.date.fromisoformat(part) for part in text.split(":"))
    return tuple((first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1))


def statsforecast_scores(candles: pd.DataFrame, evaluation: Evaluation, level: float) -> dict[str, dict[str, float]]:
    """AutoETS and AutoARIMA refitted at each origin on the closes up to it, scored like the others.

    Their intervals are their own (``level=``), measured on the cases where the naive band exists.
    Imported here, so the minute table alone runs without the ``bench`` extra.
    """
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS

    series = pd.DataFrame({"unique_id": candles["symbol"], "ds": pd.to_datetime(candles["open_time"], unit="ms"),
                           "y": candles["close"]})
    percent = round(level * 100)
    forecasts = []
    steps = np.arange(1, HORIZON_DAYS + 1)
    for origin in evaluation.origins:
        engine = StatsForecast(models=[AutoETS(season_length=SEASON_LENGTH), AutoARIMA(season_length=SEASON_LENGTH)],
                               freq="D", n_jobs=1)
        forecast = engine.forecast(df=series[candles["open_time"] <= origin], h=HORIZON_DAYS, level=[percent])
        if not (forecast["ds"].to_numpy() == pd.to_datetime(origin + steps * DAY_MS, unit="ms").to_numpy()).all():
            raise SystemExit(f"statsforecast's days after {day(origin)} are not the 15 days after the origin")
        forecasts.append(forecast.assign(origin=origin, step=steps))
    joined = evaluation.frame.merge(pd.concat(forecasts), on=["origin", "step"], how="left", validate="one_to_one")
    scored = joined["naive_lower"].notna()
    return {name: all_metrics(joined["actual"], joined[name], joined["last_known"],
                              joined[f"{name}-lo-{percent}"].where(scored), joined[f"{name}-hi-{percent}"].where(scored),
                              level=level)
            for name in ("AutoETS", "AutoARIMA")}


def day(ms: int) -> str:
    return pd.to_datetime(ms, unit="ms", utc=True).strftime("%Y-%m-%d")


def table(rows: dict[str, dict[str, float]], level: float, width_unit: tuple[str, float]) -> None:
    """Markdown table of ``rows`` (name -> metrics), with MAE, width and score relative to the first."""
    unit, factor = width_unit
    base = next(iter(rows.values()))
    header = ("model", "MAE", "vs naive", "RMSE", "MAPE %", "direction", f"coverage@{level:g}", f"width {unit}",
              "width vs naive", "Winkler", "Winkler vs naive")
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for name, m in rows.items():
        print(f"| {name} | {m['mae']:,.2f} | {m['mae'] / base['mae']:.4f} | {m['rmse']:,.2f} | {m['mape']:.3f} | "
              f"{m['directional_accuracy']:.3f} | {m['interval_coverage']:.3f} | {factor * m['interval_width']:.2f} | "
              f"{m['interval_width'] / base['interval_width']:.3f} | {m['interval_score']:,.2f} | "
              f"{m['interval_score'] / base['interval_score']:.3f} |")


def run_daily(args: argparse.Namespace, session: Any) -> Evaluation:
    candles = read_daily_csv(args.data, args.symbol)
    print(f"daily data: {args.data.name}, {len(candles)} closed daily candles "
          f"{day(candles['open_time'].iloc[0])} .. {day(candles['open_time'].iloc[-1])}")
    started = time.perf_counter()
    features = to_pandas(daily_features(session.createDataFrame(candles)))
    print(f"daily features (Spark local[2]): {len(features)} rows in {time.perf_counter() - started:.1f} s")

    model = DailyModel(level=args.level)
    started = time.perf_counter()
    evaluation = evaluate_daily(model, features, n_origins=args.origins, step=args.step)
    model_seconds = time.perf_counter() - started
    started = time.perf_counter()
    others = statsforecast_scores(candles, evaluation, args.level)
    others_seconds = time.perf_counter() - started

    scored = evaluation.frame["naive_lower"].notna()
    print(f"origins: {len(evaluation.origins)} every {args.step} days, {day(evaluation.origins[0])} .. "
          f"{day(evaluation.origins[-1])}; forecast days {day(evaluation.evaluated_from)} .. "
          f"{day(evaluation.evaluated_to)}; {evaluation.n_predictions} forecasts "
          f"({scored.sum()} with a naive conformal band, where every interval measure is taken)")
    print(f"walk-forward time: {model.name} {model_seconds:.1f} s, AutoETS + AutoARIMA {others_seconds:.1f} s")
    earned = [w for w in evaluation.weights if w > 0]
    print(f"{model.name} weight earned per origin: {len(earned)} of {len(evaluation.weights)} origins above 0"
          f"{f' (max {max(earned):.3f})' if earned else ''}; weight for serving {evaluation.serving_weight:.3f}")
    print(f"{model.name} intervals: {evaluation.interval_method}")
    print()
    table({"naive": evaluation.metrics["naive"], f"DailyModel ({model.name}, served)": evaluation.metrics["model"],
           **others}, args.level, ("%", 100.0))
    return evaluation


def run_minutes(args: argparse.Namespace, session: Any) -> tuple[Evaluation, Evaluation]:
    """The SGD minute model and the LSTM, each prequential on the same minutes beside the naive forecast."""
    from pricepipe_assets.forecasting.lstm import LstmMinuteModel

    days = day_span(args.minutes)
    candles = read_minutes(SHARED, args.symbol, days)
    started = time.perf_counter()
    features = to_pandas(minute_features(session.createDataFrame(candles)))
    print(f"minute data: {args.symbol} 1m dumps {days[0]} .. {days[-1]}, {len(candles)} candles; "
          f"features {len(features)} rows in {time.perf_counter() - started:.1f} s")
    model = MinuteModel(level=args.level)
    started = time.perf_counter()
    evaluation = evaluate_minute(model, features, warmup=model.calibration_window, batch=args.minute_batch)
    print(f"prequential ({model.name}, batch {args.minute_batch}): {evaluation.n_predictions} scored minutes after "
          f"{model.calibration_window} of warm-up, in {time.perf_counter() - started:.1f} s")
    lstm = LstmMinuteModel(level=args.level, max_train_seconds=float("inf"))
    started = time.perf_counter()
    recurrent = evaluate_minute(lstm, features, warmup=lstm.calibration_window, batch=args.lstm_block)
    print(f"prequential ({lstm.name}, {lstm.units} cells over {lstm.window} minutes, blocks of {args.lstm_block}, "
          f"{lstm.epochs} epochs each): {recurrent.n_predictions} scored minutes in {time.perf_counter() - started:.1f} s "
          f"({lstm.n_fits} fits, {lstm.train_seconds:.1f} s fitting)")
    if recurrent.frame["time"].tolist() != evaluation.frame["time"].tolist():
        raise RuntimeError("the two minute models were scored on different minutes")
    print(f"{model.name} and {lstm.name} intervals: {evaluation.interval_method}")
    print()
    table({"naive": evaluation.metrics["naive"], f"MinuteModel ({model.name})": evaluation.metrics["model"],
           f"LstmMinuteModel ({lstm.name})": recurrent.metrics["model"]}, args.level, ("bp", 1e4))
    return evaluation, recurrent


def add_daily_arguments(parser: argparse.ArgumentParser, origins: str = "walk-forward origins") -> None:
    """The daily walk-forward's options, shared with ``benchmarks.daily_bands`` so both read the same data
    the same way."""
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="daily candles CSV (default: %(default)s)")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--origins", type=int, default=40, help=f"{origins} (default: %(default)s)")
    parser.add_argument("--step", type=int, default=15, help="days between origins (default: %(default)s)")
    parser.add_argument("--level", type=float, default=0.9, help="interval level (default: %(default)s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_daily_arguments(parser)
    parser.add_argument("--minutes", default=DEFAULT_MINUTES, help="FIRST:LAST days of 1m dumps (default: %(default)s)")
    parser.add_argument("--minute-batch", type=int, default=60,
                        help="minutes forecast per model update, as the minute_model asset does (default: %(default)s)")
    parser.add_argument("--lstm-block", type=int, default=1440,
                        help="minutes forecast per LSTM fit, as the minute_lstm_model asset does (default: %(default)s)")
    parser.add_argument("--minutes-only", action="store_true", help="run the minute table alone")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    print("command:", shlex.join([os.path.relpath(sys.executable), "-m", "benchmarks.forecast", *sys.argv[1:]]))
    session = spark_resource(Settings.from_env({"PRICEPIPE_SPARK_MASTER": "local[2]"})).spark_session
    session.sparkContext.setLogLevel("ERROR")
    try:
        daily = None if args.minutes_only else run_daily(args, session)
        print()
        minute, lstm = run_minutes(args, session)
    finally:
        session.stop()
    print(f"\nwall time: {time.perf_counter() - started:.0f} s")
    figures = {} if daily is None else {
        "daily_mae_vs_naive": daily.mae_ratio,
        "daily_coverage": daily.metrics["model"]["interval_coverage"],
        "daily_width_vs_naive": daily.metrics["model"]["interval_width"] / daily.metrics["naive"]["interval_width"],
    }
    figures.update({
        "minute_coverage": minute.metrics["model"]["interval_coverage"],
        "minute_width_vs_naive": minute.metrics["model"]["interval_width"] / minute.metrics["naive"]["interval_width"],
        "lstm_minute_mae_vs_naive": lstm.mae_ratio,
        "lstm_minute_coverage": lstm.metrics["model"]["interval_coverage"],
    })
    for name, value in figures.items():
        print(f"figure: {name} = {value:.4f}")


if __name__ == "__main__":
    main()
