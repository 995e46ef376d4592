"""The alert sensors: each turns what the Dagster instance (runs, asset check results, freshness
state, observations) or Kafka says into findings, and lets ``pricepipe_assets.alerts`` open and
resolve incidents once each and deliver the notices.

Every sensor keeps its incidents and its undelivered notices in its own cursor, so a daemon restart
neither repeats an opening nor forgets a resolution. A run-status sensor would not do here: its
cursor is Dagster's bookmark of the run events it has seen, and it is only called when a run ends,
so it could neither remember an incident nor retry a channel on a quiet tick; the job sensor reads
the same run records from the instance instead.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import dagster as dg

from pricepipe_assets.alerts.channels import Channel, deliver
from pricepipe_assets.alerts.configured import configured_channels, ui_url
from pricepipe_assets.alerts.incidents import AlertState, Finding
from pricepipe_assets.alerts.messages import text
from pricepipe_assets.alerts.rules import RunOutcome, counter_rate, failure_streak, symbols_in
from pricepipe_assets.contract.topics import DEADLETTER
from pricepipe_assets.defs.exchanges import FEED_OF_EXCHANGE
from pricepipe_assets.defs.lake.checks import candles_lake_gaps
from pricepipe_assets.defs.ml.training import BASELINE_CHECK, DAILY_MODEL, MINUTE_LSTM_MODEL, MINUTE_MODEL
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.settings import Settings

ALERT_INTERVAL_S = 30
WILL_RETRY_TAG = "dagster/will_retry"
PARTITION_TAG = "dagster/partition"
# The failed runs read back for archives that did not verify: a week of retention runs and more.
ARCHIVE_LOOKBACK_S = 7 * 86_400
ARCHIVE_RUNS = 50
# The checks whose failure is an incident, the kind of incident, and the metadata naming the symbols.
WATCHED_CHECKS: dict[tuple[str, str], tuple[str, str]] = {
    ("candles_lake", candles_lake_gaps.check_key.name): ("gap", "gaps_by_symbol"),
    **{(model, BASELINE_CHECK): ("naive_fallback", "falls_back_to_naive")
       for model in (MINUTE_MODEL, MINUTE_LSTM_MODEL, DAILY_MODEL)},
}
FEEDS = tuple(sorted({feed.to_user_string() for feed in FEED_OF_EXCHANGE.values()}))
# The group id the dead-letter sampler's metadata consumer gives: it reads watermarks, never commits.
ALERTS_GROUP = "pricepipe.alerts"


def _asset_link(base: str, asset: str, view: str = "") -> str:
    return f"{base}/assets/{asset}" + (f"?view={view}" if view else "")


def _first_line(message: str, limit: int = 300) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "no error message"
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _step_failures(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(step key, error message) of each failed step of a run."""
    found = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        while error is not None and error.cause is not None:  # the root cause names the outage, not Dagster's wrapper
            error = error.cause
        message = error.message if error else entry.message
        if error is not None and error.cls_name == "Failure":  # the asset's own sentence, without the class
            message = message.split(": ", 1)[-1]
        found.append(((event.step_key or "") if event else "", message))
    return found


def job_findings(instance: dg.DagsterInstance, jobs: Iterable[str], failures: int, base: str) -> list[Finding]:
    """A job whose last ``failures`` runs (after their retries) all failed."""
    findings = []
    for job in sorted(jobs):
        records = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=[
            dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]), limit=4 * failures)
        outcomes = [RunOutcome(r.dagster_run.run_id, r.dagster_run.status == dg.DagsterRunStatus.FAILURE,
                               r.dagster_run.tags.get(WILL_RETRY_TAG) == "true", r.end_time or r.create_timestamp.timestamp())
                    for r in records]
        streak = failure_streak(outcomes)
        if len(streak) < failures:
            continue
        newest = next(r.dagster_run for r in records if r.dagster_run.run_id == streak[0].run_id)
        steps = _step_failures(instance, newest.run_id)
        reason = f"{steps[0][0]}: {_first_line(steps[0][1])}" if steps else "the run failed before any step"
        findings.append(Finding(
            key=f"job:{job}", kind="job_failures", title=f"{job} failed {len(streak)} times in a row",
            detail=f"The last {len(streak)} runs of {job} failed (retries included). Newest failure: {reason}",
            since=streak[-1].ended, link=f"{base}/runs/{newest.run_id}",
            assets=_planned_assets(instance, newest.run_id)))
    return findings


def _planned_assets(instance: dg.DagsterInstance, run_id: str) -> tuple[str, ...]:
    """The assets a run set out to materialize (an asset job's run names no selection of its own)."""
    entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    return tuple(sorted({entry.dagster_event.asset_key.to_user_string() for entry in entries
                         if entry.dagster_event and entry.dagster_event.asset_key}))


