"""What every model asset of the `ml` group shares: the per-symbol loop that loads the newest
version, trains and scores it, saves it and reports it, written once for the minute models and the
daily one, and the baseline check that decides whether a symbol's forecasts fall back to naive."""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster import AssetExecutionContext

from pricepipe_assets.contract.records import Prediction
from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.storage import model_store

if TYPE_CHECKING:
    from pricepipe_assets.forecasting.evaluation import Evaluation

MINUTE_FEATURES_DATASET = "features/minute"
DAILY_FEATURES_DATASET = "features/daily"
MINUTE_MODEL = "minute_model"
MINUTE_LSTM_MODEL = "minute_lstm_model"
DAILY_MODEL = "daily_model"
NAIVE = "naive"
PLOTTED_MINUTES = 240
BASELINE_CHECK = "not_worse_than_baseline"


def features_frame(lake: LakeResource, dataset: str, symbol: str) -> Any:
    """One symbol's features from the lake, in time order (pyarrow: no JVM for training)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = lake.read_dataset(dataset, partitioning=pa.schema([("symbol", pa.string())]),
                              filter=pc.field("symbol") == symbol)
    return table.to_pandas().sort_values("open_time", kind="stable").reset_index(drop=True)


def symbols_in(lake: LakeResource, dataset: str) -> list[str]:
    if not lake.exists(dataset):
        raise FileNotFoundError(f"lake dataset {dataset!r} does not exist yet: materialize its asset first")
    return [name.removeprefix("symbol=") for name in lake.list_folders(dataset) if name.startswith("symbol=")]


def load_model(context: AssetExecutionContext, lake: LakeResource, name: str, symbol: str,
               refused: dict[str, str]) -> model_store.Latest:
    """The newest model version that loads safely. Each newer file refused (a pickle of an earlier
    pricepipe, a tampered or planted file) is logged as a warning and added to ``refused`` for the
    asset's metadata, so serving an older version or the baseline is never a silent fallback."""
    latest = model_store.load_latest(lake, name, symbol)
    for path, reason in latest.refused.items():
        context.log.warning(f"{symbol}: model file {path} refused, {reason}")
    refused.update(latest.refused)
    return latest


def publish(kafka: KafkaResource, predictions: list[Prediction]) -> None:
    publisher = kafka.publisher()
    for prediction in predictions:
        publisher.publish(prediction)
    publisher.flush()


def _metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """Model and baseline side by side, as markdown for the UI."""
    names = list(next(iter(metrics.values())))
    lines = ["| | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for who, values in metrics.items():
        lines.append(f"| {who} | " + " | ".join(f"{values[n]:.6g}" for n in names) + " |")
    return "\n".join(lines)


def _evaluation_metadata(symbol: str, evaluation: "Evaluation", serve_baseline: bool, margin: float,
                         plot_last: int | None) -> dict[str, Any]:
    from pricepipe_assets.forecasting.plots import forecast_png, markdown_image

    title = f"{symbol}: walk-forward forecasts"
    png = forecast_png(evaluation.frame, title=title, level=evaluation.level, last=plot_last)

    return {
        f"{symbol}/metrics": dg.MetadataValue.md(_metrics_table(evaluation.metrics)),
        f"{symbol}/mae_ratio_to_naive": round(evaluation.mae_ratio, 4),
        f"{symbol}/interval_coverage": round(evaluation.metrics["model"]["interval_coverage"], 4),
        f"{symbol}/interval_score": round(evaluation.metrics["model"]["interval_score"], 4),
        f"{symbol}/interval_method": evaluation.interval_method,
        f"{symbol}/evaluated": f"{evaluation.n_predictions} forecasts, {utc_iso(evaluation.evaluated_from)} → "
                               f"{utc_iso(evaluation.evaluated_to)}",
        f"{symbol}/serves": f"{NAIVE} (model worse than the baseline by more than {margin:.0%})" if serve_baseline
                            else "model",
        f"{symbol}/plot": dg.MetadataValue.md(markdown_image(png, title)),
    }


def baseline_check(asset: str, verdicts: dict[str, float], margin: float) -> dg.AssetCheckResult:
    worse = {symbol: ratio for symbol, ratio in verdicts.items() if ratio > 1 + margin}
    return dg.AssetCheckResult(
        check_name=BASELINE_CHECK, asset_key=asset, passed=not worse,
        metadata={"mae_ratio_to_naive": dg.MetadataValue.json({s: round(r, 4) for s, r in verdicts.items()}),
                  "margin": margin,
                  "falls_back_to_naive": dg.MetadataValue.json(sorted(worse))})


def baseline_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(BASELINE_CHECK, asset=asset, description=(
        "The model's walk-forward MAE is at most the naive forecast's times (1 + PRICEPIPE_MODEL_BASELINE_MARGIN); "
        "for symbols where it is not, forecasts are made by the naive baseline."))


@dataclasses.dataclass
class Trained:
    """One symbol's model after a run's training, with the out-of-sample record it earned there."""

    model: Any
    evaluation: "Evaluation"
    # Saved with the model, for serving without the training data (the naive interval's width, ...).
    extra: dict[str, Any]
    # Shown in the UI under the symbol's name.
    metadata: dict[str, Any]
    # Logged before the MAE ratio, e.g. "learned 1440 minutes".
    summary: str


# Trains one symbol on its features, starting from its newest stored version when the asset warm
# starts; a string says why the symbol is skipped this run.
Fit = Callable[[str, Any, model_store.StoredModel | None], "Trained | str"]


def train_per_symbol(context: AssetExecutionContext, lake: LakeResource, margin: float, name: str, dataset: str,
                     fit: Fit, *, warm_start: bool, plot_last: int | None) -> tuple[dict[str, Any], dg.AssetCheckResult]:
    """Every symbol of ``dataset`` through ``fit``, each result saved as a new version of model
    ``name`` that serves the baseline where it lost to it by more than ``margin``; returns the
    asset's metadata and its baseline check. The record a model is judged by is always the one
    ``fit`` scored out of sample, so a warm-started model is judged on the minutes it just learned."""
    metadata: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    refused: dict[str, str] = {}
    for symbol in symbols_in(lake, dataset):
        features = features_frame(lake, dataset, symbol)
        previous = load_model(context, lake, name, symbol, refused).stored if warm_start else None
        outcome = fit(symbol, features, previous)
        if isinstance(outcome, str):
            metadata[f"{symbol}/skipped"] = outcome
            continue
        evaluation = outcome.evaluation
        serve_baseline = not evaluation.better_than_baseline(margin)
        stored = model_store.StoredModel(name, symbol, model_store.new_version(), outcome.model, evaluation.metrics,
                                         serve_baseline, outcome.extra)
        path = model_store.save(lake, stored)
        ratios[symbol] = evaluation.mae_ratio
        metadata.update({**_evaluation_metadata(symbol, evaluation, serve_baseline, margin, plot_last),
                         f"{symbol}/version": stored.version, f"{symbol}/file": path,
                         **{f"{symbol}/{key}": value for key, value in outcome.metadata.items()}})
        context.log.info(f"{symbol}: {outcome.summary}, MAE ratio to naive {evaluation.mae_ratio:.4f}")
    if warm_start:
        metadata["refused_files"] = dg.MetadataValue.json(refused)
    return metadata, baseline_check(name, ratios, margin)
