"""Trained models as versioned files in the lake: ``models/<model>/symbol=<SYMBOL>/<version>.pkl``.

A version is the UTC time it was trained, to the microsecond (``20240101T000000.000000Z``), so
versions sort by name, the newest is the last, and two trainings in one second (a sensor's runs
back to back) never overwrite each other; older versions stay, so a forecast can always be traced to the exact
model file that made it. Files are pickles of plain scikit-learn/numpy objects: load only
models this platform wrote.
"""

from __future__ import annotations

import datetime as dt
import pickle
from dataclasses import dataclass
from typing import Any

from pricepipe_assets.storage.lake import Lake

MODELS = "models"
SUFFIX = ".pkl"


@dataclass(frozen=True)
class StoredModel:
    """A model as saved: the fitted object and what is needed to serve it honestly."""

    name: str
    symbol: str
    version: str
    model: Any
    metrics: dict[str, dict[str, float]]
    serve_baseline: bool
    extra: dict[str, Any]


def new_version(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


def folder(name: str, symbol: str) -> tuple[str, str, str]:
    return MODELS, name, f"symbol={symbol}"


def save(lake: Lake, stored: StoredModel) -> str:
    """Write ``stored`` as its version's file; returns the lake path."""
    return lake.write_bytes(pickle.dumps(stored, protocol=pickle.HIGHEST_PROTOCOL),
                            *folder(stored.name, stored.symbol), stored.version + SUFFIX)


def versions(lake: Lake, name: str, symbol: str) -> list[str]:
    return [n.removesuffix(SUFFIX) for n in lake.list_names(*folder(name, symbol)) if n.endswith(SUFFIX)]


def load_latest(lake: Lake, name: str, symbol: str) -> StoredModel | None:
    """The newest version of a symbol's model, or None when none was trained yet."""
    known = versions(lake, name, symbol)
    if not known:
        return None
    return pickle.loads(lake.read_bytes(*folder(name, symbol), known[-1] + SUFFIX))
