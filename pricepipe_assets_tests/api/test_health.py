"""GET /health reports whether the real Kafka and Cassandra answer; GET /livez only that the API does."""

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


def test_health_asks_through_the_apps_own_clients(kafka_server: None, cassandra_server: None,
                                                   settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        sent = app.state.context.store.requests
        assert client.get("/health").json()["cassandra"] is True
        admin = app.state.checks._admin
        assert client.get("/health").json()["kafka"] is True
        assert app.state.checks._admin is admin is not None
        assert app.state.context.store.requests == sent + 2  # one query each, on the API's own session


def test_livez_answers_without_a_key_or_any_store() -> None:
    settings = Settings.from_env({"PRICEPIPE_API_KEY": "s3cret", "PRICEPIPE_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                                  "PRICEPIPE_CASSANDRA_PORT": "1"})
    app = create_app(settings)
    response = TestClient(app).get("/livez")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert app.state.context.store.requests == 0 and app.state.checks._admin is None
    assert TestClient(app).get("/health").status_code == 401
