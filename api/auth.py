"""The optional API key: with ``PRICEPIPE_API_KEY`` set, every request must carry it.

Headers are the normal way (``X-API-Key``); ``?api_key=`` exists for what cannot send headers:
the browser's EventSource of the chart page's live updates, and a page opened from a link.
Static files (scripts and styles of the chart and docs pages) hold no data and stay public, so
those pages can load them with plain ``<script>`` tags.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response

PUBLIC_PREFIXES = ("/static/", "/docs/assets/")


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    def _given(self, scope: Scope) -> bytes:
        for name, value in scope.get("headers", ()):
            if name == b"x-api-key":
                return value
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key")
        return values[0].encode() if values else b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        if not hmac.compare_digest(self._given(scope), self.key):
            response = error_response(401, "missing or wrong API key: send it as the X-API-Key header "
                                           "(or ?api_key= where headers cannot be set)")
            response.headers["WWW-Authenticate"] = "X-API-Key"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
