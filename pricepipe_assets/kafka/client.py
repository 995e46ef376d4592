"""Kafka access for assets, sensors and the feed: client factories and topic creation."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from pricepipe_assets.settings import Settings, path_text

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka import KafkaError as ClientError
    from confluent_kafka.admin import AdminClient

    from pricepipe_assets.kafka.publisher import Publisher


class KafkaError(RuntimeError):
    """Kafka refused an administrative request; the message names the topic and the broker's reason."""


class KafkaUnavailable(KafkaError):
    """No broker answered, or the brokers refused pricepipe's credentials or certificate; the message
    names the bootstrap servers and the reason in one line."""


# What librdkafka puts around a connection error's reason: "sasl_ssl://host:9092/bootstrap: " before,
# "(after 348ms in state AUTH_REQ)" after.
_TIMING = re.compile(r"\s*\(after \d+ms in state .*\)\s*$")
_BROKER = re.compile(r"^\S+:\d+/\S+: ")


class KafkaCluster(BaseModel):
    """One Kafka cluster: producers are idempotent, consumers commit only when told to.

    A plain pydantic model, so code outside Dagster uses it as it is; the Dagster resource
    (``pricepipe_assets.defs.resources.kafka``) is the same model with Dagster's resource behaviour."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    username: str = ""
    password: str = ""
    # PEM files for SSL and SASL_SSL; empty: the system's CAs, no client certificate.
    ssl_ca_file: str = ""
    ssl_cert_file: str = ""
    ssl_key_file: str = ""
    ssl_check_hostname: bool = True
    topic_partitions: int = 3
    replication_factor: int = 1
    # None: the broker's own min.insync.replicas.
    min_insync_replicas: int | None = None
    retention_hours: int = 168

    def client_config(self) -> dict[str, Any]:
        """Connection settings shared by every client; credentials only when configured."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.username:
            config["sasl.username"] = self.username
            config["sasl.password"] = self.password
        if "SSL" in self.security_protocol.upper():
            config["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_check_hostname else "none"
            for key, path in (("ssl.ca.location", self.ssl_ca_file), ("ssl.certificate.location", self.ssl_cert_file),
                              ("ssl.key.location", self.ssl_key_file)):
                if path:
                    config[key] = path
        return config

    def producer(self, **overrides: Any) -> Producer:
        """An idempotent producer: retries never duplicate or reorder a partition's messages."""
        from confluent_kafka import Producer

        config = {
            **self.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 20,
            "message.timeout.ms": 60_000,
            **overrides,
        }
        return Producer(config)

    def topic(self, name: str) -> str:
        """The full name of a contract topic on this cluster (with the configured prefix)."""
        return self.topic_prefix + name

    def consumer_group(self, asset: str) -> str:
        """The group an asset commits its progress in, the runs' and the stream worker's alike. Each
        asset has its own, so one asset's failure never skips data for another; the topic prefix
        comes first, so two deployments sharing a cluster never share a group (a stream worker's
        group is a membership, and one deployment's members would block the other's commits)."""
        return f"{self.topic_prefix}pricepipe.{asset}"

    def publisher(self, **producer_overrides: Any) -> Publisher:
        """A :class:`Publisher` over a new idempotent producer, the contract's topics created first.

        Brokers are expected to refuse auto-creation (it would pick the broker's defaults for
        partitions and retention), so every writer makes sure the topics exist with pricepipe's.
        """
        from pricepipe_assets.contract.topics import ALL_TOPICS
        from pricepipe_assets.kafka.publisher import Publisher

        self.ensure_topics(ALL_TOPICS)
        return Publisher(functools.partial(self.producer, **producer_overrides), self.topic_prefix)

    def consumer(self, group_id: str, **overrides: Any) -> Consumer:
        """A consumer that never commits on its own: offsets are committed after the write they cover."""
        from confluent_kafka import Consumer

        config = {
            **self.client_config(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **overrides,
        }
        return Consumer(config)

    def admin(self) -> AdminClient:
        from confluent_kafka.admin import AdminClient

        return AdminClient(self.client_config())

    def check(self, timeout_s: float = 30.0) -> None:
        """Raise :class:`KafkaUnavailable` unless a broker answers a metadata request within ``timeout_s``.

        librdkafka retries a refused login or an untrusted certificate forever, so a client would
        only hang; the check fails at the first such refusal instead (within a second or so)."""
        self._checked_admin(timeout_s)

    def _checked_admin(self, timeout_s: float) -> AdminClient:
        """An admin client whose broker has answered once, refusals reported as they happen."""
        from confluent_kafka import KafkaError as ClientError
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        refusals: list[ClientError] = []
        transport: list[ClientError] = []

        def on_error(error: ClientError) -> None:
            if error.code() in (ClientError._AUTHENTICATION, ClientError._SSL):
                refusals.append(error)
            elif error.code() == ClientError._TRANSPORT:
                transport.append(error)

        # Its errors become the exception below: librdkafka's own log lines would only repeat them.
        config: dict[str, Any] = {**self.client_config(), "error_cb": on_error, "log_level": 0}
        admin = AdminClient(config)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                admin.list_topics(timeout=min(0.5, max(deadline - time.monotonic(), 0.01)))
                return admin
            except KafkaException:
                admin.poll(0)  # serves error_cb
            if refusals:
                raise KafkaUnavailable(self._refusal(refusals[0])) from None
            if time.monotonic() >= deadline:
                reason = f" (last: {_reason(transport[-1])})" if transport else ""
                raise KafkaUnavailable(f"no Kafka broker answered at {self.bootstrap_servers} within "
                                       f"{timeout_s:.0f} s{reason}") from None

    def _refusal(self, error: ClientError) -> str:
        from confluent_kafka import KafkaError as ClientError

        where = f"Kafka at {self.bootstrap_servers}"
        if error.code() == ClientError._AUTHENTICATION:
            return (f"{where} refused user {self.username!r}: SASL authentication failed ({self.sasl_mechanism or 'PLAIN'}); "
                    "check PRICEPIPE_KAFKA_USERNAME and PRICEPIPE_KAFKA_PASSWORD")
        if "certificate verify failed" in error.str():
            trusted = (f"PRICEPIPE_KAFKA_SSL_CA_FILE ({self.ssl_ca_file})" if self.ssl_ca_file
                       else "a CA this system trusts (set PRICEPIPE_KAFKA_SSL_CA_FILE to the broker's CA)")
            named = " or does not name the address connected to" if self.ssl_check_hostname else ""
            return f"{where}: the broker's certificate is not signed by {trusted}{named}"
        return f"{where}: the TLS handshake failed: {_reason(error)}"

    @staticmethod
    def ping(admin: AdminClient, timeout_s: float = 2.0) -> bool:
        """Whether a broker answers ``admin``'s metadata request now (a client kept for asking
        again, so that polling opens no connections)."""
        from confluent_kafka import KafkaException

        try:
            return bool(admin.list_topics(timeout=timeout_s).brokers)
        except KafkaException:
            return False

    def ensure_topics(self, names: Iterable[str], timeout_s: float = 30) -> list[str]:
        """Create the topics that do not exist yet with the configured partitions, replication and retention.

        ``names`` are contract names; the configured prefix is added. Returns the full names created; existing topics are left as they are (their partition count is
        never changed behind a running consumer's back). Returns once the broker asked lists every
        partition of the created topics: on a multi-broker cluster the metadata reaches the other
        brokers a moment after the controller says yes, and a consumer assigned before then sees none.
        Brokers that refuse the credentials or the certificate raise :class:`KafkaUnavailable` at
        once (see :meth:`check`): every writer and the stream worker start here.
        """
        from confluent_kafka import KafkaException
        from confluent_kafka.cimpl import NewTopic

        admin = self._checked_admin(timeout_s)
        existing = set(admin.list_topics(timeout=timeout_s).topics)
        config = {"retention.ms": str(self.retention_hours * 3_600_000)}
        if self.min_insync_replicas:
            config["min.insync.replicas"] = str(self.min_insync_replicas)
        missing = [
            NewTopic(self.topic(name), num_partitions=self.topic_partitions, replication_factor=self.replication_factor,
                     config=config)
            for name in dict.fromkeys(names)
            if self.topic(name) not in existing
        ]
        if not missing:
            return []
        created = []
        for name, future in admin.create_topics(missing, operation_timeout=timeout_s, request_timeout=timeout_s).items():
            try:
                future.result()
            except KafkaException as error:
                if error.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another process won the race: fine
                    raise KafkaError(f"could not create topic {name!r}: {error.args[0].str()}") from None
                continue
            created.append(name)
        self._await_metadata(admin, created, timeout_s)
        return created

    def _await_metadata(self, admin: AdminClient, names: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while names:
            topics = admin.list_topics(timeout=timeout_s).topics
            names = [name for name in names
                     if name not in topics or len(topics[name].partitions) < self.topic_partitions]
            if names and time.monotonic() > deadline:
                raise KafkaError(f"topics {names} were created but are not in the metadata after {timeout_s:.0f} s")
            if names:
                time.sleep(0.1)


def _reason(error: ClientError) -> str:
    """librdkafka's words for a connection error, without the broker's address and the timing it adds."""
    return _TIMING.sub("", _BROKER.sub("", error.str()))


def kafka_cluster(settings: Settings) -> KafkaCluster:
    """The cluster the settings name, with their credentials and TLS files."""
    return KafkaCluster(bootstrap_servers=settings.kafka_bootstrap, topic_prefix=settings.topic_prefix,
                        security_protocol=settings.kafka_security_protocol,
                        sasl_mechanism=settings.kafka_sasl_mechanism, username=settings.kafka_username,
                        password=settings.kafka_password, ssl_ca_file=path_text(settings.kafka_ssl_ca_file),
                        ssl_cert_file=path_text(settings.kafka_ssl_cert_file),
                        ssl_key_file=path_text(settings.kafka_ssl_key_file),
                        ssl_check_hostname=settings.kafka_ssl_check_hostname,
                        topic_partitions=settings.kafka_topic_partitions,
                        replication_factor=settings.kafka_replication_factor,
                        min_insync_replicas=settings.kafka_min_insync_replicas,
                        retention_hours=settings.kafka_retention_hours)
