"""Nothing exposed, executed or leaked by default: the compose file publishes every port on
loopback only, no Kubernetes object opens a node's port or network, no password, key or token is
written into any deployment file, and the local servers run only jars whose SHA-256 is pinned in
the repository. Each check also runs on a bad sample, so it can fail."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.local import jvm
from infra.local.server_types import InfraError

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE = INFRA / "docker-compose.yml"
MANIFESTS = sorted((INFRA / "k8s").glob("*.yaml"))
# What a user puts in infra/.env before `docker compose up`; every required variable of the file.
REQUIRED_ENV = {"DAGSTER_POSTGRES_PASSWORD": "s3cretvalue"}
# A word of the variable's name, so PRICEPIPE_KEYSPACE is not a key.
SECRET_NAME = re.compile(r"(?:^|_)(?:PASSWORD|PASSWD|SECRET|KEY|TOKEN)(?:_|$)", re.IGNORECASE)
COMPOSE_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
URL_PASSWORD = re.compile(r"://[^/:@\s]+:(?P<password>[^@\s]+)@")
LOOPBACK = "127.0.0.1"


class MissingVariable(ValueError):
    """A variable compose requires (``${NAME:?message}``) is not set."""


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """``text`` as compose reads it with ``environ``: ``${NAME}``, ``${NAME:-default}``,
    ``${NAME-default}``, ``${NAME:?message}`` and ``${NAME?message}``."""
    def value(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        present = name in environ and (environ[name] != "" or not op.startswith(":"))
        if present:
            return environ[name]
        if op.endswith("?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg
    return COMPOSE_VARIABLE.sub(value, text)


def compose_file(environ: Mapping[str, str] = REQUIRED_ENV, text: str | None = None) -> dict[str, Any]:
    """The compose file as ``docker compose`` would run it with ``environ``."""
    return yaml.safe_load(interpolate(COMPOSE.read_text() if text is None else text, environ))


def _documents(paths: list[Path]) -> list[dict[str, Any]]:
    return [document for path in paths for document in yaml.safe_load_all(path.read_text()) if document]


def _mappings(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a YAML tree, the tree itself first."""
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from _mappings(child)
    elif isinstance(node, list):
        for child in node:
            yield from _mappings(child)


def _is_secret_name(name: str) -> bool:
    """A variable that holds a secret itself; a path to a file holding one (``*_FILE``) is not."""
    return bool(SECRET_NAME.search(name)) and not name.upper().endswith("_FILE")


def _literal_secret(value: Any) -> bool:
    """A secret written out, rather than a compose variable or nothing."""
    return isinstance(value, str) and value.strip() != "" and "${" not in value


def _environment(spec: dict[str, Any]) -> dict[str, Any]:
    environment = spec.get("environment") or {}
    if isinstance(environment, list):
        return dict(entry.split("=", 1) if "=" in entry else (entry, None) for entry in environment)
    return environment


def _host_ip(port: str | dict[str, Any]) -> str | None:
    """The host address a compose port is published on; None means every interface."""
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).split(":")
    return parts[0] if len(parts) == 3 else None


def compose_exposures(raw_text: str, environ: Mapping[str, str] = REQUIRED_ENV) -> list[str]:
    """What the compose file ``raw_text`` opens to other machines or writes out in clear."""
    found = []
    for name, spec in compose_file(environ, raw_text)["services"].items():
        for port in spec.get("ports", []):
            if _host_ip(port) != LOOPBACK:
                found.append(f"{name}: port {port} is published on all interfaces")
        if spec.get("network_mode") == "host":
            found.append(f"{name}: shares the host's network")
    for name, spec in yaml.safe_load(raw_text)["services"].items():
        for variable, value in _environment(spec).items():
            if _is_secret_name(variable) and _literal_secret(value):
                found.append(f"{name}: {variable} is written out")
            password = URL_PASSWORD.search(str(value or ""))
            if password and _literal_secret(password["password"]):
                found.append(f"{name}: {variable} carries a password written out")
    return found


