"""The ground every other asset stands on: Kafka topics and the Cassandra schema.

Both are idempotent, so materializing them again is always safe; they are assets (not hidden
start-up code) so the UI shows when the topics and schema were last ensured and what changed.
"""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.contract.topics import ALL_TOPICS
from pricepipe_assets.defs.metadata import Materialized
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.storage.cassandra_schema import MIGRATIONS


@dg.asset(
    group_name="ingestion",
    kinds={"kafka"},
    description="The Kafka topics of pricepipe's data contract (candles, trades, quotes, predictions, dead letters), "
    "created with the configured partitions and retention when missing.",
)
def kafka_topics(kafka: KafkaResource) -> Materialized:
    created = kafka.ensure_topics(ALL_TOPICS)
    return dg.MaterializeResult(
        metadata={
            "topics": dg.MetadataValue.json([kafka.topic(name) for name in ALL_TOPICS]),
            "created_now": dg.MetadataValue.json(created),
            "partitions_per_topic": kafka.topic_partitions,
            "retention_hours": kafka.retention_hours,
        }
    )


@dg.asset(
    group_name="live",
    kinds={"cassandra"},
    description="pricepipe's Cassandra keyspace and tables, brought to the newest schema version by idempotent "
    "migrations (the same ones every process applies on its first connection).",
)
def cassandra_schema(cassandra: CassandraResource) -> Materialized:
    applied = cassandra.migrate()
    return dg.MaterializeResult(
        metadata={
            "keyspace": cassandra.keyspace,
            "schema_version": cassandra.schema_version(),
            "latest_known_version": MIGRATIONS[-1].version,
            "applied_now": dg.MetadataValue.json([f"{m.version}: {m.description}" for m in applied]),
        }
    )
