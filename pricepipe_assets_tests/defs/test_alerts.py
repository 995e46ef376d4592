"""The alert sensors against a real instance, real runs (a Cassandra outage seen by the driver), real
Kafka and a real HTTP receiver: each incident sends exactly one opening and one resolution, however
many ticks see it, and a fresh evaluation (new definitions, the saved cursor) mid-incident changes
nothing."""

# No `from __future__ import annotations` here: Dagster reads the assets' config annotations at definition time.
import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from pricepipe_assets.alerts import rules
from pricepipe_assets.alerts.channels import Channel
from pricepipe_assets.alerts.webhook import WebhookChannel
from pricepipe_assets.contract.topics import DEADLETTER
from pricepipe_assets.defs import alerts
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.settings import Settings
from pricepipe_assets_tests.support.alert_receivers import HttpReceiver, free_port, serve_http

pytestmark = pytest.mark.timeout(300)


class ProbeConfig(dg.Config):
    port: int


@dg.asset
def cassandra_probe(config: ProbeConfig) -> None:
    """Reads Cassandra's version through the real driver: fails like any asset when Cassandra is down."""
    from cassandra.cluster import Cluster

    cluster = Cluster(["127.0.0.1"], port=config.port, connect_timeout=2, control_connection_timeout=2)
    try:
        cluster.connect().execute("SELECT release_version FROM system.local")
    finally:
        cluster.shutdown()


class ModelConfig(dg.Config):
    mae_ratio: float


@dg.asset(name="minute_model", check_specs=[dg.AssetCheckSpec("not_worse_than_baseline", asset="minute_model")])
def minute_model(config: ModelConfig) -> dg.MaterializeResult:
    """A model whose check compares its (possibly poisoned) MAE ratio to the naive forecast's, as the real one does."""
    worse = config.mae_ratio > 1.05
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(
        check_name="not_worse_than_baseline", passed=not worse,
        metadata={"falls_back_to_naive": dg.MetadataValue.json(["ETHUSDT"] if worse else [])})])


class ArchiveConfig(dg.Config):
    corrupt: bool


@dg.asset(name="candles_1m_archive", partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
def candles_1m_archive(context: dg.AssetExecutionContext, config: ArchiveConfig) -> None:
    """Fails as the real archive asset does when the file read back differs from the rows written."""
    if config.corrupt:
        raise dg.Failure(f"archive of candles_1m for {context.partition_key} does not verify: 1440 rows with key "
                         "checksum 3f1a written, 1439 rows with checksum 9c2e read back; nothing was deleted")


CANDLES_LIVE = dg.AssetSpec("candles_live", freshness_policy=dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(minutes=15)))
probe_job = dg.define_asset_job("cassandra_probe_job", selection=[cassandra_probe])
model_job = dg.define_asset_job("minute_model_job", selection=[minute_model])
archive_job = dg.define_asset_job("archive_job", selection=[candles_1m_archive])


@pytest.fixture()
def http_receiver() -> Iterator[HttpReceiver]:
    yield from serve_http()


@pytest.fixture()
def instance(tmp_path: Any) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as test_instance:
        yield test_instance


class Daemon:
    """Plays the daemon's part: evaluates a sensor with the last saved cursor and saves the new one.
    ``restart`` drops every object built so far (definitions, sensors, channels), as a new process would."""

    def __init__(self, instance: dg.DagsterInstance, settings: Settings, url: str, resources: dict[str, Any]) -> None:
        self.instance, self.settings, self.url, self.resources = instance, settings, url, resources
        self.cursors: dict[str, str | None] = {}
        self.restart()

    def restart(self) -> None:
        channels: dict[str, Channel] = {"webhook:json": WebhookChannel(self.url)}
        self.defs = dg.Definitions(assets=[cassandra_probe, minute_model, candles_1m_archive, CANDLES_LIVE],
                                   jobs=[probe_job, model_job, archive_job],
                                   sensors=alerts.build_alert_sensors(self.settings, channels))

    def tick(self, name: str) -> str:
        """One evaluation; returns what the UI shows for the tick."""
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursors.get(name),
                                          repository_def=self.defs.get_repository_def(), resources=self.resources)
        result = self.defs.resolve_sensor_def(name)(context)
        assert isinstance(result, dg.SensorResult) and result.skip_reason is not None
        self.cursors[name] = result.cursor
        return result.skip_reason.skip_message or ""

    def run(self, job: str, op: str, config: dict[str, Any], partition_key: str | None = None) -> bool:
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, run_config={"ops": {op: {"config": config}}}, raise_on_error=False,
            partition_key=partition_key)
        return result.success


