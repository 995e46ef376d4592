"""The code location loads, validates, and its setup assets materialize against the real servers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from pricepipe_assets.assets.setup import cassandra_schema, kafka_topics
from pricepipe_assets.assets.topics import topic_key
from pricepipe_assets.resources import CassandraResource, KafkaResource
from pricepipe_assets.storage.cassandra_schema import MIGRATIONS
from pricepipe_assets.topics import ALL_TOPICS, PREDICTIONS

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


def test_the_freshness_schedule_fails_the_checks_of_tables_never_written() -> None:
    from pricepipe_assets.definitions import defs

    job = defs.resolve_job_def("live_freshness_job")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    verdicts = {check.check_name: check.passed for check in result.get_asset_check_evaluations()}
    assert verdicts == {"candles_live_freshness": False, "trade_stats_minute_freshness": False,
                        "latest_prices_freshness": False}
    assert not result.asset_materializations_for_node("candles_live")
