"""How the groups' runs share the run queue: the statuses that count as a run still to finish, and
the lane that keeps long batch runs from taking every slot."""

from __future__ import annotations

import dagster as dg

ACTIVE_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                   dg.DagsterRunStatus.STARTED]

# Spark and retention runs take minutes; `dagster.yaml` lets at most one of them run at a time, so
# the live topics' runs always keep the other slots and a rollup never holds up ingest.
BATCH_LANE = {"pricepipe/lane": "batch"}


def has_active_run(instance: dg.DagsterInstance, *, job_name: str | None = None,
                   tags: dict[str, str] | None = None) -> bool:
    """Whether a run of ``job_name`` or with ``tags`` is queued or running: a sensor then waits
    rather than starting a second one over the same data."""
    runs = dg.RunsFilter(job_name=job_name, tags=tags or {}, statuses=ACTIVE_STATUSES)
    return bool(instance.get_run_ids(runs, limit=1))
