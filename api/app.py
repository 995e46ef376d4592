"""The ASGI application: ``uvicorn api.app:app``.

Cassandra is connected (and every statement prepared) at start-up when it answers; when it does
not, the API starts anyway, answers 503 for data and ``/health`` says why, and connects on a
later request once Cassandra is back.

With ``PRICEPIPE_API_KEY`` or ``PRICEPIPE_API_AUTH`` set, every route takes a key with its scope
(:mod:`api.auth`), except ``/livez``, the login step and the chart page's files; the one list of
routes below says what each takes, so no route can be served without a rule.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from api import chart, login, queries
from api.auth import ANY_KEY, PUBLIC, Access, AuthMiddleware, redact_access_log
from api.context import ApiContext
from api.endpoint import StoredAnswers
from api.errors import EXCEPTION_HANDLERS, StoreUnavailable
from api.health import StoreChecks, health, livez
from api.keys import KeyRing
from api.openapi import docs_routes, openapi_document
from api.routes import ENDPOINTS, prices
from api.store import AsyncStore
from pricepipe_assets.kafka.client import kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra import cassandra_cluster

log = logging.getLogger("pricepipe.api")

# Requests must fail fast when Cassandra is down: a 503 within seconds, not a driver default of 10-20 s.
CONNECT_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 5.0


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    cassandra = cassandra_cluster(settings, connect_timeout_s=CONNECT_TIMEOUT_S, request_timeout_s=REQUEST_TIMEOUT_S)
    context = ApiContext(settings, AsyncStore(cassandra))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await context.store.connect(queries.ALL)
        except StoreUnavailable as error:
            log.warning("starting without Cassandra: %s", error.message)
        # What start-up imported and connected lives as long as the process. Frozen, it is no longer
        # walked by every full collection, which had held requests up for ~100 ms (the uncached
        # endpoints' p99 in the API benchmark: ~100 ms before, 15 ms after).
        gc.collect()
        gc.freeze()
        yield
        context.store.close()

    document = openapi_document(ENDPOINTS, {prices.STREAM_PATH: prices.STREAM_OPENAPI})
    keyed = bool(settings.api_key or settings.api_auth)
    rules: list[Access] = [(Route("/livez", livez, methods=["GET"]), PUBLIC),
                           (Route("/health", health, methods=["GET"]), ANY_KEY), *docs_routes(document),
                           *chart.ROUTES, *(login.ROUTES if keyed else ()), *prices.ROUTES,
                           *((endpoint.route(), endpoint.scope) for endpoint in ENDPOINTS)]
    keys = KeyRing(settings, context.store)
    middleware = [Middleware(AuthMiddleware, keys=keys, rules=rules)] if keyed else []
    middleware.append(Middleware(StoredAnswers, context=context))
    redact_access_log()
    app = Starlette(routes=[route for route, _ in rules], middleware=middleware, exception_handlers=EXCEPTION_HANDLERS,
                    lifespan=lifespan)
    app.state.settings = settings
    app.state.context = context
    app.state.keys = keys
    app.state.checks = StoreChecks(kafka_cluster(settings), context.store)
    return app


app = create_app()
