"""A local stand-in for data.binance.vision: a folder with the dumps layout served over real HTTP.

The dumps client is tested through an actual socket (status codes, streaming, timeouts) rather than
a mocked session, so what passes here is what runs against the real site or a mirror.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType


class _Handler(SimpleHTTPRequestHandler):
    """Serves files and records each request's path and status instead of printing it."""

    server: _MirrorServer

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        with self.server.lock:
            self.server.requests.append((self.path, int(code)))

    def log_message(self, format: str, *args: object) -> None:
        """Silent: pytest output stays readable; requests are in ``BinanceMirror.requests``."""


class _MirrorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.requests: list[tuple[str, int]] = []
        self.lock = threading.Lock()


class BinanceMirror:
    """Serves ``root`` on 127.0.0.1 at an ephemeral port from a background thread while in a ``with`` block."""

    def __init__(self, root: Path) -> None:
        self._server = _MirrorServer(root)
        self._thread = threading.Thread(target=self._server.serve_forever, name="binance-mirror", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[str, int]]:
        """(path, HTTP status) of every request so far, in arrival order."""
        with self._server.lock:
            return list(self._server.requests)

    def __enter__(self) -> BinanceMirror:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
