"""One resource per external system; :func:`build_resources` wires them from the settings."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from pricepipe_assets.defs.resources.binance import BinanceResource
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.defs.resources.model_rules import ModelRulesResource
from pricepipe_assets.defs.resources.spark import spark_resource
from pricepipe_assets.forecasting.rules import model_rules
from pricepipe_assets.kafka.client import kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.endpoints import binance_endpoints
from pricepipe_assets.storage.cassandra import cassandra_cluster
from pricepipe_assets.storage.lake import data_lake

__all__ = ["BinanceResource", "CassandraResource", "KafkaResource", "LakeResource", "ModelRulesResource", "binance_resource", "build_resources", "cassandra_resource",
           "kafka_resource", "lake_resource"]


def _secret(variable: str) -> Any:
    """Secrets reach resources as ``EnvVar`` so the Dagster UI shows the variable's name, never its value."""
    return dg.EnvVar(variable) if os.environ.get(variable) else ""


def kafka_resource(settings: Settings) -> KafkaResource:
    """The cluster of :func:`kafka_cluster`, its password as the variable's name."""
    return KafkaResource(**{**kafka_cluster(settings).model_dump(), "password": _secret("PRICEPIPE_KAFKA_PASSWORD")})


def cassandra_resource(settings: Settings) -> CassandraResource:
    """The cluster of :func:`cassandra_cluster`, its password as the variable's name."""
    return CassandraResource(**{**cassandra_cluster(settings).model_dump(),
                                "password": _secret("PRICEPIPE_CASSANDRA_PASSWORD")})


def lake_resource(settings: Settings) -> LakeResource:
    return LakeResource(**data_lake(settings).model_dump())


def binance_resource(settings: Settings) -> BinanceResource:
    return BinanceResource(**binance_endpoints(settings).model_dump())


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resources every pricepipe asset, sensor and schedule is given, keyed by name."""
    return {
        "kafka": kafka_resource(settings),
        "cassandra": cassandra_resource(settings),
        "lake": lake_resource(settings),
        "spark": spark_resource(settings),
        "binance": binance_resource(settings),
        "model_rules": ModelRulesResource(**model_rules(settings).model_dump()),
    }
