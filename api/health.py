"""``/livez``: the process answers; ``/health``: whether the stores the API depends on answer too.

``/livez`` is what an orchestrator polls (Kubernetes' liveness and readiness probes): public,
and it touches nothing, so a Cassandra or Kafka outage never gets healthy API workers restarted.
``/health`` asks both stores through the connections the API already holds (its Cassandra
session, one Kafka admin client per worker), so polling it opens no connections; it wants a key.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from api.errors import StoreUnavailable
from api.store import AsyncStore
from pricepipe_assets.kafka.client import KafkaCluster
from pricepipe_assets.storage.cassandra import PING

PING_TIMEOUT_S = 2.0


class StoreChecks:
    """Whether Kafka and Cassandra answer now, asked through this worker's own clients."""

    def __init__(self, kafka: KafkaCluster, store: AsyncStore) -> None:
        self.kafka = kafka
        self.store = store
        self._admin: Any = None
        self._admin_lock = threading.Lock()

    def _kafka_answers(self) -> bool:
        with self._admin_lock:
            if self._admin is None:
                self._admin = self.kafka.admin()
        return KafkaCluster.ping(self._admin, PING_TIMEOUT_S)

    async def _cassandra_answers(self) -> bool:
        try:
            return bool(await self.store.rows(PING, ()))
        except StoreUnavailable:
            return False

    async def check(self) -> dict[str, Any]:
        kafka, cassandra = await asyncio.gather(asyncio.to_thread(self._kafka_answers), self._cassandra_answers())
        return {"status": "ok", "kafka": kafka, "cassandra": cassandra}


async def health(request: Request) -> JSONResponse:
    """200 while the API runs; ``kafka``/``cassandra`` say whether each store answers right now."""
    checks: StoreChecks = request.app.state.checks
    return JSONResponse(await checks.check(), headers={"Cache-Control": "no-store"})


async def livez(request: Request) -> JSONResponse:
    """200 as long as the worker's event loop runs; nothing else is asked."""
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