def archive_findings(state: AlertState, instance: dg.DagsterInstance, now: float, base: str) -> list[Finding]:
    """An archive day whose copy did not read back the same (``ArchiveVerificationError``) and has
    not been materialized since. A failed run's steps never change, so each run's event log is read
    once; ``state.memo`` keeps what it held for as long as the run is among those looked at."""
    findings: dict[str, Finding] = {}
    records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=
                                                     dt.datetime.fromtimestamp(now - ARCHIVE_LOOKBACK_S, dt.UTC)),
                                       limit=ARCHIVE_RUNS)
    known: dict[str, list[list[str]]] = state.memo.get("archive_runs", {})
    scanned = {}
    for record in records:
        run = record.dagster_run
        scanned[run.run_id] = known[run.run_id] if run.run_id in known else [
            [step, message] for step, message in _step_failures(instance, run.run_id) if "does not verify" in message]
        day = run.tags.get(PARTITION_TAG, "")
        ended = record.end_time or record.create_timestamp.timestamp()
        for step, message in scanned[run.run_id]:
            key = f"archive:{step}:{day}"
            if key in findings:
                continue
            done = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(step), asset_partitions=[day] if day else None), limit=1)
            if done.records and done.records[0].timestamp > ended:
                continue
            findings[key] = Finding(key=key, kind="archive_verification", title=f"archive {step} {day} did not verify",
                                    detail=_first_line(message), since=ended, link=f"{base}/runs/{run.run_id}",
                                    assets=(step,))
    state.memo["archive_runs"] = scanned
    return list(findings.values())


def stale_findings(instance: dg.DagsterInstance, assets: Iterable[dg.AssetKey], base: str) -> list[Finding]:
    """Assets whose freshness policy (evaluated by the daemon) is failing."""
    findings = []
    for key, record in sorted(instance.get_freshness_state_records(list(assets)).items()):
        if record.freshness_state.value != "FAIL":
            continue
        asset = key.to_user_string()
        findings.append(Finding(key=f"stale:{asset}", kind="stale", title=f"{asset} is stale",
                                detail=f"{asset} has not been written within its freshness policy's fail window: its "
                                "feed, the stream worker, Kafka or Cassandra has stopped.",
                                since=record.updated_at.timestamp(), link=_asset_link(base, asset), assets=(asset,)))
    return findings


def check_findings(instance: dg.DagsterInstance, kind: str, base: str) -> list[Finding]:
    """The watched checks whose latest evaluation failed: a gap report with gaps, a model that lost
    to the naive forecast (whose symbols are now served by the naive baseline)."""
    findings = []
    for (asset, check), (watched_kind, symbols_field) in WATCHED_CHECKS.items():
        if watched_kind != kind:
            continue
        record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(dg.AssetKey(asset), check))
        event = record.event.dagster_event if record and record.event else None
        evaluation = event.event_specific_data if event else None
        if record is None or not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        metadata = {name: value.value for name, value in evaluation.metadata.items()}
        symbols = symbols_in(metadata.get(symbols_field))
        what = (f"{metadata.get('missing_minutes', '?')} minutes missing in the lake's raw candles" if kind == "gap"
                else f"{asset} forecasts worse than the naive one; served by the naive baseline")
        findings.append(Finding(
            key=f"check:{asset}:{check}", kind=kind, title=f"{check} failed on {asset}",
            detail=f"{what} ({', '.join(symbols) or 'no symbol named'}).", since=record.create_timestamp,
            link=f"{base}/runs/{record.run_id}" if record.run_id else _asset_link(base, asset, "checks"),
            assets=(asset,), symbols=symbols))
    return findings


def feed_findings(instance: dg.DagsterInstance, now: float, silence_s: float, base: str) -> list[Finding]:
    """A feed whose observation (recorded by `feeds_sensor` only when it published something new)
    is older than ``silence_s``. A feed never observed is not watched: it was never started here."""
    findings = []
    for feed in FEEDS:
        records = instance.fetch_observations(dg.AssetKey(feed), limit=1).records
        if not records or now - records[0].timestamp <= silence_s:
            continue
        observation = records[0].asset_observation
        metadata = {name: value.value for name, value in observation.metadata.items()} if observation else {}
        findings.append(Finding(
            key=f"silent:{feed}", kind="feed_silence", title=f"{feed} is silent",
            detail=f"{feed} has published no new event for over {silence_s:.0f} s (its newest event time: "
            f"{metadata.get('newest_event_time', 'unknown')}).", since=records[0].timestamp,
            link=_asset_link(base, feed), assets=(feed,),
            symbols=symbols_in(metadata.get("newest_by_topic_and_symbol"))))
    return findings


