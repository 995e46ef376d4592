"""Settings: defaults, overrides from PRICEPIPE_* variables, and clear messages for bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pricepipe_assets.settings import Settings, SettingsError


def test_defaults_point_at_local_servers() -> None:
    settings = Settings.from_env({"HOME_IS_IGNORED": "x"})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.cassandra_hosts == ("127.0.0.1",)
    assert settings.cassandra_port == 9042
    assert settings.keyspace == "pricepipe"
    assert settings.spark_master == "local[*]"
    assert settings.cassandra_replication == "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    assert settings.lake_uri == str(settings.state_dir / "lake")
    assert settings.symbols == ("BTCUSDT", "ETHUSDT")


def test_overrides_are_parsed() -> None:
    settings = Settings.from_env({
        "PRICEPIPE_KAFKA_BOOTSTRAP": "broker-1:9092,broker-2:9092",
        "PRICEPIPE_CASSANDRA_HOSTS": "10.0.0.1, 10.0.0.2",
        "PRICEPIPE_CASSANDRA_PORT": "19042",
        "PRICEPIPE_KEYSPACE": "prices_prod",
        "PRICEPIPE_CASSANDRA_REPLICATION": "NetworkTopologyStrategy:dc1=3,dc2=2",
        "PRICEPIPE_LAKE_URI": "webhdfs://namenode:9870/pricepipe",
        "PRICEPIPE_SPARK_MASTER": "spark://master:7077",
        "PRICEPIPE_SYMBOLS": "btcusdt,solusdt",
    })
    assert settings.kafka_bootstrap == "broker-1:9092,broker-2:9092"
    assert settings.cassandra_hosts == ("10.0.0.1", "10.0.0.2")
    assert settings.cassandra_port == 19042
    assert settings.keyspace == "prices_prod"
    assert settings.cassandra_replication == "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
    assert settings.lake_uri == "webhdfs://namenode:9870/pricepipe"
    assert settings.spark_master == "spark://master:7077"
    assert settings.symbols == ("BTCUSDT", "SOLUSDT")


def test_state_dir_moves_the_default_lake(tmp_path: Path) -> None:
    settings = Settings.from_env({"PRICEPIPE_STATE_DIR": str(tmp_path)})
    assert settings.lake_uri == str(tmp_path / "lake")


def test_file_uri_lake_becomes_a_folder(tmp_path: Path) -> None:
    assert Settings.from_env({"PRICEPIPE_LAKE_URI": f"file://{tmp_path}/lake"}).lake_uri == str(tmp_path / "lake")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PRICEPIPE_CASSANDRA_PORT", "ninety", "PRICEPIPE_CASSANDRA_PORT: expected an integer, got 'ninety'"),
        ("PRICEPIPE_KAFKA_TOPIC_PARTITIONS", "0", "PRICEPIPE_KAFKA_TOPIC_PARTITIONS: must be at least 1, got 0"),
        ("PRICEPIPE_LAKE_URI", "s3://bucket/lake", "PRICEPIPE_LAKE_URI: expected a folder or webhdfs://host:port/path"),
        ("PRICEPIPE_LAKE_URI", "webhdfs://namenode/lake", "PRICEPIPE_LAKE_URI: a webhdfs lake needs host and port"),
        ("PRICEPIPE_KEYSPACE", "prices; DROP TABLE x", "PRICEPIPE_KEYSPACE: expected a lower-case name"),
        ("PRICEPIPE_CASSANDRA_REPLICATION", "EverywhereStrategy:3", "PRICEPIPE_CASSANDRA_REPLICATION: expected SimpleStrategy:N"),
        ("PRICEPIPE_SYMBOLS", " , ", "PRICEPIPE_SYMBOLS: expected a comma-separated list"),
        ("PRICEPIPE_SYMBOLS", "BTC-USDT", "PRICEPIPE_SYMBOLS: symbol 'BTC-USDT' must be ASCII letters, digits and _ only"),
        ("PRICEPIPE_BINANCE_REST_URL", "ftp://example", "PRICEPIPE_BINANCE_REST_URL: expected a URL starting with"),
        ("PRICEPIPE_CASSANDRA_CONSISTENCY", "MOSTLY", "PRICEPIPE_CASSANDRA_CONSISTENCY: expected one of ANY, ONE"),
        ("PRICEPIPE_KAFKA_MIN_INSYNC_REPLICAS", "0", "PRICEPIPE_KAFKA_MIN_INSYNC_REPLICAS: must be at least 1"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert str(raised.value).startswith(message)


SECRETS = {"PRICEPIPE_CASSANDRA_PASSWORD": "hunter2", "PRICEPIPE_CASSANDRA_USERNAME": "app",
           "PRICEPIPE_CASSANDRA_TLS": "true", "PRICEPIPE_API_KEY": "k-3141",
           "PRICEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PRICEPIPE_KAFKA_PASSWORD": "kpass-2718",
           "PRICEPIPE_DAGSTER_POSTGRES_URL": "postgresql://dagster:pg-secret@db:5432/dagster"}


def test_redacted_masks_secrets_only() -> None:
    shown = Settings.from_env(SECRETS).redacted()
    assert shown["PRICEPIPE_CASSANDRA_PASSWORD"] == "***"
    assert shown["PRICEPIPE_CASSANDRA_USERNAME"] == "app"
    assert not any(secret in "".join(shown.values()) for secret in ("hunter2", "k-3141", "kpass-2718", "pg-secret"))


def test_repr_masks_secrets() -> None:
    shown = repr(Settings.from_env(SECRETS))
    assert "cassandra_username='app'" in shown and "cassandra_password=***" in shown
    assert not any(secret in shown for secret in ("hunter2", "k-3141", "kpass-2718", "pg-secret"))


def test_a_bad_secret_value_is_named_but_not_printed() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"PRICEPIPE_DAGSTER_POSTGRES_URL": "mysql://dagster:pg-secret@db/dagster"})
    assert "PRICEPIPE_DAGSTER_POSTGRES_URL" in str(raised.value)
    assert "pg-secret" not in str(raised.value)


@pytest.mark.parametrize("variables", [
    {"PRICEPIPE_CASSANDRA_USERNAME": "app", "PRICEPIPE_CASSANDRA_PASSWORD": "hunter2"},
    {"PRICEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PRICEPIPE_KAFKA_PASSWORD": "kpass"},
])
def test_a_password_over_a_plain_connection_is_refused_unless_allowed(variables: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="unencrypted"):
        Settings.from_env(variables)
    assert Settings.from_env({**variables, "PRICEPIPE_ALLOW_PLAINTEXT_PASSWORDS": "true"}).allow_plaintext_passwords


def test_a_cassandra_ca_file_turns_tls_on(tmp_path: Path) -> None:
    settings = Settings.from_env({"PRICEPIPE_CASSANDRA_SSL_CA_FILE": str(tmp_path / "ca.pem")})
    assert settings.cassandra_tls and settings.cassandra_ssl_ca_file == tmp_path / "ca.pem"
    assert not Settings.from_env({}).cassandra_tls


def test_documentation_covers_every_setting() -> None:
    documented = {row[0] for row in Settings.documentation()}
    assert documented == set(Settings.from_env({}).redacted())
    assert all(doc for _, _, doc in Settings.documentation())


def test_api_workers_default_to_the_number_of_cores() -> None:
    assert Settings.from_env({}).api_workers == (os.cpu_count() or 1)
    assert Settings.from_env({"PRICEPIPE_API_WORKERS": "3"}).api_workers == 3
    with pytest.raises(SettingsError, match="PRICEPIPE_API_WORKERS: must be at least 1"):
        Settings.from_env({"PRICEPIPE_API_WORKERS": "0"})


def test_the_closed_day_cache_is_sized_in_megabytes_and_may_be_off() -> None:
    assert Settings.from_env({}).api_closed_cache_mb == 64
    assert Settings.from_env({"PRICEPIPE_API_CLOSED_CACHE_MB": "0"}).api_closed_cache_mb == 0


def test_an_empty_daily_history_dir_means_none_not_the_working_directory(tmp_path: Path) -> None:
    assert Settings.from_env({"PRICEPIPE_DAILY_HISTORY_DIR": ""}).daily_history_dir is None
    assert Settings.from_env({"PRICEPIPE_DAILY_HISTORY_DIR": str(tmp_path)}).daily_history_dir == tmp_path.resolve()


def test_cassandra_consistency_is_local_quorum_from_three_replicas_on() -> None:
    assert Settings.from_env({}).cassandra_consistency == "LOCAL_ONE"
    three = {"PRICEPIPE_CASSANDRA_REPLICATION": "SimpleStrategy:3"}
    assert Settings.from_env(three).cassandra_consistency == "LOCAL_QUORUM"
    two_dcs = {"PRICEPIPE_CASSANDRA_REPLICATION": "NetworkTopologyStrategy:dc1=3,dc2=2"}
    assert Settings.from_env(two_dcs).cassandra_consistency == "LOCAL_ONE"
    assert Settings.from_env({**three, "PRICEPIPE_CASSANDRA_CONSISTENCY": "one"}).cassandra_consistency == "ONE"


def test_min_insync_replicas_defaults_to_the_brokers_and_may_not_exceed_the_replication() -> None:
    assert Settings.from_env({}).kafka_min_insync_replicas is None
    replicated = {"PRICEPIPE_KAFKA_REPLICATION_FACTOR": "3", "PRICEPIPE_KAFKA_MIN_INSYNC_REPLICAS": "2"}
    assert Settings.from_env(replicated).kafka_min_insync_replicas == 2
    with pytest.raises(SettingsError, match="PRICEPIPE_KAFKA_MIN_INSYNC_REPLICAS \\(2\\) exceeds"):
        Settings.from_env({"PRICEPIPE_KAFKA_MIN_INSYNC_REPLICAS": "2"})
