"""The HTTP protocol the API is served with: uvicorn's httptools protocol, bounded where uvicorn is not.

uvicorn bounds neither the size of a request's line and headers nor the time a client may take
to send them. While one client sent a 300 MB header (for almost three minutes), ``/health`` took
20 s or more or did not answer within 30 s: httptools joins the pieces of a header value as they
arrive, copying what it has each time, on the worker's event loop. A client that sends its
headers a byte at a time, or nothing at all, keeps its connection for as long as it likes, since
uvicorn's only timer (keep-alive) starts after a response and any byte stops it. ASGI middleware
cannot help: the app sees a request only once its headers are complete.

So this protocol refuses, in the API's JSON error shape and then closes the connection:

- a request line (path and query) over ``MAX_URL_BYTES``: 414;
- a request line and headers over ``MAX_HEAD_BYTES``: 431;
- a request not received whole within ``REQUEST_TIMEOUT_S`` of its first byte (of the connection
  opening, for the first request): 408;
- anything the parser rejects (a malformed request line or header, a path that is not ASCII): 400.

Once a request is received, its response may take as long as it needs (the live stream never
ends). Serve the API with ``uvicorn api.app:app --http api.server:GuardedHttpProtocol``
(``UVICORN_HTTP``).
"""

from __future__ import annotations

import asyncio
import http

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.answers import encode

# A URL of the API is a symbol and a few dates: 8 KiB is what nginx accepts in one header buffer.
MAX_URL_BYTES = 8 * 1024
# Room for the cookies a browser may send to any service on localhost, at twice h11's default.
MAX_HEAD_BYTES = 32 * 1024
# Generous for any real client on any network (Go servers commonly allow 5-10 s for the headers).
REQUEST_TIMEOUT_S = 10.0
MALFORMED = "malformed HTTP request: the request line or a header does not follow HTTP/1.1 (RFC 9112)"
# What ``--http`` of uvicorn's command line takes for this protocol.
UVICORN_HTTP = "api.server:GuardedHttpProtocol"


class Refused(Exception):
    """Raised inside a parser callback, which stops the parser; uvicorn then answers 400 through
    :meth:`GuardedHttpProtocol.send_400_response`, which sends the refusal recorded instead."""


def refusal(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 answer in the API's error shape, for a request no app will see."""
    body = encode({"error": message, "status": status})
    head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
    head += [name + b": " + value for name, value in default_headers]
    head += [b"content-type: application/json", b"content-length: " + str(len(body)).encode(), b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on the size of a request head and the time to send
    a request; the limits are class attributes so that a test can shorten them."""

    max_url_bytes = MAX_URL_BYTES
    max_head_bytes = MAX_HEAD_BYTES
    request_timeout_s = REQUEST_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.reading_head = True
        self.head_bytes = 0
        self.refused: tuple[int, str] | None = None
        self.discarding = False
        self.deadline: asyncio.TimerHandle | None = None
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Bytes are counted before the parser sees them, so that a head over the limit costs at most
        the limit and one read of the socket, not whatever the client cares to send."""
        if self.discarding:
            return
        if self.deadline is None:
            self._arm()
        if self.reading_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.reading_head and self.head_bytes > self.max_head_bytes and not self.discarding:
            self.logger.warning("refused a request head over %d bytes from %s", self.max_head_bytes, self.client)
            self._refuse(431, f"the request line and headers exceed {self.max_head_bytes // 1024} KiB")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_url_bytes:
            self.refused = (414, f"the path and query exceed {self.max_url_bytes // 1024} KiB")
            raise Refused

    def on_headers_complete(self) -> None:
        """A head that arrived in one read is measured here, since no later read is counted for it."""
        self.reading_head = False
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > self.max_head_bytes:
            self.refused = (431, f"the request line and headers exceed {self.max_head_bytes // 1024} KiB")
            raise Refused
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self.reading_head = True
        self.head_bytes = 0

    def handle_websocket_upgrade(self) -> None:
        """The connection is the WebSocket protocol's from here on, and so are its timers."""
        self._disarm()
        super().handle_websocket_upgrade()

    def send_400_response(self, msg: str) -> None:
        """What uvicorn calls for any request its parser rejected, ours included."""
        status, message = self.refused or (400, MALFORMED)
        self.refused = None
        self._refuse(status, message)

    def _refuse(self, status: int, message: str | None) -> None:
        """Read nothing more from this connection, answer (when there is a ``message``) and close.

        While the app still answers a request of this connection, an answer of ours would interleave
        with its bytes: then the app's answer goes out whole and the connection closes after it.
        """
        self.discarding = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        if message is not None:
            self.transport.write(refusal(status, message, self.server_state.default_headers))
        self.transport.close()

    def _arm(self) -> None:
        self.deadline = self.loop.call_later(self.request_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        message = f"the request was not received whole within {self.request_timeout_s:g} s"
        if self.reading_head:
            self.logger.info("closed a connection from %s that sent no whole request head in %g s", self.client,
                             self.request_timeout_s)
        # A body still arriving comes after an answer the app may already have sent: no room for another.
        self._refuse(408, message if self.reading_head else None)
