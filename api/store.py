"""Cassandra for an asyncio server: the driver's async requests bridged to awaitables.

The driver runs requests on its own event thread and reports through callbacks; each page of a
result is handed to the asyncio loop with ``call_soon_threadsafe``, so no request ever blocks the
loop. Connecting (and preparing every statement once) happens in a worker thread on first use; a
failed connect is retried by a later request, but not more often than ``RETRY_CONNECT_S``, so a
Cassandra that is down costs each request a fast 503, not a connect timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from api.errors import StoreUnavailable
from pricepipe_assets.resources.cassandra import CassandraResource, CassandraUnavailable

RETRY_CONNECT_S = 2.0


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    from cassandra import OperationTimedOut, ReadFailure, ReadTimeout, Unavailable
    from cassandra.cluster import NoHostAvailable

    return NoHostAvailable, OperationTimedOut, ReadTimeout, ReadFailure, Unavailable, CassandraUnavailable


class AsyncStore:
    """One Cassandra session for the API process, with prepared statements and awaitable queries."""

    def __init__(self, cassandra: CassandraResource) -> None:
        self._cassandra = cassandra
        self._prepared: dict[str, Any] = {}
        self._connected = False
        self._lock = asyncio.Lock()
        self._last_failure = -RETRY_CONNECT_S
        self._unavailable = _unavailable_errors()

    async def _ensure_connected(self, statements: Sequence[str]) -> None:
        if self._connected:
            return
        async with self._lock:
            if self._connected:
                return
            if time.monotonic() - self._last_failure < RETRY_CONNECT_S:
                raise StoreUnavailable("no Cassandra node answered a moment ago")
            try:
                self._prepared = await asyncio.to_thread(self._connect, statements)
            except self._unavailable as error:
                self._last_failure = time.monotonic()
                raise StoreUnavailable(type(error).__name__) from None
            self._connected = True

    def _connect(self, statements: Sequence[str]) -> dict[str, Any]:
        self._cassandra.session()
        return {cql: self._cassandra.prepare(cql) for cql in statements}

    async def connect(self, statements: Sequence[str]) -> None:
        """Connect and prepare ``statements`` now (the app does so at start-up, when it can)."""
        await self._ensure_connected(statements)

    async def rows(self, cql: str, params: Sequence[Any]) -> list[Any]:
        """Every row of one prepared query, all pages, without blocking the event loop."""
        await self._ensure_connected(())
        statement = self._prepared.get(cql)
        if statement is None:
            statement = await asyncio.to_thread(self._cassandra.prepare, cql)
            self._prepared[cql] = statement
        loop = asyncio.get_running_loop()
        pages: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()
        try:
            response = self._cassandra.session().execute_async(statement, params)
        except self._unavailable as error:
            raise StoreUnavailable(type(error).__name__) from None
        # Registered once: the driver calls these again for every page fetched after the first.
        response.add_callbacks(lambda page: loop.call_soon_threadsafe(pages.put_nowait, (True, page)),
                               lambda error: loop.call_soon_threadsafe(pages.put_nowait, (False, error)))
        result: list[Any] = []
        while True:
            ok, value = await pages.get()
            if not ok:
                if isinstance(value, self._unavailable):
                    raise StoreUnavailable(type(value).__name__)
                raise value
            result.extend(value)
            if not response.has_more_pages:
                return result
            response.start_fetching_next_page()

    async def many(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """The rows of several queries sent at once (e.g. one per partition of a range), as one
        list in the order of the queries."""
        pages = await asyncio.gather(*(self.rows(cql, params) for cql, params in queries))
        return [row for page in pages for row in page]

    def close(self) -> None:
        self._cassandra.close()
        self._connected = False
