"""Daily 90 % bands beside the naive band: the volatility-scaled variants, on several periods.

The daily model's band (``volatility.daily_move_half_widths``) has three choices: the EWMA decay
of its volatility scale, how many days of moves it is calibrated on, and whether the 15 steps
share one quantile of √h-scaled scores or each has its own. This script scores every
combination on the walk-forward origins of ``benchmarks/forecast.py``, on periods that each end
at a given day (the candles after it are dropped), centred on the naive forecast (what the daily
model serves while its weight is 0) and beside the naive band of the same origins.

The variant the model uses is the one the rule below picks on the periods before the last: the
mean distance of coverage from the level over those periods, smallest first, then the mean
width. The last period (the benchmark's by default) is scored, never used for the choice.

    .venv/bin/python -m benchmarks.daily_bands [--data CSV] [--until 2022-08-23,2024-03-31,]

Needs the ``bench`` extra, as it reads the candles with ``benchmarks/forecast.py``; about a minute.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.forecast import add_daily_arguments, day, read_daily_csv
from pricepipe_assets.contract.forecasts import HORIZON_DAYS
from pricepipe_assets.defs.resources.spark import spark_resource
from pricepipe_assets.forecasting.feature_names import DAILY_TARGETS
from pricepipe_assets.forecasting.features import daily_features, to_pandas
from pricepipe_assets.forecasting.intervals import price_interval
from pricepipe_assets.forecasting.metrics import interval_coverage, interval_score, interval_width
from pricepipe_assets.forecasting.volatility import DAILY_DECAY, DAILY_WINDOW_DAYS, daily_move_half_widths
from pricepipe_assets.forecasting.walk_forward import daily_origins, naive_origin_half_widths
from pricepipe_assets.settings import Settings

DECAYS = (0.97, 0.985, 0.99)
WINDOWS: tuple[int | None, ...] = (90, 120, 180, 270, 365, 730, None)


def score_period(features: pd.DataFrame, until: int | None, args: argparse.Namespace,
                 variants: list[tuple[float, int | None, bool]]) -> tuple[str, dict[tuple, dict[str, float]]]:
    """Coverage, width and interval score of each variant and of the naive band, on the origins
    of the rows up to ``until``, over the cases where the naive band exists."""
    rows = features if until is None else features[features["open_time"] <= until].reset_index(drop=True)
    chosen = daily_origins(rows, args.origins, args.step, 365)
    origin_times = rows["open_time"].to_numpy()[chosen]
    actual = rows[list(DAILY_TARGETS)].to_numpy(dtype=float)[chosen]
    bands: dict[Any, list[np.ndarray]] = {key: [] for key in ["naive", *variants]}
    kept = []
    for k, i in enumerate(chosen):
        naive = naive_origin_half_widths(origin_times, actual, k, args.level)
        if not np.all(np.isfinite(naive)):
            continue
        kept.append(k)
        bands["naive"].append(naive)
        for decay, window, pooled in variants:
            bands[(decay, window, pooled)].append(daily_move_half_widths(rows.iloc[:i + 1], args.level,
                                                                         window_days=window, pooled=pooled,
                                                                         decay=decay))
    close = rows["close"].to_numpy(dtype=float)[chosen][kept]
    last = np.repeat(close[:, None], HORIZON_DAYS, axis=1).ravel()
    real = (close[:, None] * np.exp(actual[kept])).ravel()
    scores = {}
    for key, widths in bands.items():
        _, lower, upper = price_interval(last, np.zeros_like(last), np.asarray(widths).ravel())
        scores[key] = {"coverage": interval_coverage(real, lower, upper),
                       "width": interval_width(lower, upper, last),
                       "score": interval_score(real, lower, upper, args.level)}
    label = f"{day(int(origin_times[0]))} .. {day(int(origin_times[-1]))} ({len(kept)} origins with a naive band)"
    return label, scores


def name(variant: tuple[float, int | None, bool]) -> str:
    decay, window, pooled = variant
    return f"λ={decay:g}, {'all' if window is None else f'{window} d'}, {'pooled' if pooled else 'per step'}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_daily_arguments(parser, "walk-forward origins per period")
    parser.add_argument("--until", default="2022-08-23,2024-03-31,",
                        help="last day of each period, comma-separated; empty for all the data (default: %(default)s)")
    args = parser.parse_args(argv)
    ends = [None if not text else int(pd.Timestamp(text, tz="UTC").value // 1_000_000) for text in args.until.split(",")]

    started = time.perf_counter()
    print("command:", shlex.join([os.path.relpath(sys.executable), "-m", "benchmarks.daily_bands", *sys.argv[1:]]))
    session = spark_resource(Settings.from_env({"PRICEPIPE_SPARK_MASTER": "local[2]"})).spark_session
    session.sparkContext.setLogLevel("ERROR")
    try:
        features = to_pandas(daily_features(session.createDataFrame(read_daily_csv(args.data, args.symbol))))
    finally:
        session.stop()
    variants = list(itertools.product(DECAYS, WINDOWS, (True, False)))
    periods = [score_period(features, end, args, variants) for end in ends]
    for n, (label, _) in enumerate(periods, start=1):
        print(f"period {n}: origins {label}")
    print()
    header = ["band"] + [f"P{n} {what}" for n in range(1, len(periods) + 1)
                         for what in ("coverage", "width vs naive", "Winkler vs naive")]
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for key in ["naive", *variants]:
        cells = []
        for _, scores in periods:
            m, base = scores[key], scores["naive"]
            cells += [f"{m['coverage']:.3f}", f"{m['width'] / base['width']:.3f}", f"{m['score'] / base['score']:.3f}"]
        print(f"| {'naive' if key == 'naive' else name(key)} | " + " | ".join(cells) + " |")

    earlier = [scores for _, scores in periods[:-1]]
    if earlier:
        def rank(variant: tuple[float, int | None, bool]) -> tuple[float, float]:
            return (float(np.mean([abs(s[variant]["coverage"] - args.level) for s in earlier])),
                    float(np.mean([s[variant]["width"] / s["naive"]["width"] for s in earlier])))
        best = min(variants, key=rank)
        print(f"\nchosen on periods 1..{len(earlier)} (coverage closest to {args.level:g}, then width): {name(best)}; "
              f"the model uses {name((DAILY_DECAY, DAILY_WINDOW_DAYS, True))}")
        last = periods[-1][1]
        print(f"figure: chosen_coverage_last_period = {last[best]['coverage']:.4f}")
        print(f"figure: chosen_width_vs_naive_last_period = {last[best]['width'] / last['naive']['width']:.4f}")
    print(f"wall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
