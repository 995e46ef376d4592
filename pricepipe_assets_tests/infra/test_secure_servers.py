"""pricepipe against servers that require TLS and passwords (``pricepipe infra up --secure``): the
pipeline works end to end with the printed settings, and a wrong password or an untrusted CA is a
one-line error within seconds instead of a client retrying forever."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from infra.local import certs, launcher, secure
from pricepipe_assets.contract.records import Candle
from pricepipe_assets.kafka.client import KafkaUnavailable, kafka_cluster
from pricepipe_assets.settings import Settings, SettingsError
from pricepipe_assets.storage.cassandra import CassandraUnavailable, cassandra_cluster
from pricepipe_assets_tests.infra.conftest import pricepipe

# A refusal must be reported this fast; librdkafka alone would retry for as long as it runs.
REFUSAL_BOUND_S = 15
MINUTE_MS = 60_000


@pytest.fixture(scope="session")
def secure_env(request: pytest.FixtureRequest, settings: Settings) -> Iterator[dict[str, str]]:
    """The secure servers, started through the CLI unless already serving, stopped at the end if started here."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    layout = secure.layout(settings)
    started = not all(launcher.is_ready(server) for server in secure.catalog(layout).values())
    if started:
        result = pricepipe("infra", "up", "--secure")
        with capture.global_and_fixture_disabled():
            print("\n" + result.stdout, flush=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "PRICEPIPE_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in result.stdout
        assert secure.password(layout, "kafka-pricepipe") not in result.stdout  # a reference to the file instead
    yield secure.environment(layout)
    if started:
        result = pricepipe("infra", "down", "--secure")
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture()
def test_env(secure_env: dict[str, str]) -> dict[str, str]:
    """The environment of a process on the secure servers, with topics and a keyspace of this test's own."""
    unique = uuid.uuid4().hex[:10]
    env = {**os.environ, **secure_env, "PRICEPIPE_TOPIC_PREFIX": f"test.secure.{unique}.",
           "PRICEPIPE_KEYSPACE": f"test_secure_{unique}", "PRICEPIPE_KAFKA_TOPIC_PARTITIONS": "1"}
    env.pop("DAGSTER_HOME", None)
    return env


@pytest.fixture()
def secure_settings(test_env: dict[str, str]) -> Iterator[Settings]:
    """The settings of ``test_env``; its topics and keyspace are removed afterwards."""
    settings = Settings.from_env(test_env)
    yield settings
    kafka = kafka_cluster(settings)
    admin = kafka.admin()
    mine = [name for name in admin.list_topics(timeout=10).topics if name.startswith(kafka.topic_prefix)]
    if mine:
        admin.delete_topics(mine, operation_timeout=30)
    cassandra = cassandra_cluster(settings)
    cassandra.session().execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}")
    cassandra.close()


def _with(env: dict[str, str], **variables: str) -> Settings:
    """The settings of ``env`` with some ``PRICEPIPE_*`` variables changed (names without the prefix)."""
    return Settings.from_env({**env, **{f"PRICEPIPE_{name.upper()}": value for name, value in variables.items()}})


def _candles(count: int) -> list[Candle]:
    start = int(dt.datetime(2024, 1, 2, tzinfo=dt.UTC).timestamp() * 1000)
    return [Candle(exchange="binance", symbol="BTCUSDT", interval="1m", open_time=start + i * MINUTE_MS,
                   close_time=start + (i + 1) * MINUTE_MS - 1, open=42_000.0 + i, high=42_010.0 + i, low=41_990.0 + i,
                   close=42_005.0 + i, volume=1.5, quote_volume=63_000.0, trades=10, is_closed=True)
            for i in range(count)]