def kubernetes_exposures(documents: list[dict[str, Any]]) -> list[str]:
    """What the manifests and Helm values open on a node or to the outside, or write out in clear."""
    found = []
    for document in documents:
        where = f"{document.get('kind', 'values')} {document.get('metadata', {}).get('name', '')}".strip()
        if document.get("kind") == "Secret" and (document.get("data") or document.get("stringData")):
            found.append(f"{where}: a Secret with its values written out")
        if document.get("kind") == "ConfigMap":
            found += [f"{where}: {key} in a ConfigMap" for key in document.get("data", {}) if _is_secret_name(key)]
        for mapping in _mappings(document):
            if mapping.get("hostNetwork") is True:
                found.append(f"{where}: hostNetwork")
            if "hostPort" in mapping:
                found.append(f"{where}: hostPort {mapping['hostPort']}")
            if mapping.get("type") in ("LoadBalancer", "NodePort"):
                found.append(f"{where}: a Service of type {mapping['type']}")
            if isinstance(mapping.get("name"), str) and "value" in mapping and _is_secret_name(mapping["name"]) \
                    and _literal_secret(mapping["value"]):
                found.append(f"{where}: {mapping['name']} is written out")
            if mapping is not document.get("data"):  # a ConfigMap's or Secret's, checked above
                found += [f"{where}: {key} is written out" for key, value in mapping.items()
                          if "password" in key.lower() and _literal_secret(value)]
    return found


def test_the_compose_file_publishes_every_port_on_loopback_and_writes_no_secret() -> None:
    assert compose_exposures(COMPOSE.read_text()) == []
    published = [port for spec in compose_file()["services"].values() for port in spec.get("ports", [])]
    assert sorted(published) == ["127.0.0.1:3000:3000", "127.0.0.1:8000:8000", "127.0.0.1:8080:8080",
                                 "127.0.0.1:9870:9870"]


def test_the_compose_check_catches_ports_on_all_interfaces_and_written_out_secrets() -> None:
    bad = """
services:
  ui: {image: x, ports: ["3000:3000", "127.0.0.1:8000:8000", {target: 9000, published: 9000}]}
  host: {image: x, network_mode: host}
  db:
    image: x
    environment:
      POSTGRES_PASSWORD: dagster
      API_TOKEN: ${API_TOKEN:?set it}
      URL: postgresql://dagster:dagster@db:5432/dagster
"""
    assert compose_exposures(bad, {"API_TOKEN": "t"}) == [
        "ui: port 3000:3000 is published on all interfaces",
        "ui: port {'target': 9000, 'published': 9000} is published on all interfaces",
        "host: shares the host's network",
        "db: POSTGRES_PASSWORD is written out",
        "db: URL carries a password written out",
    ]


def test_compose_refuses_to_start_without_the_postgres_password_and_publishes_the_api_only_when_asked() -> None:
    with pytest.raises(MissingVariable, match="DAGSTER_POSTGRES_PASSWORD"):
        compose_file({})
    services = compose_file({**REQUIRED_ENV, "PRICEPIPE_API_PUBLISH": "0.0.0.0"})["services"]
    assert services["api"]["ports"] == ["0.0.0.0:8000:8000"]
    assert services["dagster-webserver"]["ports"] == ["127.0.0.1:3000:3000"]  # never with the API
    postgres_url = services["dagster-instance"]["environment"]["PRICEPIPE_DAGSTER_POSTGRES_URL"]
    assert postgres_url == f"postgresql://dagster:{REQUIRED_ENV['DAGSTER_POSTGRES_PASSWORD']}@postgres:5432/dagster"


def test_no_kubernetes_object_opens_a_node_port_or_writes_a_secret() -> None:
    assert MANIFESTS, "no manifests found"
    assert kubernetes_exposures(_documents(MANIFESTS)) == []


