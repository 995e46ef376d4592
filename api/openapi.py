"""``/openapi.json`` built from the endpoint declarations, and ``/docs``: Swagger UI over it.

Swagger UI is served from the installed ``swagger-ui-bundle`` package, so the page works on a
machine without internet access and no copy of it lives in this repository.

Each operation names the scope a key needs for it (``x-scope``, and in its description): OpenAPI
3.0 lists scopes only for OAuth2, and these keys are ``apiKey`` schemes (the ``X-API-Key`` header,
or the session cookie of ``POST /login``).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from importlib.resources import files
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from api import schemas as s
from api.auth import ANY_KEY, PUBLIC, Access
from api.endpoint import Endpoint
from api.keys import COOKIE

STATUS_TEXT = {401: "missing, wrong or revoked API key or session (when the API requires keys)",
               403: "the key lacks the scope of this operation (`x-scope`)",
               404: "unknown symbol", 422: "invalid parameter: the message names it", 503: "Cassandra is unavailable"}
SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}, {"session": []}]
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before asking again", "schema": {"type": "integer"}}}
LIVEZ = {"get": {"tags": ["health"], "summary": "Liveness: 200 while the API process answers (no key, no store asked)",
                 "operationId": "livez", "security": [],
                 "responses": {"200": {"description": "OK", "content": {"application/json": {
                     "schema": s.obj(status=s.string("always `ok`"))}}}}}}


def _error(status: int, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": s.ERROR}}}


def guarded(operation: dict[str, Any], scope: str) -> dict[str, Any]:
    """``operation`` as it is with keys required: its scope, and the answers of a refused key."""
    note = f"Needs a key with the scope `{scope}` when the API requires keys."
    return {**operation, "security": SECURITY, "x-scope": scope,
            "description": f"{operation['description']}\n\n{note}" if operation.get("description") else note,
            "responses": {**operation["responses"], "401": _error(401, STATUS_TEXT[401]),
                          "403": _error(403, STATUS_TEXT[403]),
                          "429": {**_error(429, "the key exceeds its rate limit"), "headers": RETRY_AFTER}}}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {
        "schema": endpoint.response}}}}
    for status in endpoint.errors:
        responses[str(status)] = _error(status, STATUS_TEXT[status])
    operation = {"tags": [endpoint.tag], "summary": endpoint.summary, "operationId": endpoint.handler.__name__,
                 "parameters": [param.schema() for param in endpoint.params], "responses": responses}
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.cached:
        operation["description"] = (f"{endpoint.description}\n\n" if endpoint.description else "") + (
            "Hot answer: may be served from a cache for PRICEPIPE_API_CACHE_S seconds "
            "(headers `X-Cache`, `Age`, `Cache-Control`).")
    return guarded(operation, endpoint.scope)


def openapi_document(endpoints: tuple[Endpoint, ...], extra_paths: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {endpoint.path: {"get": _operation(endpoint)} for endpoint in endpoints}
    paths.update(extra_paths)
    paths["/livez"] = LIVEZ
    return {
        "openapi": "3.0.3",
        "info": {"title": "pricepipe API", "version": version("pricepipe"),
                 "description": "Prices, candles, trade statistics and forecasts from pricepipe's Cassandra tables. "
                 "Times are UTC ISO-8601. 'Now' is the platform clock: wall time when live, the newest replayed "
                 "event when replaying history. With PRICEPIPE_API_KEY or PRICEPIPE_API_AUTH set, every "
                 "operation but /livez needs a key with its scope (`x-scope`: read, forecasts or stream; "
                 "keys are made with `pricepipe api-key create`): in the `X-API-Key` header, or from a browser "
                 f"as the `{COOKIE}` cookie that `POST /login` (with that header) sets. Never in the URL: "
                 "`?api_key=` is refused with 400. Each key has a rate limit per API worker (429 with "
                 "`Retry-After` beyond it); PRICEPIPE_API_KEY has every scope and no limit."},
        "components": {"securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "session": {"type": "apiKey", "in": "cookie", "name": COOKIE,
                        "description": "set by POST /login, which takes the key in the X-API-Key header"}}},
        "security": SECURITY,
        "paths": paths,
    }


@cache
def _swagger_dir() -> str:
    vendor = files("swagger_ui_bundle") / "vendor"
    return str(next(entry for entry in vendor.iterdir() if entry.name.startswith("swagger-ui-")))


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pricepipe API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""
DOCS_INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#docs",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "BaseLayout"});
"""


def docs_routes(document: dict[str, Any]) -> list[Access]:
    """The documentation wants a key like /health; Swagger UI's own files are a public library."""
    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)

    async def docs_init(request: Request) -> HTMLResponse:
        return HTMLResponse(DOCS_INIT, media_type="text/javascript")

    return [(Route("/openapi.json", openapi_json, include_in_schema=False), ANY_KEY),
            (Route("/docs", docs, include_in_schema=False), ANY_KEY),
            (Route("/docs/init.js", docs_init, include_in_schema=False), ANY_KEY),
            (Mount("/docs/assets", StaticFiles(directory=_swagger_dir()), name="docs-assets"), PUBLIC)]
