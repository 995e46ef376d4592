"""Liveness and reachability of the stores the API depends on."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse

from pricepipe_assets.kafka.client import kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra import cassandra_cluster


async def health(request: Request) -> JSONResponse:
    """200 while the API runs; ``kafka``/``cassandra`` say whether each store answers right now."""
    settings: Settings = request.app.state.settings
    kafka, cassandra = await asyncio.gather(
        asyncio.to_thread(kafka_cluster(settings).ping), asyncio.to_thread(cassandra_cluster(settings).ping)
    )
    return JSONResponse({"status": "ok", "kafka": kafka, "cassandra": cassandra})