def deadletter_findings(state: AlertState, kafka: KafkaResource, now: float, per_min: float, base: str) -> list[Finding]:
    """The `deadletter` topic growing faster than ``per_min`` messages a minute. Between two samples
    a minute apart, the last verdict holds."""
    offsets = kafka_batches.committed_and_watermarks(kafka, ALERTS_GROUP, DEADLETTER)
    rate = counter_rate(state.memo, "deadletter", sum(high for _, _, high in offsets.values()), now)
    if rate is not None:
        state.memo["deadletter_rate"] = rate
    rate = state.memo.get("deadletter_rate")
    if rate is None or rate <= per_min:
        return []
    opened = state.incidents.get("deadletter:rate")
    return [Finding(key="deadletter:rate", kind="deadletters", title="dead letters above the limit",
                    detail=f"{rate:.1f} messages a minute reach the deadletter topic (limit {per_min:g}): a producer "
                    "or a reader refuses what the contract says.", since=opened.since if opened else now,
                    link=_asset_link(base, "deadletter_topic"), assets=("deadletter_topic",))]


def evaluate(context: dg.SensorEvaluationContext, channels: Mapping[str, Channel],
             rules: Mapping[str, Callable[[AlertState, float], list[Finding]]]) -> dg.SensorResult:
    """One tick: run each rule (a rule that raises leaves its incidents as they were), open and
    resolve incidents, log the notices, deliver what is due, and keep it all in the cursor."""
    state = AlertState.from_json(context.cursor)
    now = time.time()
    findings: list[Finding] = []
    checked = []
    for kind, rule in rules.items():
        try:
            findings.extend(rule(state, now))
        except Exception as error:  # a rule that cannot look must not resolve its incidents
            context.log.warning(f"alert rule {kind} could not run: {error}")
            continue
        checked.append(kind)
    for notice in state.update(findings, checked, now, channels.keys()):
        (context.log.warning if notice.event == "open" else context.log.info)(text(notice))
    delivery = deliver(state, channels, now)
    for failure in delivery.failures:
        context.log.warning(f"alert not delivered: {failure}")
    summary = (f"{len(state.incidents)} open: {', '.join(sorted(state.incidents))}" if state.incidents
               else "no open incident")
    if state.pending:
        summary += f"; {len(state.pending)} notices waiting for their channel"
    return dg.SensorResult(skip_reason=summary, cursor=state.to_json())


def build_alert_sensors(settings: Settings, channels: Mapping[str, Channel] | None = None,
                        interval_s: int = ALERT_INTERVAL_S) -> list[dg.SensorDefinition]:
    """The three alert sensors, sending to ``channels`` (by default those the settings configure)."""
    out = configured_channels(settings) if channels is None else channels
    base = ui_url(settings)
    common: dict[str, Any] = {"minimum_interval_seconds": interval_s,
                              "default_status": dg.DefaultSensorStatus.RUNNING}

    @dg.sensor(name="run_alerts_sensor", description="Alerts once per incident when a job's last "
               "PRICEPIPE_ALERT_JOB_FAILURES runs failed (after their retries), until it succeeds again, and when an "
               "archive day did not verify, until it is archived.", **common)
    def run_alerts_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        jobs = context.repository_def.job_names if context.repository_def else []
        return evaluate(context, out, {
            "job_failures": lambda state, now: job_findings(context.instance, jobs, settings.alert_job_failures, base),
            "archive_verification": lambda state, now: archive_findings(state, context.instance, now, base)})

    @dg.sensor(name="asset_alerts_sensor", description="Alerts once per incident when a live asset's freshness "
               "policy fails, when the lake's gap report finds gaps, and when a model falls back to the naive "
               "forecast (its `not_worse_than_baseline` check fails).", **common)
    def asset_alerts_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        graph = context.repository_def.asset_graph if context.repository_def else None
        fresh = [node.key for node in graph.asset_nodes if node.freshness_policy is not None] if graph else []
        return evaluate(context, out, {
            "stale": lambda state, now: stale_findings(context.instance, fresh, base),
            "gap": lambda state, now: check_findings(context.instance, "gap", base),
            "naive_fallback": lambda state, now: check_findings(context.instance, "naive_fallback", base)})

    @dg.sensor(name="feed_alerts_sensor", description="Alerts once per incident when a feed published nothing new "
               "for PRICEPIPE_ALERT_FEED_SILENCE_S, and when more than PRICEPIPE_ALERT_DEADLETTER_PER_MIN dead "
               "letters a minute arrive.", **common)
    def feed_alerts_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
        return evaluate(context, out, {
            "feed_silence": lambda state, now: feed_findings(context.instance, now, settings.alert_feed_silence_s,
                                                             base),
            "deadletters": lambda state, now: deadletter_findings(state, kafka, now, settings.alert_deadletter_per_min,
                                                                  base)})

    return [run_alerts_sensor, asset_alerts_sensor, feed_alerts_sensor]


def definitions(settings: Settings) -> dg.Definitions:
    """The alert sensors, to merge into the code location."""
    return dg.Definitions(sensors=build_alert_sensors(settings))
