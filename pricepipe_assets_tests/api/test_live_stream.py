"""The chart page's live stream: one Cassandra poll per symbol per worker, whatever the number of clients.

Each test serves its own app (a real uvicorn on 127.0.0.1 over the filled keyspace) polling every
``STREAM_S``, so the pollers and counters it reads are its own. Reads are counted twice: by the
API's store (the requests it sent) and by Cassandra itself (its coordinator's read and scan counts
of the test keyspace, the ``system_views`` tables of Cassandra 4.1 and later), which must agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2 as httpx
import pytest
from starlette.applications import Starlette

from api import live
from api.app import create_app
from api.context import ApiContext
from api.errors import StoreUnavailable
from pricepipe_assets_tests.api.conftest import SYMBOL, TRADES_SYMBOL, Filled, LiveSymbol, served
from pricepipe_assets_tests.api.test_hostile_requests import next_update, wait_until

STREAM_S = 0.25
CLIENTS = 200
WINDOW_S = 3.0
# A poll of SYMBOL: its newest candle, its latest_prices row, the newest candle again (SYMBOL has no
# trade, so its last price is that candle's close) and its order book.
READS_PER_POLL = 4
# A new row is sent within a period and a read of being written; the bound is loose since test machines are noisy.
NEW_ROW_WITHIN_S = 5.0


@pytest.fixture
def app(filled: Filled) -> Starlette:
    return create_app(dataclasses.replace(filled.settings, api_stream_s=STREAM_S, api_streams_max=CLIENTS))


@pytest.fixture
def base_url(app: Starlette) -> Iterator[str]:
    with served(app) as url:
        yield url


def context_of(app: Starlette) -> ApiContext:
    return app.state.context


def cassandra_reads(filled: Filled) -> int:
    """Reads Cassandra's coordinators served in the test keyspace so far, by Cassandra's own count:
    single-partition reads and scans (the symbols table is read whole)."""
    session = filled.cassandra.session()
    return sum(row[0] for table in ("coordinator_read_latency", "coordinator_scan_latency")
               for row in session.execute(f"SELECT count FROM system_views.{table} WHERE keyspace_name = %s",
                                          (filled.settings.keyspace,)))


async def update_of(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The next event of a stream's lines, which must be an update."""
    async for line in lines:
        if line.startswith("event:"):
            assert line == "event: update"
            return json.loads((await anext(lines)).removeprefix("data: "))
    raise AssertionError("the stream ended")


def lines_of(response: httpx.Response) -> AsyncIterator[str]:
    assert response.status_code == 200
    return response.aiter_lines()


