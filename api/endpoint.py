"""An endpoint declared once: its handler, parameters, answer schema and caching.

From that one declaration come the Starlette route (parameters parsed and checked before the
handler runs, the answer cached when the endpoint is hot) and the endpoint's part of the OpenAPI
document, so the documentation cannot drift from what the code accepts.

The route is a plain ASGI app rather than a ``Request`` handler, and a kept answer never reaches
it: :class:`StoredAnswers` finds it by the request's raw path and query string and sends the
stored bytes before the request is routed or parsed. A handler may return :class:`Final` for an answer that can
never change (a closed day of candles): it is encoded once, kept in a bounded cache of its own and
served with a strong ETag, ``304 Not Modified`` for a client that has it, and a long
``Cache-Control``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api.answers import NO_STORE, Encoded, encode, if_none_match, respond, strong_etag
from api.cache import TtlCache
from api.context import ApiContext
from api.params import Param, parse_all
from pricepipe_assets.storage.api_keys import READ


@dataclass(frozen=True, slots=True)
class Final:
    """An answer that is the same for every later request with the same parameters."""

    answer: dict[str, Any] | bytes


# A handler answers a dict to encode, or bytes it encoded itself (JSON), or either as Final.
Handler = Callable[..., Awaitable[dict[str, Any] | bytes | Final]]


def query_params(query_string: bytes) -> dict[str, str]:
    """The query as Starlette reads it (latin-1, blanks kept, the last of repeated names wins)."""
    return dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)) if query_string else {}


@dataclass(frozen=True)
class Endpoint:
    path: str
    handler: Handler
    tag: str
    summary: str
    response: dict[str, Any]
    params: tuple[Param, ...] = ()
    description: str = ""
    cached: bool = False
    # The scope a key needs for it (api.auth), declared here so the OpenAPI document states the same.
    scope: str = READ

    @property
    def errors(self) -> tuple[int, ...]:
        """Every error status the endpoint can answer, from its declaration, so the document cannot
        promise less than the code does: 422 for a query parameter it does not declare (on every
        endpoint) or a declared one out of range, 503 while Cassandra is down, and 404 for an
        unknown symbol where it takes one."""
        takes_symbol = any(param.name == "symbol" for param in self.params)
        return (404, 422, 503) if takes_symbol else (422, 503)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request :class:`StoredAnswers` did not answer: parse, compute, encode and keep what can be kept."""
        context: ApiContext = scope["app"].state.context
        key = (scope["path"], scope["query_string"])
        cache = context.cache if self.cached and context.cache.enabled else None
        args = parse_all(self.params, scope["path_params"], query_params(scope["query_string"]))
        if cache is not None:
            encoded = await self._refresh(context, cache, key, args)
            await respond(send, 200, (*encoded.headers, (b"age", b"0"), (b"x-cache", b"MISS")), encoded.body)
            return
        answer = await self.handler(context, **args)
        if isinstance(answer, Final):
            body = _body(answer.answer)
            etag = strong_etag(body)
            encoded = Encoded.json(body, (b"etag", etag), (b"cache-control", context.final_cache_control))
            context.final.put(key, (encoded, etag), len(body))
            await _send_final(send, scope, encoded, etag)
        else:
            encoded = Encoded.json(_body(answer), NO_STORE)
            await respond(send, 200, encoded.headers, encoded.body)

    async def _refresh(self, context: ApiContext, cache: TtlCache, key: Any, args: dict[str, Any]) -> Encoded:
        """The hot answer computed once for every request that missed it meanwhile.

        When an entry expires, all the requests in flight miss it at the same moment; without this
        each would read Cassandra for the same answer, and the tail latency would be theirs.
        """
        waiting: asyncio.Future[Encoded] | None = cache.pending.get(key)
        if waiting is not None:
            return await waiting
        future: asyncio.Future[Encoded] = asyncio.get_running_loop().create_future()
        cache.pending[key] = future
        try:
            answer = await self.handler(context, **args)
            body = _body(answer.answer if isinstance(answer, Final) else answer)
            encoded = Encoded.json(body, (b"cache-control", f"max-age={cache.ttl_s:g}".encode()))
            cache.put(key, encoded)
            future.set_result(encoded)
            return encoded
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: no warning when no other request waited for it
            raise
        finally:
            del cache.pending[key]

    def route(self) -> Route:
        """The endpoint itself is the route's ASGI app (an instance, so Starlette wraps it in no ``Request``)."""
        return Route(self.path, self, methods=["GET"], name=self.handler.__name__)


def _body(answer: dict[str, Any] | bytes) -> bytes:
    return answer if isinstance(answer, bytes) else encode(answer)


async def _send_final(send: Send, scope: Scope, encoded: Encoded, etag: bytes) -> None:
    if if_none_match(scope["headers"], etag):
        await respond(send, 304, [header for header in encoded.headers if header[0] in (b"etag", b"cache-control")])
    else:
        await respond(send, 200, encoded.headers, encoded.body)


class StoredAnswers:
    """Sends a kept answer (a final one, or a hot one within its time to live) before the request
    is routed; everything else goes on to the app.

    Answers are kept by raw path and query string, which name one endpoint's one answer, so a hit
    needs neither routing nor parameters: it costs a dictionary lookup and two ASGI messages, and
    the hot endpoints serve at nearly the rate of a constant Starlette route. It sits inside the
    API key check, so a kept answer is never sent to a client without a key of the endpoint's scope.
    """

    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            key = (scope["path"], scope["query_string"])
            final = self.context.final.get(key)
            if final is not None:
                await _send_final(send, scope, *final)
                return
            cache = self.context.cache
            hit = cache.get(key) if cache.enabled else None
            if hit is not None:
                encoded, age = hit
                await respond(send, 200, (*encoded.headers, (b"age", str(int(age)).encode()), (b"x-cache", b"HIT")),
                              encoded.body)
                return
        await self.app(scope, receive, send)