def test_the_kubernetes_check_catches_node_ports_host_networking_and_written_out_secrets() -> None:
    bad = yaml.safe_load_all("""
kind: Service
metadata: {name: api}
spec: {type: LoadBalancer}
---
kind: Deployment
metadata: {name: api}
spec:
  template:
    spec:
      hostNetwork: true
      containers:
        - ports: [{containerPort: 8000, hostPort: 8000}]
          env:
            - {name: PRICEPIPE_API_KEY, value: abc}
            - {name: PRICEPIPE_KAFKA_PASSWORD, valueFrom: {secretKeyRef: {name: s, key: k}}}
            - {name: PRICEPIPE_KAFKA_SSL_KEY_FILE, value: /etc/pricepipe/client.key}
            - {name: PRICEPIPE_KEYSPACE, value: pricepipe}
---
kind: ConfigMap
metadata: {name: settings}
data: {PRICEPIPE_CASSANDRA_PASSWORD: abc}
---
postgresql: {postgresqlPassword: change-me}
""")
    assert kubernetes_exposures(list(bad)) == [
        "Service api: a Service of type LoadBalancer",
        "Deployment api: hostNetwork",
        "Deployment api: hostPort 8000",
        "Deployment api: PRICEPIPE_API_KEY is written out",
        "ConfigMap settings: PRICEPIPE_CASSANDRA_PASSWORD in a ConfigMap",
        "values: postgresqlPassword is written out",
    ]


def test_the_api_pod_needs_its_key_from_a_required_secret_and_is_probed_without_one() -> None:
    (api,) = [document for document in _documents(MANIFESTS)
              if document.get("kind") == "Deployment" and document["metadata"]["name"] == "pricepipe-api"]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    key = {variable["name"]: variable for variable in container["env"]}["PRICEPIPE_API_KEY"]["valueFrom"]
    assert key["secretKeyRef"]["key"] == "PRICEPIPE_API_KEY" and not key["secretKeyRef"].get("optional")
    assert not any(source.get("secretRef", {}).get("optional") for source in container["envFrom"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/livez", probe
    optional = [mapping for mapping in _mappings(_documents(MANIFESTS)) if mapping.get("optional") is True]
    assert optional == []  # no pod starts without the Secret it names


@pytest.fixture()
def pinned_jars(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of two jars and the list pinning them."""
    folder, pinned = tmp_path / "lib", tmp_path / "jars.sha256"
    folder.mkdir()
    (folder / "a.jar").write_bytes(b"PK a")
    (folder / "b.jar").write_bytes(b"PK b")
    jvm.pin(folder, pinned)
    return folder, pinned


def test_a_jar_that_differs_from_its_pinned_checksum_is_refused(pinned_jars: tuple[Path, Path]) -> None:
    folder, pinned = pinned_jars
    jvm.verify_jars(folder, pinned)
    (folder / "b.jar").write_bytes(b"PK evil")  # replaced after it was verified once
    with pytest.raises(InfraError, match=r"b\.jar has SHA-256 .* pins .*refusing to run it.*infra\.local\.jvm pin"):
        jvm.verify_jars(folder, pinned)


def test_a_jar_that_is_not_pinned_or_a_pinned_jar_that_is_missing_is_refused(pinned_jars: tuple[Path, Path]) -> None:
    folder, pinned = pinned_jars
    (folder / "c.jar").write_bytes(b"PK c")
    with pytest.raises(InfraError, match=r"c\.jar is not in .*jars\.sha256"):
        jvm.verify_jars(folder, pinned)
    (folder / "c.jar").unlink()
    (folder / "a.jar").unlink()
    with pytest.raises(InfraError, match=r"lacks a\.jar"):
        jvm.verify_jars(folder, pinned)


def test_verified_jars_are_not_hashed_again_on_the_next_start(pinned_jars: tuple[Path, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder, pinned = pinned_jars
    jvm.verify_jars(folder, pinned)
    hashed: list[str] = []
    real = jvm._sha256
    monkeypatch.setattr(jvm, "_sha256", lambda path: hashed.append(path.name) or real(path))
    jvm.verify_jars(folder, pinned)
    assert hashed == ["jars.sha256"]  # the fingerprint only: no jar read


def test_maven_fails_on_a_bad_checksum_and_what_it_copied_is_verified_before_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []

    def maven(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        (output,) = [argument.split("=", 1)[1] for argument in command if argument.startswith("-DoutputDirectory=")]
        Path(output).mkdir(parents=True)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(jvm.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(jvm.subprocess, "run", maven)
    with pytest.raises(InfraError, match="lacks .*kafka_2.13-.*jars.sha256"):  # Maven "copied" nothing
        jvm.classpath_dir(tmp_path, "kafka")
    (command,) = commands
    assert "--strict-checksums" in command
