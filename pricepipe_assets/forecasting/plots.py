"""Walk-forward plots for the Dagster UI: actual vs forecast, the interval band and the baseline.

Dagster shows markdown metadata, so a plot travels as a base64 PNG inside a markdown image. The
figure is small and rendered at a low dpi to keep that string well under the size a run's
metadata should carry (about 150 KB).
"""

from __future__ import annotations

import base64
import io

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_MARKDOWN_BYTES = 150_000


def forecast_png(frame: pd.DataFrame, *, title: str, level: float, last: int | None = None,
                 dpi: int = 80) -> bytes:
    """PNG of an :class:`Evaluation` frame: actual, forecast, interval band at ``level``, naive.

    ``last`` keeps only the newest rows (e.g. the last day of a minute evaluation, where months of
    minutes would be an unreadable smear). Daily frames are drawn one origin at a time, so each
    15-day forecast path is its own line instead of being joined to the next origin's.
    """
    rows = frame.sort_values("time", kind="stable")
    if last is not None:
        rows = rows.tail(last)
    paths = [part for _, part in rows.groupby("origin")] if "origin" in rows else [rows]
    # A Figure on an Agg canvas, not pyplot: no global figure registry to leak or to share
    # between the threads of a Dagster run, and no display needed.
    figure = Figure(figsize=(7, 3.2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(_dates(rows["time"]), rows["actual"], color="black", linewidth=1.0, label="actual")
    for n, path in enumerate(paths):
        when = _dates(path["time"])
        first = n == 0
        axes.fill_between(when, path["lower"], path["upper"], color="tab:blue", alpha=0.2, linewidth=0,
                          label=f"{level:.0%} interval" if first else None)
        axes.plot(when, path["predicted"], color="tab:blue", linewidth=1.0, label="forecast" if first else None)
        axes.plot(when, path["naive"], color="tab:orange", linewidth=0.8, linestyle="--",
                  label="naive" if first else None)
    axes.set_title(title, fontsize=10)
    # matplotlib.dates has no annotations.
    formatter = mdates.ConciseDateFormatter(axes.xaxis.get_major_locator())  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(formatter)
    axes.tick_params(labelsize=8)
    axes.legend(fontsize=7, loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """A markdown image with the PNG inlined, for ``MetadataValue.md``.

    Refuses a PNG whose markdown would exceed ``MAX_MARKDOWN_BYTES`` rather than bloat every
    run record that carries it; render a smaller figure instead.
    """
    text = f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
    if len(text) > MAX_MARKDOWN_BYTES:
        raise ValueError(f"the plot is {len(text)} bytes as markdown, more than {MAX_MARKDOWN_BYTES}; "
                         "draw fewer points or use a lower dpi")
    return text


def _dates(times: pd.Series) -> pd.Series:
    return pd.to_datetime(times, unit="ms", utc=True)
