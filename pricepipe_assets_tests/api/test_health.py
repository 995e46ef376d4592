"""GET /health reports whether the real Kafka and Cassandra answer."""

from __future__ import annotations

from starlette.testclient import TestClient

from api.app import create_app
from pricepipe_assets.settings import Settings


def test_health_sees_running_kafka_and_cassandra(kafka_server: None, cassandra_server: None, settings: Settings) -> None:
    response = TestClient(create_app(settings)).get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "kafka": True, "cassandra": True}


def test_health_reports_unreachable_stores_without_failing() -> None:
    settings = Settings.from_env({"PRICEPIPE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "PRICEPIPE_CASSANDRA_PORT": "1"})
    response = TestClient(create_app(settings)).get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "kafka": False, "cassandra": False}
