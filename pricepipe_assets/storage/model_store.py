"""Trained models as versioned files in the lake: ``models/<model>/symbol=<SYMBOL>/<version>.skops``.

A version is the UTC time it was trained, to the microsecond (``20240101T000000.000000Z``), so
versions sort by name, the newest is the last, and two trainings in one second (a sensor's runs
back to back) never overwrite each other; older versions stay, so a forecast can always be traced to the exact
model file that made it.

Anyone who can write the lake can put a file where the runs look for models (HDFS permissions
are off), so a model file must not be able to run code when it is loaded. Files are skops
archives: loading one rebuilds only containers, numpy arrays, scikit-learn's estimators and the
pricepipe types of :data:`TRUSTED`, each from its data with the class's own code, and refuses a
file naming any other type or callable before building anything. Pickles (``.pkl``, the format of
earlier pricepipe versions) are never loaded, since unpickling runs whatever the file says: they
are passed over, said so, and the next training writes a version in this format. A file that is
refused is never served; the newest older version that loads is, so a planted file cannot stop a
symbol's forecasts either. What this does not stop is a well-formed file with weights of someone
else's choosing: wrong forecasts, not code; only signed files or a lake closed to writers would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import posixpath
from dataclasses import dataclass, field
from typing import Any

from pricepipe_assets.storage.lake import Lake

MODELS = "models"
SUFFIX = ".skops"
PICKLE_SUFFIX = ".pkl"
# The types pricepipe's models hold beyond what skops trusts by default (builtins, numpy,
# scikit-learn's estimators): its model classes, and the decision trees of the daily forest, which
# skops leaves untrusted because their node indices are not bounds-checked; the daily model checks
# them as it loads (``forecasting.models.check_forest``).
TRUSTED = [
    "pricepipe_assets.forecasting.models.MinuteModel",
    "pricepipe_assets.forecasting.models.DailyModel",
    "pricepipe_assets.forecasting.lstm.LstmMinuteModel",
    "sklearn.tree._tree.Tree",
]
PICKLE_REFUSED = ("a pickle written by an earlier pricepipe: never loaded, since unpickling can run code; "
                  "the next training writes a version that loads safely")


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


@dataclass(frozen=True)
class Latest:
    """The newest version that loaded (None: none did), and why each newer file was refused, by lake path:
    a caller serving an older version or the baseline can say why instead of falling back silently."""

    stored: StoredModel | None
    refused: dict[str, str] = field(default_factory=dict)


class UnsafeModelError(TypeError):
    """A model holds a type outside :data:`TRUSTED`: its file could not be loaded, so it is not written."""


def new_version(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


def folder(name: str, symbol: str) -> tuple[str, str, str]:
    return MODELS, name, f"symbol={symbol}"


def save(lake: Lake, stored: StoredModel) -> str:
    """Write ``stored`` as its version's file; returns the lake path.

    A model holding a type the loader would refuse (a new attribute of an untrusted kind) raises
    :class:`UnsafeModelError` here, at training, rather than writing a version no run can load.
    """
    import skops.io as sio

    data = sio.dumps({f.name: getattr(stored, f.name) for f in dataclasses.fields(stored)})
    untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED))
    if untrusted:
        raise UnsafeModelError(f"{stored.name} holds {', '.join(untrusted)}, which loading would refuse; "
                               "store it as arrays and plain values, or add the type to model_store.TRUSTED")
    return lake.write_bytes(data, *folder(stored.name, stored.symbol), stored.version + SUFFIX)


def versions(lake: Lake, name: str, symbol: str) -> list[str]:
    """The versions stored in the current format, oldest first (pickles of earlier pricepipes are not versions)."""
    return [n.removesuffix(SUFFIX) for n in lake.list_names(*folder(name, symbol)) if n.endswith(SUFFIX)]


def load_latest(lake: Lake, name: str, symbol: str) -> Latest:
    """The newest version of a symbol's model that loads safely, and each newer file that did not with why.

    Files are tried newest first; pickles are refused unread, and a file that fails to load or
    holds another model's data is refused with the loader's reason.
    """
    refused: dict[str, str] = {}
    files = [n for n in lake.list_names(*folder(name, symbol)) if n.endswith((SUFFIX, PICKLE_SUFFIX))]
    for file in sorted(files, key=lambda n: n.removesuffix(SUFFIX).removesuffix(PICKLE_SUFFIX), reverse=True):
        path = posixpath.join(*folder(name, symbol), file)
        if file.endswith(PICKLE_SUFFIX):
            refused[path] = PICKLE_REFUSED
            continue
        try:
            return Latest(_read(lake, name, symbol, file.removesuffix(SUFFIX)), refused)
        except Exception as error:  # whatever a file makes the loader raise, it is not served
            refused[path] = f"not loaded: {type(error).__name__}: {error}"
    return Latest(None, refused)


def _read(lake: Lake, name: str, symbol: str, version: str) -> StoredModel:
    import skops.io as sio

    content = sio.loads(lake.read_bytes(*folder(name, symbol), version + SUFFIX), trusted=TRUSTED)
    fields = [f.name for f in dataclasses.fields(StoredModel)]
    if not isinstance(content, dict) or sorted(content) != sorted(fields):
        raise ValueError(f"the file holds no stored model (expected the fields {', '.join(fields)})")
    stored = StoredModel(**content)
    if (stored.name, stored.symbol, stored.version) != (name, symbol, version):
        raise ValueError(f"the file holds version {stored.version} of {stored.name} for {stored.symbol}, "
                         "not the model its path names")
    return stored
