"""``/openapi.json`` built from the endpoint declarations, and ``/docs``: Swagger UI over it.

Swagger UI is served from the installed ``swagger-ui-bundle`` package, so the page works on a
machine without internet access and no copy of it lives in this repository.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from importlib.resources import files
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from api import schemas as s
from api.endpoint import Endpoint

STATUS_TEXT = {401: "missing or wrong API key (PRICEPIPE_API_KEY is set)", 404: "unknown symbol",
               422: "invalid parameter: the message names it", 503: "Cassandra is unavailable"}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {
        "schema": endpoint.response}}}}
    for status in (*endpoint.errors, 401):
        responses[str(status)] = {"description": STATUS_TEXT[status],
                                  "content": {"application/json": {"schema": s.ERROR}}}
    operation = {"tags": [endpoint.tag], "summary": endpoint.summary, "operationId": endpoint.handler.__name__,
                 "parameters": [param.schema() for param in endpoint.params], "responses": responses}
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.cached:
        operation["description"] = (f"{endpoint.description}\n\n" if endpoint.description else "") + (
            "Hot answer: may be served from a cache for PRICEPIPE_API_CACHE_S seconds "
            "(headers `X-Cache`, `Age`, `Cache-Control`).")
    return operation


def openapi_document(endpoints: tuple[Endpoint, ...], extra_paths: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {endpoint.path: {"get": _operation(endpoint)} for endpoint in endpoints}
    paths.update(extra_paths)
    return {
        "openapi": "3.0.3",
        "info": {"title": "pricepipe API", "version": version("pricepipe"),
                 "description": "Prices, candles, trade statistics and forecasts from pricepipe's Cassandra tables. "
                 "Times are UTC ISO-8601. 'Now' is the platform clock: wall time when live, the newest replayed "
                 "event when replaying history. With PRICEPIPE_API_KEY set, send it as the `X-API-Key` header."},
        "components": {"securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "security": [{"apiKey": []}],
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
DOCS_INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json" + window.location.search, dom_id: "#docs",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "BaseLayout"});
"""


def docs_routes(document: dict[str, Any]) -> list[BaseRoute]:
    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)

    async def docs_init(request: Request) -> HTMLResponse:
        return HTMLResponse(DOCS_INIT, media_type="text/javascript")

    return [Route("/openapi.json", openapi_json, include_in_schema=False),
            Route("/docs", docs, include_in_schema=False),
            Route("/docs/init.js", docs_init, include_in_schema=False),
            Mount("/docs/assets", StaticFiles(directory=_swagger_dir()), name="docs-assets")]
