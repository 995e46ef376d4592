"""The floor of sensor-driven freshness: a code location that does nothing but Dagster's own part.

A trivial sensor requests a run of a trivial asset for every request file that appeared in a
folder, and the asset writes a marker per request: request → sensor tick → queued run → run
process → asset body, with no store behind it. It follows the run model of pricepipe's Kafka
sensors (one run covers everything pending; no second run while one is active), so under the same
`dagster.yaml` and sensor interval the difference to pricepipe's freshness is pricepipe's own work.
Loaded by `benchmarks/ingest.py` through `benchmarks/freshness_floor.yaml`; imports Dagster only.
"""

import os
from pathlib import Path

import dagster as dg

FOLDER = Path(os.environ.get("PRICEPIPE_FLOOR_DIR", "."))
REQUESTS, DONE = FOLDER / "requests", FOLDER / "done"
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


class Requests(dg.Config):
    names: list[str]


@dg.asset
def floor_marker(config: Requests) -> None:
    DONE.mkdir(exist_ok=True)
    for name in config.names:
        (DONE / name).touch()


floor_job = dg.define_asset_job("floor_job", selection=[floor_marker], executor_def=dg.in_process_executor)


@dg.sensor(job=floor_job, minimum_interval_seconds=int(os.environ.get("PRICEPIPE_SENSOR_INTERVAL_S", "5")),
           default_status=dg.DefaultSensorStatus.RUNNING)
def floor_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    if context.instance.get_run_ids(dg.RunsFilter(job_name=floor_job.name, statuses=ACTIVE), limit=1):
        return dg.SkipReason("a run is queued or running")
    done = {path.name for path in DONE.glob("*")}
    pending = sorted(path.name for path in REQUESTS.glob("*") if path.name not in done)
    if not pending:
        return dg.SkipReason("nothing pending")
    return dg.SensorResult(run_requests=[dg.RunRequest(
        run_key=pending[-1], run_config={"ops": {"floor_marker": {"config": {"names": pending}}}})])


defs = dg.Definitions(assets=[floor_marker], jobs=[floor_job], sensors=[floor_sensor])
