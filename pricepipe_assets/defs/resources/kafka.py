"""The Dagster resource of :class:`~pricepipe_assets.kafka.client.KafkaCluster`: the same settings as
resource config (shown in the UI, secrets as variable names)."""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.kafka.client import KafkaCluster, KafkaError

__all__ = ["KafkaError", "KafkaResource"]


# Unparametrized: a subscripted ConfigurableResource is a pydantic model class of its own at run time.
class KafkaResource(KafkaCluster, dg.ConfigurableResource):  # type: ignore[type-arg]
    """One Kafka cluster: producers are idempotent, consumers commit only when told to."""
