"""The API's Cassandra store against the real server: shared reads, and that sharing never serves
an answer older than the request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from api.store import AsyncStore
from pricepipe_assets.defs.resources import CassandraResource

SELECT = "SELECT value FROM shared_reads WHERE key = ?"


@pytest.fixture()
def store(cassandra: CassandraResource) -> Iterator[AsyncStore]:
    session = cassandra.session()
    session.execute("CREATE TABLE shared_reads (key text PRIMARY KEY, value int)")
    session.execute("INSERT INTO shared_reads (key, value) VALUES ('price', 1)")
    store = AsyncStore(cassandra)
    yield store
    store.close()


class CountedReads:
    """Counts the store's reads; while ``hold`` is set, each read waits for it after Cassandra answered,
    so a test can act while a read that already saw the table is still running."""

    def __init__(self, store: AsyncStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.hold: asyncio.Event | None = None
        read = store._read

        async def counted(cql: str, params: Any) -> list[Any]:
            self.count += 1
            rows = await read(cql, params)
            if self.hold is not None:
                await self.hold.wait()
            return rows

        monkeypatch.setattr(store, "_read", counted)


def test_requests_for_the_same_row_at_once_share_one_read(store: AsyncStore, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> list[list[Any]]:
        await store.connect([SELECT])
        reads = CountedReads(store, monkeypatch)
        answers = await asyncio.gather(*(store.rows(SELECT, ("price",)) for _ in range(20)))
        assert reads.count == 1
        return answers

    answers = asyncio.run(scenario())
    assert [[row.value for row in rows] for rows in answers] == [[1]] * 20


def test_a_request_arriving_during_a_read_gets_a_later_read_that_sees_what_was_written_before_it(
        store: AsyncStore, cassandra: CassandraResource, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> tuple[int, int, int]:
        await store.connect([SELECT])
        reads = CountedReads(store, monkeypatch)
        reads.hold = asyncio.Event()
        first = asyncio.ensure_future(store.rows(SELECT, ("price",)))
        while reads.count == 0:  # the first read has started
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # and Cassandra has answered it
        await asyncio.to_thread(cassandra.session().execute, "UPDATE shared_reads SET value = 2 WHERE key = 'price'")
        second = asyncio.ensure_future(store.rows(SELECT, ("price",)))
        third = asyncio.ensure_future(store.rows(SELECT, ("price",)))
        await asyncio.sleep(0.05)
        reads.hold.set()
        values = [(await request)[0].value for request in (first, second, third)]
        assert reads.count == 2  # the second and third requests shared the read queued behind the first
        return values[0], values[1], values[2]

    assert asyncio.run(scenario()) == (1, 2, 2)


def test_a_request_that_goes_away_does_not_cancel_the_read_others_share(
        store: AsyncStore, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> int:
        await store.connect([SELECT])
        reads = CountedReads(store, monkeypatch)
        reads.hold = asyncio.Event()
        leaving = asyncio.ensure_future(store.rows(SELECT, ("price",)))
        staying = asyncio.ensure_future(store.rows(SELECT, ("price",)))
        await asyncio.sleep(0.2)
        leaving.cancel()
        reads.hold.set()
        rows = await staying
        assert leaving.cancelled() and reads.count == 1
        return rows[0].value

    assert asyncio.run(scenario()) == 1


def test_every_request_sharing_a_failed_read_gets_its_error(store: AsyncStore) -> None:
    async def scenario() -> list[BaseException | list[Any]]:
        await store.connect([SELECT])
        bad = "SELECT value FROM shared_reads WHERE key = ? AND value = ?"  # a non-key column without ALLOW FILTERING
        return await asyncio.gather(*(store.rows(bad, ("price", 1)) for _ in range(3)), return_exceptions=True)

    errors = asyncio.run(scenario())
    assert len(errors) == 3 and all(isinstance(error, Exception) for error in errors)
    assert all("ALLOW FILTERING" in str(error) for error in errors)
