"""The local-server launcher: idempotent start, clear errors for the usual ways a start goes wrong."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from infra.local import certs, jvm, launcher, secure, server_types, servers
from pricepipe_assets.settings import Settings


def layout_for(tmp_path: Path, settings: Settings) -> launcher.Layout:
    return launcher.Layout(tmp_path / "state", settings.cache_dir)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_up_on_running_servers_is_a_no_op(kafka_server: None, cassandra_server: None, settings: Settings) -> None:
    layout = launcher.Layout(settings.state_dir, settings.cache_dir)
    pids_before = {p.name: launcher.read_pid(layout, p) for s in (servers.KAFKA, servers.CASSANDRA) for p in s.processes}
    lines: list[str] = []
    launcher.up(["kafka", "cassandra"], layout, lines.append)
    assert lines == [f"[infra] kafka: already running (pid {pids_before['kafka']})",
                     f"[infra] cassandra: already running (pid {pids_before['cassandra']})"]


def test_status_command_reports_serving_servers(kafka_server: None, cassandra_server: None) -> None:
    result = subprocess.run([sys.executable, "-m", "pricepipe_assets.cli.main", "infra", "status", "kafka", "cassandra"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:2] == ["kafka", "serving"]
    assert "rss" in result.stdout and "data " in result.stdout and "logs " in result.stdout


def test_a_taken_port_is_refused_with_a_message(tmp_path: Path, settings: Settings) -> None:
    port = free_port()
    server = server_types.Server("ghost", (server_types.Process("ghost", "does.not.Exist", 64, (port,)),), 10, (port,))
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with pytest.raises(launcher.InfraError, match=f"port {port} on 127.0.0.1 is already in use"):
            launcher._spawn(server, server.processes[0], layout_for(tmp_path, settings), launcher.find_java(), tmp_path)


def test_a_server_that_dies_during_start_shows_its_log(tmp_path: Path, settings: Settings) -> None:
    port = free_port()
    server = server_types.Server("ghost", (server_types.Process("ghost", "does.not.Exist", 64, (port,)),), 30, (port,))
    layout = layout_for(tmp_path, settings)
    for folder in (layout.data(server), layout.logs(server)):
        folder.mkdir(parents=True)
    child = launcher._spawn(server, server.processes[0], layout, launcher.find_java(), tmp_path)
    with pytest.raises(launcher.InfraError) as raised:
        launcher._wait_ready(server, layout, [child], started=time.monotonic())
    assert "ghost: ghost died during start" in str(raised.value)
    assert "does.not.Exist" in str(raised.value)  # the JVM's own words, from the log tail


def test_missing_java_17_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jvm, "_java_major", lambda java: 11)
    with pytest.raises(launcher.InfraError, match="Java 17 is required .* PRICEPIPE_JAVA_HOME"):
        launcher.find_java()


def test_unknown_server_name_is_refused() -> None:
    with pytest.raises(launcher.InfraError, match="unknown server 'zookeeper'"):
        launcher.resolve(["zookeeper"])


def test_down_leaves_alone_what_it_did_not_start(tmp_path: Path, settings: Settings) -> None:
    layout = layout_for(tmp_path, settings)
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        layout.pid_file(servers.KAFKA.processes[0]).parent.mkdir(parents=True)
        layout.pid_file(servers.KAFKA.processes[0]).write_text(str(stranger.pid))  # a pid that is not Kafka
        lines: list[str] = []
        launcher.down(["kafka"], layout, lines.append)
        assert lines == ["[infra] kafka: not running"]
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_server_serving_before_its_wait_began_counts_as_ready(tmp_path: Path, settings: Settings,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers are awaited one after another, so a quick one's deadline can pass while a slow one starts."""
    server = server_types.Server("ghost", (server_types.Process("ghost", "does.not.Exist", 64, (free_port(),)),), 30, ())
    child = subprocess.Popen(["sleep", "30"])
    try:
        long_ago = time.monotonic() - 2 * server.start_timeout_s
        monkeypatch.setattr(launcher, "is_ready", lambda _server: True)
        launcher._wait_ready(server, layout_for(tmp_path, settings), [child], started=long_ago)
        monkeypatch.setattr(launcher, "is_ready", lambda _server: False)
        with pytest.raises(launcher.InfraError, match="ghost did not answer within 30s"):
            launcher._wait_ready(server, layout_for(tmp_path, settings), [child], started=long_ago)
    finally:
        child.kill()
        child.wait()


def test_the_secure_broker_gets_its_tls_settings_appended_and_keeps_passwords_out_of_its_repr(
        tmp_path: Path, settings: Settings) -> None:
    layout = launcher.Layout(tmp_path / "secure", settings.cache_dir)
    secure.prepare(layout)
    broker = secure.catalog(layout)["kafka"]
    password = secure.password(layout, "kafka-pricepipe")
    target = tmp_path / "server.properties"
    servers._render(server_types.CONF / "kafka" / "server.properties.in", target, servers.template_values(broker, layout),
                    broker.fragments)
    rendered = target.read_text()
    assert "listeners=SASL_SSL://127.0.0.21:9092,CONTROLLER://127.0.0.21:9093" in rendered.splitlines()
    assert f'user_pricepipe="{password}"' in rendered and "ssl.keystore.type=PEM" in rendered
    settings_lines = [line for line in rendered.splitlines() if not line.startswith("#")]
    assert not [line for line in settings_lines if re.search("@[A-Z_]+@", line)]  # every value filled in
    assert password not in repr(broker)
    assert (layout.state_dir.stat().st_mode & 0o777, secure.password_file(layout, "kafka-pricepipe").stat().st_mode
            & 0o777) == (0o700, 0o600)


def test_the_secure_certificate_names_its_address_and_is_signed_by_the_local_ca(tmp_path: Path) -> None:
    ca = x509.load_pem_x509_certificate(certs.make_ca(tmp_path, "test CA").read_bytes())
    keystore = certs.issue(tmp_path, tmp_path / "node.pem", "node", ["127.0.0.21"])
    certificate = x509.load_pem_x509_certificate(keystore.read_bytes())  # the key comes first, then the certificate
    certificate.verify_directly_issued_by(ca)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(address) for address in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.21"]
    assert keystore.stat().st_mode & 0o777 == 0o600 and b"BEGIN PRIVATE KEY" in keystore.read_bytes()
