"""The code location loads, validates, and its setup assets materialize against the real servers."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from pricepipe_assets.contract.topics import ALL_TOPICS, PREDICTIONS
from pricepipe_assets.defs.ingestion import kafka_topics
from pricepipe_assets.defs.kafka import topic_key
from pricepipe_assets.defs.live import cassandra_schema
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets.storage.cassandra_schema import MIGRATIONS

REPO = Path(__file__).resolve().parents[1]


def test_workspace_validates_with_the_dagster_cli(tmp_path: Path) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "DAGSTER_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_every_asset_has_a_group_and_a_description() -> None:
    from pricepipe_assets.definitions import defs

    for spec in defs.resolve_all_asset_specs():
        assert spec.group_name in {"exchanges", "kafka", "ingestion", "lake", "live", "analytics", "ml",
                                   "retention"}, spec.key
        assert spec.description, f"{spec.key} has no description"


def test_each_group_module_holds_the_assets_of_its_own_group_and_all_of_them() -> None:
    from pricepipe_assets.definitions import GROUPS, defs, settings

    by_module = {group.__name__.rsplit(".", 1)[1]: {
        key for asset in group.definitions(settings).assets or ()
        for key in (asset.keys if isinstance(asset, dg.AssetsDefinition) else {asset.key})}
        for group in GROUPS}
    by_group: dict[str, set[dg.AssetKey]] = {}
    for spec in defs.resolve_all_asset_specs():
        by_group.setdefault(str(spec.group_name), set()).add(spec.key)
    assert by_module == by_group


def test_a_topic_job_takes_the_topic_to_the_assets_that_depend_on_it() -> None:
    from pricepipe_assets.contract.topics import CANDLES_1D, CANDLES_1H, CANDLES_1M, ORDERBOOK, TRADES
    from pricepipe_assets.defs.lake.jobs import TOPIC_ASSETS

    assert TOPIC_ASSETS == {CANDLES_1M: ("candles_lake",), CANDLES_1H: ("candles_lake",),
                            CANDLES_1D: ("candles_lake",), TRADES: ("trades_lake",), ORDERBOOK: ("order_books_lake",)}


def test_the_asset_graph_is_one_connected_path_from_the_exchanges_to_the_archives() -> None:
    """Setup-only assets aside (they precede everything, so they would join any islands): every asset,
    topics and the feeds outside Dagster included, is reachable from every other one."""
    from pricepipe_assets.definitions import defs

    setup_only = {dg.AssetKey("kafka_topics"), dg.AssetKey("cassandra_schema")}
    graph = defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys()) - setup_only
    neighbours: dict[dg.AssetKey, set[dg.AssetKey]] = {key: set() for key in keys}
    for key in keys:
        for parent in graph.get(key).parent_keys - setup_only:
            neighbours[key].add(parent)
            neighbours[parent].add(key)
    reached, frontier = set(), [dg.AssetKey("binance_feed")]
    while frontier:
        key = frontier.pop()
        if key not in reached:
            reached.add(key)
            frontier.extend(neighbours[key])
    assert reached == keys, sorted(k.to_user_string() for k in keys - reached)
    topics = {spec.key for spec in defs.resolve_all_asset_specs() if spec.group_name == "kafka"}
    assert topics == {topic_key(topic) for topic in ALL_TOPICS}
    assert graph.get(topic_key(PREDICTIONS)).parent_keys >= {dg.AssetKey("daily_forecast"),
                                                             dg.AssetKey("minute_predictions")}
    assert topic_key(PREDICTIONS) in graph.get(dg.AssetKey("predictions_live")).parent_keys


def test_setup_assets_create_topics_and_schema(kafka: KafkaResource, cassandra: CassandraResource) -> None:
    result = dg.materialize([kafka_topics, cassandra_schema], resources={"kafka": kafka, "cassandra": cassandra},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert {kafka.topic(name) for name in ALL_TOPICS} <= set(kafka.admin().list_topics(timeout=10).topics)
    schema = result.asset_materializations_for_node("cassandra_schema")[0].metadata
    assert schema["schema_version"].value == MIGRATIONS[-1].version


def test_dagsters_daemon_turns_a_live_table_stale_then_failing_as_its_last_write_ages() -> None:
    """The live tables' freshness policies, evaluated by Dagster's own freshness daemon on an
    instance configured like the project's ``dagster.yaml``; a table never written stays unknown."""
    import yaml
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time, instance_for_test
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.freshness import FreshnessDaemon

    project = yaml.safe_load((REPO / "infra" / "dagster" / "dagster.yaml").read_text())
    live = [dg.AssetKey(name) for name in ("candles_live", "latest_prices")]
    written = dt.datetime.now(dt.UTC)
    states = []
    with instance_for_test(overrides={"freshness": project["freshness"]}) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("candles_live"))
        target = ModuleTarget(module_name="pricepipe_assets.definitions", attribute=None,
                              working_directory=str(REPO), location_name="pricepipe")
        with create_test_daemon_workspace_context(target, instance) as context:
            for minutes_later in (1, 6, 16):
                with freeze_time(written + dt.timedelta(minutes=minutes_later)):
                    list(FreshnessDaemon().run_iteration(context))
                states.append({key.to_user_string(): record.freshness_state.value
                               for key, record in instance.get_freshness_state_records(live).items()})
    assert [s["candles_live"] for s in states] == ["PASS", "WARN", "FAIL"]
    assert {s["latest_prices"] for s in states} == {"UNKNOWN"}

