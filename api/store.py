"""Cassandra for an asyncio server: the driver's async requests bridged to awaitables.

The driver runs requests on its own event thread and reports through callbacks; each page of a
result is handed to the asyncio loop with ``call_soon_threadsafe``, so no request ever blocks the
loop. Connecting (and preparing every statement once) happens in a worker thread on first use; a
failed connect is retried by a later request, but not more often than ``RETRY_CONNECT_S``, so a
Cassandra that is down costs each request a fast 503, not a connect timeout.

A request costs one future and one hop from the driver's thread to the loop per page, and its rows
are named tuples of a class made once per column list: the driver's default row factory builds a
new ``namedtuple`` class for every result, which is most of the driver's own work for a one-row read.

Requests for the same query with the same parameters share reads (:meth:`AsyncStore.rows`): a
dashboard's clients all asking for one symbol's price at once cost one read, not one each, and
each still gets an answer read after it arrived, so sharing never serves an older answer than a
read of its own would have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import namedtuple
from collections.abc import Sequence
from functools import cache
from typing import Any

from api.errors import StoreUnavailable
from pricepipe_assets.storage.cassandra import CassandraCluster, CassandraUnavailable

log = logging.getLogger("pricepipe.api")

RETRY_CONNECT_S = 2.0


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    from cassandra import OperationTimedOut, ReadFailure, ReadTimeout, Unavailable
    from cassandra.cluster import NoHostAvailable

    return NoHostAvailable, OperationTimedOut, ReadTimeout, ReadFailure, Unavailable, CassandraUnavailable


@cache
def _row_class(columns: tuple[str, ...]) -> Any:
    return namedtuple("Row", columns)


def named_rows(columns: list[str], rows: list[tuple[Any, ...]]) -> list[Any]:
    """The driver's named-tuple rows, with the class made once per column list instead of per result."""
    return list(map(_row_class(tuple(columns))._make, rows))


def _settle(future: asyncio.Future[Any], page: Any, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (its client went away)
        return
    if error is None:
        future.set_result(page)
    else:
        future.set_exception(error)


class _Pages:
    """The pages of one query, each handed from the driver's thread to the loop through one future."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()

    def page(self, rows: Any) -> None:
        self.loop.call_soon_threadsafe(_settle, self.future, rows, None)

    def error(self, error: BaseException) -> None:
        self.loop.call_soon_threadsafe(_settle, self.future, None, error)

    def next(self) -> asyncio.Future[Any]:
        self.future = self.loop.create_future()
        return self.future


class AsyncStore:
    """One Cassandra session for the API process, with prepared statements and awaitable queries."""

    def __init__(self, cassandra: CassandraCluster) -> None:
        self._cassandra = cassandra
        self._prepared: dict[str, Any] = {}
        self._connected = False
        self._lock = asyncio.Lock()
        self._last_failure = -RETRY_CONNECT_S
        self._unavailable = _unavailable_errors()
        self._session: Any = None
        self._profile: Any = None
        self._running: dict[tuple[Any, ...], asyncio.Future[list[Any]]] = {}
        self._queued: dict[tuple[Any, ...], asyncio.Future[list[Any]]] = {}
        self._reads: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks
        # Requests sent to Cassandra, one per page, as Cassandra counts reads: what sharing saves.
        self.requests = 0

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
                # The reason (a refused login, an untrusted certificate) goes to the log, for the
                # operator; clients get only its kind.
                log.warning("Cassandra unavailable: %s", error)
                raise StoreUnavailable(type(error).__name__) from None
            self._connected = True

    def _connect(self, statements: Sequence[str]) -> dict[str, Any]:
        from cassandra.cluster import EXEC_PROFILE_DEFAULT

        session = self._cassandra.session()
        self._profile = session.execution_profile_clone_update(EXEC_PROFILE_DEFAULT, row_factory=named_rows)
        self._session = session
        return {cql: self._cassandra.prepare(cql) for cql in statements}

    async def connect(self, statements: Sequence[str]) -> None:
        """Connect and prepare ``statements`` now (the app does so at start-up, when it can)."""
        await self._ensure_connected(statements)

    async def rows(self, cql: str, params: Sequence[Any]) -> list[Any]:
        """Every row of one prepared query, all pages, without blocking the event loop.

        At most one read of a query and its parameters runs at a time; requests arriving meanwhile
        join the one queued behind it, which starts once the running read ends, so every request's
        rows come from a read that started after the request did. Under load a read answers every
        request that arrived during the read before it, which is what lifts a hot row's rate above
        what the driver gives for one read per request.
        """
        key = (cql, *params)
        shared = self._queued.get(key)
        if shared is None:
            shared = self._queue(key, cql, params)
        return list(await asyncio.shield(shared))

    def _queue(self, key: tuple[Any, ...], cql: str, params: Sequence[Any]) -> asyncio.Future[list[Any]]:
        loop = asyncio.get_running_loop()
        shared: asyncio.Future[list[Any]] = loop.create_future()
        before = self._running.get(key)
        self._queued[key] = shared

        async def read() -> None:
            if before is not None:
                await asyncio.wait((before,))
            del self._queued[key]
            self._running[key] = shared
            try:
                shared.set_result(await self._read(cql, params))
            except BaseException as error:  # every request sharing the read gets its error
                shared.set_exception(error)
                shared.exception()  # retrieved: no warning when every such request went away
            finally:
                del self._running[key]

        task = loop.create_task(read())
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)
        return shared

    async def _read(self, cql: str, params: Sequence[Any]) -> list[Any]:
        if not self._connected:
            await self._ensure_connected(())
        statement = self._prepared.get(cql)
        if statement is None:
            statement = await asyncio.to_thread(self._cassandra.prepare, cql)
            self._prepared[cql] = statement
        pages = _Pages(asyncio.get_running_loop())
        future = pages.future
        self.requests += 1
        try:
            response = self._session.execute_async(statement, params, execution_profile=self._profile)
        except self._unavailable as error:
            raise StoreUnavailable(type(error).__name__) from None
        # Registered once: the driver calls these again for every page fetched after the first.
        response.add_callbacks(pages.page, pages.error)
        result: list[Any] = []
        while True:
            try:
                result.extend(await future or ())  # a write's result has no rows at all
            except self._unavailable as error:
                raise StoreUnavailable(type(error).__name__) from None
            if not response.has_more_pages:
                return result
            future = pages.next()
            self.requests += 1
            response.start_fetching_next_page()

    async def write(self, cql: str, params: Sequence[Any]) -> None:
        """Run one prepared statement that returns no rows; never shared, unlike :meth:`rows`."""
        await self._read(cql, params)

    async def many(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """The rows of several queries sent at once (e.g. one per partition of a range), as one
        list in the order of the queries."""
        pages = await asyncio.gather(*(self.rows(cql, params) for cql, params in queries))
        return [row for page in pages for row in page]

    def close(self) -> None:
        self._cassandra.close()
        self._connected = False
