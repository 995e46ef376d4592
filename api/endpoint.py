"""An endpoint declared once: its handler, parameters, answer schema and caching.

From that one declaration come the Starlette route (parameters parsed and checked before the
handler runs, the answer cached when the endpoint is hot) and the endpoint's part of the OpenAPI
document, so the documentation cannot drift from what the code accepts.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.context import ApiContext
from api.params import Param, parse_all

Handler = Callable[..., Awaitable[dict[str, Any]]]


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
    errors: tuple[int, ...] = field(default=(404, 422, 503))

    async def _serve(self, request: Request) -> Response:
        context: ApiContext = request.app.state.context
        args = parse_all(self.params, request.path_params, request.query_params)
        cache = context.cache
        key = (self.path, tuple(sorted(args.items())))
        hit = cache.get(key) if self.cached and cache.enabled else None
        if hit is None:
            body = json.dumps(await self.handler(context, **args), separators=(",", ":")).encode()
            if self.cached and cache.enabled:
                cache.put(key, body)
            age = 0.0
        else:
            body, age = hit
        response = Response(body, media_type="application/json")
        if self.cached and cache.enabled:
            response.headers["Cache-Control"] = f"max-age={cache.ttl_s:g}"
            response.headers["Age"] = str(int(age))
            response.headers["X-Cache"] = "MISS" if hit is None else "HIT"
        else:
            response.headers["Cache-Control"] = "no-store"
        return response

    def route(self) -> Route:
        return Route(self.path, self._serve, methods=["GET"], name=self.handler.__name__)
