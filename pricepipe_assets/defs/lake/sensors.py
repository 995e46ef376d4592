"""Sensors that turn Kafka lag into runs of the lake's assets and observe every consumer's lag, one
per consumed topic.

A tick only reads watermarks and committed offsets (metadata requests with short timeouts, never a
poll), so no tick blocks the daemon. The run key is the offset range itself, which Dagster
never forgets; a range whose run failed is requested again with an attempt suffix, so nothing is
skipped forever, and while a topic's run is queued or running no second one is started.
"""

from __future__ import annotations

import json
import time

import dagster as dg

from pricepipe_assets.defs.kafka import topic_observation
from pricepipe_assets.defs.lake.jobs import TOPIC_ASSETS, TOPIC_CONSUMERS, TOPIC_JOBS, job_name
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.run_queue import has_active_run
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.lake_datasets import OFFSETS_PER_FILE, block_start

TOPIC_TAG = "pricepipe/topic"
RANGE_TAG = "pricepipe/offset_ranges"
# Bounds the memory of one run; the next tick requests the rest.
MAX_OFFSETS_PER_PARTITION = 250_000
# A bounded batch takes seconds to a few minutes; a run still going after this is stuck (its process
# gone, or a store hanging), and would block its topic, since no second run is launched while one is
# active. Run monitoring then fails it and the next tick asks for the same range again.
MAX_RUNTIME_S = 900


def run_config(topic: str, offset_ranges: str) -> dict[str, object]:
    """The run config giving every asset of the topic's job the same ranges."""
    return {"ops": {name: {"config": {"offset_ranges": offset_ranges}} for name in TOPIC_ASSETS[topic]}}


def _earlier_attempts(instance: dg.DagsterInstance, offset_ranges: str) -> int:
    """How many runs were already made for exactly this range (they failed, or did not commit)."""
    return instance.get_runs_count(dg.RunsFilter(tags={RANGE_TAG: offset_ranges}))


def _completes_a_file(ranges: list[kafka_batches.OffsetRange]) -> bool:
    return any(r.end >= block_start(r.start) + OFFSETS_PER_FILE for r in ranges)


def _pending_end(ranges: list[kafka_batches.OffsetRange]) -> str:
    """The pending ranges' ends, to tell at the next tick whether the topic is still being written."""
    return ",".join(f"{r.partition}:{r.end}" for r in ranges)


def kafka_sensor(topic: str, minimum_interval_seconds: int, batch_wait_s: float = 0) -> dg.SensorDefinition:
    """The sensor that records ``topic``'s end offsets and every consumer's lag, and launches the
    topic's job when one of the job's assets lags (a topic only the stream worker reads has no job).

    The lake is the history, read in days, so its runs gather: a range is requested once a
    partition's pending messages complete a lake file (``OFFSETS_PER_FILE`` offsets), once no
    message arrived since the last tick (a backfill ended, or a feed is slow), or once the first of
    them has waited ``batch_wait_s``. Each file is written once or a few times, not at every
    tick, and the runs' process starts (most of the batch path's cost) come once a minute, not every
    few seconds; the live tables never wait for them."""
    job = TOPIC_JOBS.get(topic)
    purpose = (f"Requests a `{job.name}` run for the offsets of `{topic}` its assets have not committed yet, and "
               if job is not None else f"`{topic}` is read by the stream worker only: ")

    @dg.sensor(
        name=f"{job_name(topic).removesuffix('_job')}_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"{purpose}records the topic's end offsets and each consuming asset's lag (the runs' and the "
        "stream worker's) as an observation of the topic asset.",
    )
    def _sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
        offsets = {name: kafka_batches.committed_and_watermarks(kafka, kafka.consumer_group(name), topic)
                   for name in TOPIC_CONSUMERS[topic]}
        state = json.loads(context.cursor) if context.cursor else {}
        observation, observed = topic_observation(topic, offsets)
        events = [observation] if observed != state.get("observed") else []
        state["observed"] = observed
        if job is None:
            return dg.SensorResult(skip_reason=f"{topic} has no batch job; lag observed", asset_events=events,
                                   cursor=json.dumps(state))
        if has_active_run(context.instance, tags={TOPIC_TAG: topic}):
            return dg.SensorResult(skip_reason=f"a run for {topic} is queued or running", asset_events=events,
                                   cursor=json.dumps(state))
        ranges = kafka_batches.pending_ranges(topic, [offsets[name] for name in TOPIC_ASSETS[topic]],
                                              MAX_OFFSETS_PER_PARTITION)
        if not ranges:
            state.pop("pending_since", None)
            state.pop("pending_end", None)
            return dg.SensorResult(skip_reason=f"no lag on {topic}", asset_events=events, cursor=json.dumps(state))
        pending_since = state.setdefault("pending_since", time.time())
        growing, state["pending_end"] = state.get("pending_end") != _pending_end(ranges), _pending_end(ranges)
        if time.time() - pending_since < batch_wait_s and growing and not _completes_a_file(ranges):
            pending = sum(r.end - r.start for r in ranges)
            return dg.SensorResult(skip_reason=f"{pending} messages of {topic} gather for the lake (a run at a full "
                                   f"file of {OFFSETS_PER_FILE} offsets, when the topic goes quiet, or "
                                   f"{batch_wait_s:.0f} s after the first)", asset_events=events, cursor=json.dumps(state))
        state.pop("pending_since")
        state.pop("pending_end")
        offset_ranges = kafka_batches.format_ranges(ranges)
        attempt = _earlier_attempts(context.instance, offset_ranges) + 1
        run_key = offset_ranges if attempt == 1 else f"{offset_ranges}#attempt{attempt}"
        request = dg.RunRequest(run_key=run_key, run_config=run_config(topic, offset_ranges),
                                tags={TOPIC_TAG: topic, RANGE_TAG: offset_ranges,
                                      "dagster/max_runtime": str(MAX_RUNTIME_S)})
        return dg.SensorResult(run_requests=[request], asset_events=events,
                               cursor=json.dumps({**state, "run_key": run_key, "offset_ranges": offset_ranges}))

    return _sensor


def kafka_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """One lag sensor per consumed topic, ticking every ``PRICEPIPE_SENSOR_INTERVAL_S``."""
    return [kafka_sensor(topic, settings.sensor_interval_s, settings.lake_batch_wait_s) for topic in TOPIC_CONSUMERS]
