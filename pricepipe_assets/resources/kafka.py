"""The Dagster resource over :class:`~pricepipe_assets.kafka_client.KafkaClient`: its settings as
resource config (shown in the UI, secrets as variable names)."""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.kafka_client import KafkaClient, KafkaError

__all__ = ["KafkaError", "KafkaResource"]


class KafkaResource(KafkaClient, dg.ConfigurableResource):
    """One Kafka cluster: producers are idempotent, consumers commit only when told to."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    username: str = ""
    password: str = ""
    topic_partitions: int = 3
    replication_factor: int = 1
    retention_hours: int = 168