def _events(receiver: HttpReceiver) -> list[tuple[str, str]]:
    return [(body["event"], body["key"]) for body in receiver.bodies]


def test_runs_failing_on_a_cassandra_outage_alert_once_and_resolve_once_across_a_restart(
        instance: dg.DagsterInstance, settings: Settings, http_receiver: HttpReceiver, cassandra_server: None) -> None:
    daemon = Daemon(instance, dataclasses.replace(settings, alert_job_failures=2), http_receiver.url, {})
    down = {"port": free_port()}
    assert not daemon.run("cassandra_probe_job", "cassandra_probe", down)
    daemon.tick("run_alerts_sensor")
    assert http_receiver.bodies == [], "one failure is not yet an incident"
    assert not daemon.run("cassandra_probe_job", "cassandra_probe", down)
    assert daemon.tick("run_alerts_sensor") == "1 open: job:cassandra_probe_job"
    daemon.tick("run_alerts_sensor")
    daemon.restart()
    daemon.tick("run_alerts_sensor")
    assert _events(http_receiver) == [("open", "job:cassandra_probe_job")]
    opened = http_receiver.bodies[0]
    assert opened["assets"] == ["cassandra_probe"] and "/runs/" in opened["link"]
    assert "cassandra_probe" in opened["detail"] and opened["title"] == "cassandra_probe_job failed 2 times in a row"

    assert daemon.run("cassandra_probe_job", "cassandra_probe", {"port": settings.cassandra_port})
    daemon.tick("run_alerts_sensor")
    daemon.restart()
    daemon.tick("run_alerts_sensor")
    assert _events(http_receiver) == [("open", "job:cassandra_probe_job"), ("resolve", "job:cassandra_probe_job")]


def test_an_archive_that_did_not_verify_alerts_once_until_the_day_is_archived(
        instance: dg.DagsterInstance, settings: Settings, http_receiver: HttpReceiver) -> None:
    daemon = Daemon(instance, settings, http_receiver.url, {})
    assert not daemon.run("archive_job", "candles_1m_archive", {"corrupt": True}, "2026-01-02")
    assert daemon.tick("run_alerts_sensor") == "1 open: archive:candles_1m_archive:2026-01-02"
    daemon.restart()
    daemon.tick("run_alerts_sensor")
    assert _events(http_receiver) == [("open", "archive:candles_1m_archive:2026-01-02")]
    assert http_receiver.bodies[0]["detail"].startswith("archive of candles_1m for 2026-01-02 does not verify")
    assert daemon.run("archive_job", "candles_1m_archive", {"corrupt": False}, "2026-01-02")
    assert daemon.tick("run_alerts_sensor") == "no open incident"
    assert _events(http_receiver)[1:] == [("resolve", "archive:candles_1m_archive:2026-01-02")]


def _freshness(instance: dg.DagsterInstance, state: str) -> None:
    from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

    instance.report_runless_asset_event(FreshnessStateChange(
        key=dg.AssetKey("candles_live"), new_state=FreshnessState(state), previous_state=FreshnessState.UNKNOWN,
        state_change_timestamp=time.time()))


def _gap_report(instance: dg.DagsterInstance, missing: int) -> None:
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("candles_lake"), check_name="candles_lake_gaps", passed=missing == 0,
        severity=dg.AssetCheckSeverity.WARN, metadata={"missing_minutes": missing, "gaps_by_symbol": dg.MetadataValue.json(
            {"BTCUSDT": [{"first": "2026-01-01T00:00:00Z", "last": "2026-01-01T00:09:00Z", "minutes": 10}]}
            if missing else {})}))


