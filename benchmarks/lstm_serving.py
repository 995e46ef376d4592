"""What serving the LSTM costs a candles run: a fresh process loads the newest stored model and
forecasts the next minute, as `minute_predictions` does in every `candles_1m_job` run.

Measured: pricepipe's path (the network's forward pass in numpy, Keras never imported) against the
baseline of the same model served by Keras itself (import Keras and JAX, build the network from
the stored weights, `predict`). Both run as new Python processes, alternating, on the same stored
model and the same real minutes; the time is the process's own wall time from its first line to
the printed forecast, so the interpreter's start, common to both, is left out.

    .venv/bin/python -m benchmarks.lstm_serving [--rounds 7] [--days 2024-01-01:2024-01-03]

The model is a default `LstmMinuteModel` fitted for one epoch on Binance's BTCUSDT 1m dumps in
``../shared/data`` (see its PROVENANCE.md); features are the serving path's own
(`minute_features_tail`). The run ends with ``figure: <name> = <value>`` lines.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.forecast import day_span, read_minutes
from pricepipe_assets.forecasting.lstm import LstmMinuteModel
from pricepipe_assets.forecasting.online import minute_features_tail

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

# Each path in a process of its own, timed from its first statement; prints seconds and the forecast.
SERVE = """
import time
started = time.perf_counter()
import pickle, sys
import pandas as pd
model = pickle.loads(open(sys.argv[1], "rb").read())
features = pd.read_pickle(sys.argv[2])
if sys.argv[3] == "keras":
    # The old path: the same scaling and clipping of predict_last, the forward pass by Keras's predict.
    import pricepipe_assets.forecasting.lstm as lstm
    lstm.lstm_forward = lambda windows, weights: model._network().predict(windows, verbose=0)[:, 0]
predicted = float(model.predict_last(features)[0])
print(time.perf_counter() - started, predicted)
"""


def serve(path: str, model: Path, features: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", SERVE, str(model), str(features), path], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout.split()
    return float(out[0]), float(out[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="fresh processes per path")
    parser.add_argument("--days", default="2024-01-01:2024-01-03", help="real BTCUSDT minutes to fit on")
    parser.add_argument("--data", type=Path, default=SHARED)
    args = parser.parse_args(argv)

    features = minute_features_tail(read_minutes(args.data, "BTCUSDT", day_span(args.days)))
    features["target"] = np.log(features["close"].shift(-1) / features["close"])
    model = LstmMinuteModel(epochs=1)
    model.learn(features.iloc[:-1], batch=1440)
    with tempfile.TemporaryDirectory() as folder:
        stored, tail = Path(folder) / "model.pkl", Path(folder) / "features.pkl"
        stored.write_bytes(pickle.dumps(model))
        features.tail(120).to_pickle(tail)
        times: dict[str, list[float]] = {"numpy": [], "keras": []}
        answers: dict[str, float] = {}
        for _ in range(args.rounds):
            for path in times:
                seconds, answers[path] = serve(path, stored, tail)
                times[path].append(seconds)
    print(f"fitted on {model.n_trained} minutes of {args.days}; {args.rounds} fresh processes per path")
    print("| path | median s | min s | max s |")
    print("| --- | --- | --- | --- |")
    for path, values in times.items():
        print(f"| {path} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    print(f"forecast log return: numpy {answers['numpy']:.9f}, keras {answers['keras']:.9f}")
    numpy_s, keras_s = statistics.median(times["numpy"]), statistics.median(times["keras"])
    print(f"figure: lstm_serve_numpy_s = {numpy_s:.3f}")
    print(f"figure: lstm_serve_keras_s = {keras_s:.3f}")
    print(f"figure: lstm_serve_speedup = {keras_s / numpy_s:.1f}")
    print(f"figure: lstm_serve_abs_difference = {abs(answers['numpy'] - answers['keras']):.2e}")


if __name__ == "__main__":
    main()
