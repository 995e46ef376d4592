"""API keys on every route that needs one: 401 without a key, 403 without the route's scope, 429 over the key's rate.

With ``PRICEPIPE_API_KEY`` or ``PRICEPIPE_API_AUTH`` set, each route says what it takes
(:data:`Access`): ``PUBLIC`` (liveness, the login step, and files that hold no data), ``ANY_KEY``
(health and the API's own documentation) or a scope of
:data:`pricepipe_assets.storage.api_keys.SCOPES`. A key comes in the ``X-API-Key`` header, or as
the session cookie of ``POST /login`` from a browser, whose ``EventSource`` cannot send headers.

A key never goes in a URL: servers, proxies and browsers keep URLs (uvicorn's access log writes
every one). A request with ``?api_key=`` is refused with a 400 that says how to send it instead,
and :class:`RedactedQuery` keeps the value out of the access log.

Every answer given to a key is ``Cache-Control: private`` with ``Vary: X-API-Key, Cookie``, so no
shared cache hands it to someone without the key. This middleware sits outside
:class:`api.endpoint.StoredAnswers`, so a kept answer too is sent only to a key with its scope.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote_plus

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_response
from api.keys import COOKIE, KeyRing
from api.ratelimit import RateLimits
from pricepipe_assets.storage.api_keys import ApiKey

PUBLIC = "public"
ANY_KEY = "any key"
# A route and what it takes: PUBLIC, ANY_KEY or a scope.
Access = tuple[BaseRoute, str]
URL_KEY = "api_key"
HOW = (f"send the key as the X-API-Key header, or from a browser log in first (POST /login with that header sets "
       f"the session cookie {COOKIE})")
VARY = (b"vary", b"X-API-Key, Cookie")
PRIVATE: dict[bytes, bytes] = {}  # a Cache-Control value -> its private form, made once per value


def _private(value: bytes) -> bytes:
    made = PRIVATE.get(value)
    if made is None:
        made = PRIVATE[value] = (value.replace(b"public", b"private") if b"public" in value
                                 else value if b"private" in value else b"private, " + value)
    return made


def _private_headers(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The answer's headers, cacheable only by the client that has the key (``no-store`` when it said nothing)."""
    cache_control = next((value for name, value in headers if name == b"cache-control"), b"no-store")
    return [*(header for header in headers if header[0] != b"cache-control"),
            (b"cache-control", _private(cache_control)), VARY]


def _has_url_key(query_string: bytes) -> bool:
    return bool(query_string) and any(
        name.lower() == URL_KEY for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


class AuthMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyRing, rules: Sequence[Access]) -> None:
        self.app = app
        self.keys = keys
        self.rules = rules
        self.limits = RateLimits()

    def _access(self, scope: Scope) -> str:
        """What the route the request is for takes; ANY_KEY for one no route serves (a 404 only with a key)."""
        for route, access in self.rules:
            if route.matches(scope)[0] != Match.NONE:
                return access
        return ANY_KEY

    async def _refusal(self, scope: Scope) -> tuple[ApiError | None, ApiKey | None]:
        if _has_url_key(scope["query_string"]):
            return ApiError(400, f"an API key never goes in a URL (servers and browsers keep those): {HOW}"), None
        access = self._access(scope)
        if access == PUBLIC:
            return None, None
        key = await self.keys.identify(scope)
        if key is None:
            return ApiError(401, f"missing, wrong or revoked API key (or session): {HOW}",
                            {"WWW-Authenticate": "X-API-Key"}), None
        wait_s = self.limits.take(key)
        if wait_s:
            return ApiError(429, f"API key {key.name!r} exceeds its rate limit of {key.rate}; try again in {wait_s} s",
                            {"Retry-After": str(wait_s)}), key
        if access != ANY_KEY and access not in key.scopes:
            return ApiError(403, f"API key {key.name!r} lacks the scope {access!r} this route needs (it has: "
                                 f"{', '.join(sorted(key.scopes))})"), key
        return None, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            refused, key = await self._refusal(scope)
        except ApiError as error:  # the keys could not be read
            refused, key = error, None
        if refused is not None:
            response = error_response(refused.status, refused.message, {**refused.headers, "Cache-Control": "no-store"})
            await response(scope, receive, send)
            return
        if key is None:
            await self.app(scope, receive, send)
            return

        async def send_private(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _private_headers(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, send_private)


def redact_query(text: str) -> str:
    """``text`` with the value of every ``api_key`` of its query replaced, however its name is spelled."""
    path, mark, query = text.partition("?")
    if not mark:
        return text
    pairs = [pair.split("=", 1)[0] + "=[redacted]" if unquote_plus(pair.split("=", 1)[0]).lower() == URL_KEY else pair
             for pair in query.split("&")]
    return f"{path}?{'&'.join(pairs)}"


class RedactedQuery(logging.Filter):
    """Keeps the value of ``?api_key=`` out of the access log, which writes each request's path and query.

    The 400 such a request gets is an access log line like any other; this rewrites the record's
    arguments (not its format), so it works with whatever format the log is configured with.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, str) and "?" in arg for arg in record.args):
            record.args = tuple(redact_query(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def redact_access_log() -> None:
    """Install :class:`RedactedQuery` on uvicorn's access logger, once per process."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactedQuery) for existing in access.filters):
        access.addFilter(RedactedQuery())