@contextlib.asynccontextmanager
async def streams(base_url: str, symbol: str, count: int) -> AsyncIterator[list[dict[str, Any]]]:
    """``count`` streams of ``symbol`` opened at once and held open inside the block; yields their first
    updates. Their lines are held too: an abandoned line iterator, once collected, closes its connection."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client, contextlib.AsyncExitStack() as stack:
        responses = await asyncio.gather(*(stack.enter_async_context(client.stream("GET", f"{base_url}/stream/{symbol}"))
                                           for _ in range(count)))
        held = [lines_of(response) for response in responses]
        yield list(await asyncio.gather(*(update_of(lines) for lines in held)))


def test_200_clients_of_a_symbol_cost_one_poll_per_period_not_a_poll_per_client(
        filled: Filled, app: Starlette, base_url: str) -> None:
    context = context_of(app)

    async def measure() -> tuple[int, int, int]:
        async with streams(base_url, SYMBOL, CLIENTS) as updates:
            assert all(update["price"]["symbol"] == SYMBOL for update in updates)
            feed = context.feeds.running[SYMBOL]
            assert (feed.clients, context.streams.open, list(context.feeds.running)) == (CLIENTS, CLIENTS, [SYMBOL])
            served_before, sent_before, polls_before = cassandra_reads(filled), context.store.requests, feed.polls
            await asyncio.sleep(WINDOW_S)
            counts = (cassandra_reads(filled) - served_before, context.store.requests - sent_before,
                      feed.polls - polls_before)
            assert (feed.clients, context.feeds.running[SYMBOL]) == (CLIENTS, feed)  # all there all along
            return counts

    served_reads, sent, polls = asyncio.run(measure())
    periods = WINDOW_S / STREAM_S
    assert 1 <= polls <= periods + 1
    # Each poll's reads, and the clock (the symbols table) once per PRICEPIPE_API_CACHE_S beside them.
    assert READS_PER_POLL * (polls - 1) <= served_reads <= (READS_PER_POLL + 1) * (polls + 1)
    assert abs(served_reads - sent) <= 2 * READS_PER_POLL  # polls running while either count is taken
    # A loop per client would read READS_PER_POLL per client per period (the store shares the reads that
    # coincide, and 200 such clients still cost some 900 reads in these 3 s); all 200 cost one client's polls.
    assert served_reads <= 2 * READS_PER_POLL * periods
    wait_until(lambda: not context.feeds.running and context.streams.open == 0)


async def update_with_candle(lines: AsyncIterator[str], open_time: str) -> dict[str, Any]:
    """The first update carrying the candle that opened at ``open_time`` (a poll may read the candle
    just before it was written and the price just after)."""
    while (update := await update_of(lines))["candle"]["open_time"] != open_time:
        pass
    return update


def test_a_new_candle_reaches_a_connected_client_within_seconds(filled: Filled, base_url: str) -> None:
    symbol = LiveSymbol(filled)

    async def follow() -> tuple[dict[str, Any], dict[str, Any], float]:
        async with (httpx.AsyncClient(timeout=30) as client,
                    client.stream("GET", f"{base_url}/stream/{symbol.name}") as response):
            lines = lines_of(response)
            first = await update_of(lines)
            newest = symbol.tick()
            written = time.monotonic()
            async with asyncio.timeout(NEW_ROW_WITHIN_S):
                update = await update_with_candle(lines, newest)
            return first, update, time.monotonic() - written

    first, update, took = asyncio.run(follow())
    assert (first["candle"]["close"], update["candle"]["close"]) == (100.0, 101.0)
    assert update["price"] == {**first["price"], "last": 101.0, "last_time": update["candle"]["close_time"]}
    assert took < NEW_ROW_WITHIN_S


def test_two_symbols_get_a_poller_each_which_stops_with_its_last_client(app: Starlette, base_url: str) -> None:
    context = context_of(app)

    async def watch() -> list[asyncio.Task[None]]:
        async with streams(base_url, SYMBOL, 2) as btc, streams(base_url, TRADES_SYMBOL, 1) as perp:
            assert {update["price"]["symbol"] for update in btc} == {SYMBOL}
            assert perp[0]["price"]["symbol"] == TRADES_SYMBOL and perp[0]["price"]["last_source"] == "trade"
            feeds = context.feeds.running
            assert sorted(feeds) == sorted([SYMBOL, TRADES_SYMBOL])
            assert (feeds[SYMBOL].clients, feeds[TRADES_SYMBOL].clients) == (2, 1)
            await asyncio.sleep(2 * STREAM_S)
            assert all(feed.polls >= 2 for feed in feeds.values())
            return [feed.task for feed in feeds.values()]

    pollers = asyncio.run(watch())
    wait_until(lambda: not context.feeds.running and all(task.done() for task in pollers))


def test_an_unchanged_symbol_sends_keep_alives_not_updates(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "KEEP_ALIVE_S", 0.5)
    with httpx.stream("GET", f"{base_url}/stream/{SYMBOL}", timeout=30) as response:
        lines = response.iter_lines()
        assert next_update(lines)["price"]["symbol"] == SYMBOL
        after = [next(line for line in lines if line) for _ in range(3)]
    assert after == [live.KEEP_ALIVE.decode().strip()] * 3


def test_a_store_outage_is_an_error_event_then_the_same_update_again(app: Starlette, base_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def unavailable(cql: str, params: Any) -> list[Any]:
        raise StoreUnavailable("down for this test")

    with httpx.stream("GET", f"{base_url}/stream/{SYMBOL}", timeout=30) as response:
        lines = response.iter_lines()
        before = next_update(lines)
        monkeypatch.setattr(context_of(app).store, "rows", unavailable)
        assert next(line for line in lines if line.startswith("event:")) == "event: error"
        assert json.loads(next(lines).removeprefix("data: "))["status"] == 503
        monkeypatch.undo()
        assert next_update(lines) == before


def test_a_failed_poller_ends_its_streams_and_the_next_client_starts_a_new_one() -> None:
    async def scenario() -> None:
        feeds, answers = live.Feeds(STREAM_S / 10), [b"first", RuntimeError("a bug, not an outage")]

        async def poll() -> bytes:
            answer = answers.pop(0) if answers else b"again"
            if isinstance(answer, Exception):
                raise answer
            return answer

        first, second = feeds.stream(SYMBOL, poll), feeds.stream(SYMBOL, poll)
        assert (await anext(first), await anext(second)) == (b"first", b"first")
        with pytest.raises(live.FeedStopped):
            await anext(first)
        again = feeds.stream(SYMBOL, poll)
        assert await anext(again) == b"again"
        with pytest.raises(live.FeedStopped):
            await anext(second)
        assert feeds.running[SYMBOL].clients == 1  # the failed poller's last client left the new one running
        await again.aclose()
        assert not feeds.running

    asyncio.run(scenario())
