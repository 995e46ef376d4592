"""Real receivers for the alert channels: an HTTP server that records every POST (and can be made
to refuse them), and an SMTP server (aiosmtpd) that demands STARTTLS and a password."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from infra.local.certs import issue, make_ca

SMTP_USER = "alerts"
SMTP_PASSWORD = "s3cret-smtp"


@dataclass
class HttpReceiver:
    """Bodies POSTed to ``url`` in order; ``status`` is what it answers (503 plays a channel that is down)."""

    url: str
    bodies: list[Any] = field(default_factory=list)
    status: int = 200


def serve_http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            if receiver.status == 200:
                receiver.bodies.append(body)
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmtpReceiver:
    """Mails accepted by the server, each with the login that sent it; ``ca_file`` is what clients trust."""

    host: str
    port: int
    ca_file: Path
    mails: list[Message] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert session.ssl is not None, "a mail arrived over a connection without TLS"
        self.receiver.mails.append(message_from_bytes(envelope.original_content or b""))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_smtp(directory: Path) -> Iterator[SmtpReceiver]:
    """An SMTP server on a free port that requires STARTTLS before anything, and a login."""
    ca = make_ca(directory, "alerts test CA")
    server_pem = issue(directory, directory / "smtp.pem", "127.0.0.1", ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_pem)
    receiver = SmtpReceiver("127.0.0.1", free_port(), ca)

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        good = isinstance(data, LoginPassword) and (data.login, data.password) == (SMTP_USER.encode(),
                                                                                    SMTP_PASSWORD.encode())
        if good:
            receiver.logins.append(SMTP_USER)
        return AuthResult(success=good)

    controller = Controller(_Handler(receiver), hostname="127.0.0.1", port=receiver.port, tls_context=context,
                            require_starttls=True, authenticator=authenticate, auth_required=True,
                            auth_require_tls=True, ready_timeout=10)
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()