def test_a_stale_table_a_gap_and_a_poisoned_model_each_open_and_resolve_exactly_once(
        instance: dg.DagsterInstance, settings: Settings, http_receiver: HttpReceiver) -> None:
    daemon = Daemon(instance, settings, http_receiver.url, {})
    assert daemon.tick("asset_alerts_sensor") == "no open incident"
    _freshness(instance, "FAIL")
    _gap_report(instance, 10)
    assert daemon.run("minute_model_job", "minute_model", {"mae_ratio": 3.0}), "a failing check does not fail the run"
    for _ in range(3):
        daemon.tick("asset_alerts_sensor")
    daemon.restart()
    daemon.tick("asset_alerts_sensor")
    opened = {key: body for (event, key), body in zip(_events(http_receiver), http_receiver.bodies, strict=True)}
    assert _events(http_receiver) == [("open", "check:candles_lake:candles_lake_gaps"),
                                      ("open", "check:minute_model:not_worse_than_baseline"),
                                      ("open", "stale:candles_live")]
    assert opened["check:minute_model:not_worse_than_baseline"]["symbols"] == ["ETHUSDT"]
    assert opened["check:candles_lake:candles_lake_gaps"]["symbols"] == ["BTCUSDT"]
    assert "/runs/" in opened["check:minute_model:not_worse_than_baseline"]["link"]

    _freshness(instance, "PASS")
    _gap_report(instance, 0)
    daemon.run("minute_model_job", "minute_model", {"mae_ratio": 0.9})
    daemon.tick("asset_alerts_sensor")
    daemon.restart()
    assert daemon.tick("asset_alerts_sensor") == "no open incident"
    assert sorted(_events(http_receiver)[3:]) == [("resolve", "check:candles_lake:candles_lake_gaps"),
                                                  ("resolve", "check:minute_model:not_worse_than_baseline"),
                                                  ("resolve", "stale:candles_live")]


def test_a_stopped_feed_and_a_burst_of_dead_letters_open_and_resolve_once(
        instance: dg.DagsterInstance, settings: Settings, http_receiver: HttpReceiver, kafka: KafkaResource,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules, "MIN_RATE_WINDOW_S", 1.0)
    kafka.ensure_topics([DEADLETTER])
    daemon = Daemon(instance, dataclasses.replace(settings, alert_feed_silence_s=2, alert_deadletter_per_min=100),
                    http_receiver.url, {"kafka": kafka})

    def observe_feed() -> None:
        instance.report_runless_asset_event(dg.AssetObservation(asset_key="binance_feed", metadata={
            "newest_event_time": "2026-01-01T00:00:00Z",
            "newest_by_topic_and_symbol": dg.MetadataValue.json({"candles.1m": {"BTCUSDT": "2026-01-01T00:00:00Z"}})}))

    observe_feed()
    daemon.tick("feed_alerts_sensor")
    producer = kafka.producer()
    for n in range(50):
        producer.produce(kafka.topic(DEADLETTER), key=b"BTCUSDT", value=b'{"reason": "test %d"}' % n)
    producer.flush(10)
    time.sleep(2.2)
    daemon.tick("feed_alerts_sensor")
    daemon.restart()
    daemon.tick("feed_alerts_sensor")
    assert _events(http_receiver) == [("open", "deadletter:rate"), ("open", "silent:binance_feed")]
    assert http_receiver.bodies[1]["symbols"] == ["BTCUSDT"]

    observe_feed()
    time.sleep(1.1)
    daemon.tick("feed_alerts_sensor")
    assert _events(http_receiver)[2:] == [("resolve", "deadletter:rate"), ("resolve", "silent:binance_feed")]


def test_a_rule_that_cannot_reach_kafka_keeps_its_incident_open(
        instance: dg.DagsterInstance, settings: Settings, http_receiver: HttpReceiver) -> None:
    from pricepipe_assets.alerts.incidents import AlertState, Finding

    state = AlertState()
    state.update([Finding("deadletter:rate", "deadletters", "dead letters above the limit", "x", 1.0, "l")],
                 {"deadletters"}, time.time(), [])
    daemon = Daemon(instance, settings, http_receiver.url,
                    {"kafka": KafkaResource(bootstrap_servers=f"127.0.0.1:{free_port()}")})
    daemon.cursors["feed_alerts_sensor"] = state.to_json()
    started = time.monotonic()
    assert daemon.tick("feed_alerts_sensor") == "1 open: deadletter:rate"
    assert time.monotonic() - started < 30, "a tick never waits on a server that is down"
    assert http_receiver.bodies == []


def test_the_code_location_runs_the_three_alert_sensors_on_what_it_defines() -> None:
    from pricepipe_assets.definitions import defs

    repo = defs.get_repository_def()
    sensors = {name: repo.get_sensor_def(name) for name in ("run_alerts_sensor", "asset_alerts_sensor",
                                                            "feed_alerts_sensor")}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    checks = {key for node in repo.asset_graph.asset_nodes for key in node.check_keys}
    assert {dg.AssetCheckKey(dg.AssetKey(a), c) for a, c in alerts.WATCHED_CHECKS} <= checks
    assets = {node.key.to_user_string() for node in repo.asset_graph.asset_nodes}
    assert {*alerts.FEEDS, "deadletter_topic"} <= assets
    assert any(node.freshness_policy is not None for node in repo.asset_graph.asset_nodes)
