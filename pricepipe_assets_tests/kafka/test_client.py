"""KafkaResource against the real local broker."""

from __future__ import annotations

import socket
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource

from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.kafka.client import KafkaCluster, KafkaUnavailable, kafka_cluster
from pricepipe_assets.settings import Settings


def test_ensure_topics_creates_with_partitions_and_retention_once(kafka: KafkaResource, unique: str) -> None:
    topic = kafka.topic("trades")
    assert kafka.ensure_topics(["trades"]) == [topic]
    assert kafka.ensure_topics(["trades"]) == []

    admin = kafka.admin()
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 2
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["retention.ms"].value == str(3_600_000)


def test_produce_consume_round_trip_keeps_keys_and_values(kafka: KafkaResource, unique: str) -> None:
    kafka.ensure_topics(["roundtrip"])
    topic = kafka.topic("roundtrip")
    sent = [(f"SYM{i % 3}".encode(), f'{{"n": {i}}}'.encode()) for i in range(50)]
    errors = []
    producer = kafka.producer()
    for key, value in sent:
        producer.produce(topic, value=value, key=key, on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(30) == 0
    assert errors == []

    consumer = kafka.consumer(f"test-{unique}")
    consumer.subscribe([topic])
    received = []
    while len(received) < len(sent):
        message = consumer.poll(10)
        assert message is not None, f"only {len(received)} of {len(sent)} messages arrived"
        assert message.error() is None
        received.append((message.key(), message.value(), message.partition(), message.offset()))
    consumer.commit(asynchronous=False, offsets=[
        TopicPartition(topic, p, max(o for _, _, pp, o in received if pp == p) + 1) for p in {r[2] for r in received}
    ])
    consumer.close()

    assert sorted((k, v) for k, v, _, _ in received) == sorted(sent)
    partitions_by_key = {}
    for key, _, partition, _ in received:
        partitions_by_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_by_key.values()), "one key must map to one partition"


def test_settings_tls_files_and_credentials_reach_every_client() -> None:
    settings = Settings.from_env({"PRICEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PRICEPIPE_KAFKA_SASL_MECHANISM":
                                  "SCRAM-SHA-512", "PRICEPIPE_KAFKA_USERNAME": "feed", "PRICEPIPE_KAFKA_PASSWORD": "pw",
                                  "PRICEPIPE_KAFKA_SSL_CA_FILE": "/certs/ca.pem",
                                  "PRICEPIPE_KAFKA_SSL_CHECK_HOSTNAME": "false"})
    config = kafka_cluster(settings).client_config()
    assert config["sasl.password"] == "pw" and config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["ssl.ca.location"] == "/certs/ca.pem"
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert "ssl.certificate.location" not in config


def test_a_plaintext_cluster_gets_no_tls_settings() -> None:
    config = kafka_cluster(Settings.from_env({})).client_config()
    assert config["security.protocol"] == "PLAINTEXT"
    assert not any(key.startswith(("ssl.", "sasl.")) for key in config)


def test_check_without_a_broker_fails_after_its_timeout_naming_the_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        started = time.monotonic()
        with pytest.raises(KafkaUnavailable, match=f"^no Kafka broker answered at 127.0.0.1:{port} within 1 s "
                                                   r"\(last: Connect to .* Connection refused"):
            KafkaCluster(bootstrap_servers=f"127.0.0.1:{port}").check(timeout_s=1)
    assert time.monotonic() - started < 5


def test_check_passes_when_the_broker_answers(kafka: KafkaResource) -> None:
    kafka.check(timeout_s=10)
