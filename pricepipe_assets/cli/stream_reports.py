"""How Dagster sees the stream worker: a materialization of each live table it wrote, at most every
``PRICEPIPE_STREAM_REPORT_S``, reported to the Dagster instance without a run.

This is Dagster's own way of observing a streaming process: the live tables stay assets of the one
graph, with the freshness policy that turns them stale when nothing is written, and each report
carries what the runs' materializations carried (rows, offsets, event times by symbol, the days
touched, which the candle check reads) plus the interval's lag and freshness.
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.kafka.batches import OffsetRange
from pricepipe_assets.stream.worker import Progress, StageRunner

log = logging.getLogger(__name__)


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _interval(progress: Progress) -> dict[str, Any]:
    """What the stage read in the interval, as the runs' materializations describe a batch: offsets,
    event times, symbols (with each one's newest record) and days, which the candle check reads."""
    ranges = [OffsetRange(topic, partition, start, end) for (topic, partition), (start, end) in progress.ranges.items()]
    metadata: dict[str, Any] = {
        "records_read": progress.records,
        "dead_letters": progress.dead_letters,
        "offset_ranges": kafka_batches.format_ranges(ranges),
        "first_event_time": utc_iso(progress.first_ms) if progress.first_ms is not None else "",
        "last_event_time": utc_iso(progress.last_ms) if progress.last_ms is not None else "",
        "symbols": dg.MetadataValue.json(sorted(progress.newest)),
        "newest_by_symbol": dg.MetadataValue.json({key: utc_iso(ms) for key, ms in sorted(progress.newest.items())}),
        "days": dg.MetadataValue.json(sorted(progress.days)),
        "failed_writes": progress.failures,
    }
    if progress.delays_s:
        metadata["freshness_p50_s"] = round(statistics.median(progress.delays_s), 4)
        metadata["freshness_p95_s"] = round(_percentile(progress.delays_s, 0.95), 4)
    return metadata


def materializations(runner: StageRunner, progress: Progress) -> list[dg.AssetMaterialization]:
    """One materialization per asset of the stage that wrote something in the interval."""
    interval = _interval(progress)
    events = []
    for step in runner.stage.steps:
        written = progress.written.get(step.asset)
        if not written:
            continue
        extra: dict[str, Any] = {}
        for result in written:
            for name, value in result.metadata.items():
                extra[name] = extra.get(name, 0) + value if isinstance(value, int) else value
        metadata = {
            "dagster/row_count": sum(result.rows for result in written),
            **interval,
            **{name: dg.MetadataValue.json(value) if isinstance(value, dict) else value for name, value in extra.items()},
            "batches": len(written),
            "lag": progress.lag,
        }
        events.append(dg.AssetMaterialization(asset_key=step.asset, metadata=metadata,
                                              description="written by the stream worker"))
    return events


class Reporter:
    """Every ``every_s``, takes each runner's progress and reports it; ``report`` is where events
    go (the Dagster instance's ``report_runless_asset_event``, or a list in tests)."""

    def __init__(self, runners: Sequence[StageRunner], every_s: float,
                 report: Callable[[dg.AssetMaterialization], None]) -> None:
        self.runners = runners
        self.every_s = every_s
        self.report = report
        self.reported = 0

    def once(self) -> None:
        for runner in self.runners:
            progress = runner.progress.take()
            if not progress.written:
                continue
            for event in materializations(runner, progress):
                try:
                    self.report(event)
                    self.reported += 1
                except Exception:  # a Dagster instance that is away must not stop the writes
                    log.exception("could not report %s to Dagster", event.asset_key.to_user_string())

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            self.once()
        self.once()


def instance_report() -> Callable[[dg.AssetMaterialization], None] | None:
    """The Dagster instance's runless report, when ``DAGSTER_HOME`` names one; None otherwise."""
    import os

    if not os.environ.get("DAGSTER_HOME"):
        return None
    instance = dg.DagsterInstance.get()
    return instance.report_runless_asset_event
