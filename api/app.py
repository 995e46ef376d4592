"""The ASGI application: ``uvicorn api.app:app``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from api.health import health
from pricepipe_assets.settings import Settings


def create_app(settings: Settings | None = None) -> Starlette:
    app = Starlette(routes=[Route("/health", health)])
    app.state.settings = settings or Settings.from_env()
    return app


app = create_app()