def test_candles_flow_from_publisher_through_the_stream_worker_to_the_api(secure_settings: Settings,
                                                                          test_env: dict[str, str],
                                                                          tmp_path: Path) -> None:
    published = _candles(3)
    publisher = kafka_cluster(secure_settings).publisher()
    for candle in published:
        publisher.publish(candle)
    publisher.flush(30)
    log = tmp_path / "stream.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([str(Path(sys.executable).parent / "pricepipe"), "stream"], env=test_env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        with TestClient(create_app(secure_settings)) as client:
            first, last = published[0], published[-1]
            query = {"interval": "1m", "start": dt.datetime.fromtimestamp(first.open_time / 1000, dt.UTC).isoformat(),
                     "end": dt.datetime.fromtimestamp((last.close_time + 1) / 1000, dt.UTC).isoformat()}
            deadline, answer = time.monotonic() + 120, []
            while len(answer) < len(published) and time.monotonic() < deadline:
                assert worker.poll() is None, log.read_text()
                response = client.get("/candles/BTCUSDT", params=query)
                answer = response.json().get("candles", []) if response.status_code == 200 else []
                time.sleep(1)
            assert [candle["close"] for candle in answer] == [candle.close for candle in published], log.read_text()
            assert client.get("/health").json() == {"status": "ok", "kafka": True, "cassandra": True}
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    written = log.read_text()
    assert written and secure_settings.kafka_password not in written
    assert secure_settings.cassandra_password not in written


def _refused_within_bound(action: Callable[[], object], error: type[Exception], match: str) -> None:
    started = time.monotonic()
    with pytest.raises(error, match=match) as raised:
        action()
    assert time.monotonic() - started < REFUSAL_BOUND_S
    assert "\n" not in str(raised.value)
    assert "not-the-password" not in str(raised.value)


def test_a_wrong_kafka_password_is_a_one_line_error_within_seconds(test_env: dict[str, str]) -> None:
    wrong = _with(test_env, kafka_password="not-the-password")
    _refused_within_bound(kafka_cluster(wrong).publisher, KafkaUnavailable,
                          r"^Kafka at 127\.0\.0\.21:9092 refused user 'pricepipe': SASL authentication failed")


def test_an_untrusted_ca_for_kafka_is_a_one_line_error_within_seconds(test_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    other_ca = certs.make_ca(tmp_path, "some other CA")
    wrong = _with(test_env, kafka_ssl_ca_file=str(other_ca))
    _refused_within_bound(lambda: kafka_cluster(wrong).ensure_topics(["trades"]), KafkaUnavailable,
                          r"^Kafka at 127\.0\.0\.21:9092: the broker's certificate is not signed by "
                          r"PRICEPIPE_KAFKA_SSL_CA_FILE")


def test_a_wrong_cassandra_password_is_a_one_line_error_within_seconds(test_env: dict[str, str]) -> None:
    wrong = _with(test_env, cassandra_password="not-the-password")
    _refused_within_bound(cassandra_cluster(wrong).session, CassandraUnavailable,
                          r"^Cassandra at 127\.0\.0\.21:9042 refused user 'pricepipe': wrong user name or password")


def test_the_default_cassandra_superuser_password_no_longer_signs_in(test_env: dict[str, str]) -> None:
    default = _with(test_env, cassandra_username="cassandra", cassandra_password="cassandra")
    _refused_within_bound(cassandra_cluster(default).session, CassandraUnavailable,
                          r"^Cassandra at 127\.0\.0\.21:9042 refused user 'cassandra'")


def test_an_untrusted_ca_for_cassandra_is_a_one_line_error_within_seconds(test_env: dict[str, str],
                                                                          tmp_path: Path) -> None:
    other_ca = certs.make_ca(tmp_path, "some other CA")
    wrong = _with(test_env, cassandra_ssl_ca_file=str(other_ca))
    _refused_within_bound(cassandra_cluster(wrong).session, CassandraUnavailable,
                          r"^Cassandra at 127\.0\.0\.21:9042: the node's certificate is not signed by "
                          r"PRICEPIPE_CASSANDRA_SSL_CA_FILE")


def test_the_stream_command_stops_with_one_line_on_a_wrong_kafka_password(secure_env: dict[str, str]) -> None:
    env = {**os.environ, **secure_env, "PRICEPIPE_KAFKA_PASSWORD": "not-the-password"}
    result = subprocess.run([str(Path(sys.executable).parent / "pricepipe"), "stream"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "pricepipe: Kafka at 127.0.0.21:9092 refused user 'pricepipe': SASL authentication failed (SCRAM-SHA-512); "
        "check PRICEPIPE_KAFKA_USERNAME and PRICEPIPE_KAFKA_PASSWORD"]


def test_a_password_over_a_plain_connection_is_refused(secure_env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="PRICEPIPE_KAFKA_PASSWORD is set but PRICEPIPE_KAFKA_SECURITY_PROTOCOL "
                                            "is SASL_PLAINTEXT"):
        Settings.from_env({**secure_env, "PRICEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
