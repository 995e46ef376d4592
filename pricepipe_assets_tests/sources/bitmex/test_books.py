"""BitMEX ``orderBookL2_25`` against the local BitMEX-protocol server, into the real local Kafka.

Data: the ten real tardis top-25 snapshots of Binance USD-M futures BTCUSDT in
../shared/data/samples/orderbook, relabelled XBTUSD and written as L2 rows by the test server
(another venue's book, used only to drive the protocol). Constructed, and only this: the
``insert``/``update``/``delete`` messages between two snapshots are their row-by-row difference,
one ``delete`` names an id no snapshot holds, and the hostile messages change one field of a real one.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.sources.backoff import exponential_backoff
from pricepipe_assets.sources.bitmex.books import BOOK_TABLE
from pricepipe_assets.sources.bitmex.ws import BOOK_SOURCE, FRAME_SOURCE, BitmexClient
from pricepipe_assets.sources.book_throttle import BookThrottle
from pricepipe_assets_tests.support.exchange_servers.bitmex_server import (
    BitmexServer,
    bitmex_books_from_tardis,
    table_frame,
)
from pricepipe_assets_tests.support.exchange_servers.hostile import NESTED_ARRAY, assert_dead_lettered_once_each
from pricepipe_assets_tests.support.kafka_reads import consume

BOOK25_CSV = "samples/orderbook/nautilus_tardis_binance-futures_book_snapshot_25_BTCUSDT.csv"
DEPTH = 10


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def top(rows: list[dict[str, Any]]) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
    bids = sorted(((r["price"], r["size"]) for r in rows if r["side"] == "Buy"), reverse=True)[:DEPTH]
    asks = sorted((r["price"], r["size"]) for r in rows if r["side"] == "Sell")[:DEPTH]
    return tuple(bids), tuple(asks)


def differences(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The L2 messages that turn table ``old`` into ``new``."""
    before, after = {r["id"]: r for r in old}, {r["id"]: r for r in new}
    return {
        "delete": [{k: before[i][k] for k in ("symbol", "id", "side", "price")} for i in before.keys() - after.keys()],
        "update": [{k: after[i][k] for k in ("symbol", "id", "side", "size", "price", "timestamp")}
                   for i in before.keys() & after.keys() if before[i]["size"] != after[i]["size"]],
        "insert": [after[i] for i in after.keys() - before.keys()],
    }


@pytest.fixture()
def books(shared_data: Path) -> list[list[dict[str, Any]]]:
    return bitmex_books_from_tardis(shared_data / BOOK25_CSV, "XBTUSD")


@pytest.fixture()
def client(kafka: KafkaResource, books: list[list[dict[str, Any]]]) -> Iterator[tuple[BitmexClient, BitmexServer]]:
    kafka.ensure_topics(topics.ALL_TOPICS)
    publisher = kafka.publisher()
    stop = threading.Event()
    with BitmexServer(("XBTUSD",)) as server:
        server.seed_book("XBTUSD", books[0])
        backoff = exponential_backoff(initial_s=0.05, factor=2, cap_s=0.2, random_fraction=random.Random(3).random)
        bitmex = BitmexClient(publisher, url=server.url, symbols=("XBTUSD",), backoff=backoff, poll_s=0.05,
                              books=BookThrottle(publisher, 0.0), book_depth=DEPTH)
        thread = threading.Thread(target=bitmex.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield bitmex, server
        finally:
            stop.set()
            thread.join(30)


def test_partial_insert_update_delete_keep_the_book_and_an_unknown_delete_resubscribes(
        kafka: KafkaResource, client: tuple[BitmexClient, BitmexServer], books: list[list[dict[str, Any]]]) -> None:
    bitmex, server = client
    assert f"{BOOK_TABLE}:XBTUSD" in bitmex.subscription_args()
    wait_until(lambda: bitmex.counts.books == 1, "the partial's book")
    actions = {"insert": 0, "update": 0, "delete": 0}
    for old, new in zip(books, books[1:], strict=False):
        for action, rows in differences(old, new).items():
            if rows:
                actions[action] += 1
                server.send(table_frame(BOOK_TABLE, action, rows))
    assert all(actions.values()), actions  # the real snapshots exercise every action
    applied = 1 + sum(actions.values())
    wait_until(lambda: bitmex.counts.books == applied, "every change applied")
    server.seed_book("XBTUSD", books[0])  # what BitMEX answers the resubscription with
    server.send(table_frame(BOOK_TABLE, "delete", [{"symbol": "XBTUSD", "id": 1, "side": "Buy", "price": 1.0}]))
    wait_until(lambda: bitmex.counts.books == applied + 1, "the fresh partial's book")

    published = [OrderBook.from_json(m.value()) for m in consume(kafka, topics.ORDERBOOK, applied + 1)]
    assert len(published) == applied + 1
    assert (published[0].bids, published[0].asks) == top(books[0])
    assert (published[applied - 1].bids, published[applied - 1].asks) == top(books[-1])
    assert (published[-1].bids, published[-1].asks) == top(books[0])  # nothing between the bad delete and it
    assert [b.sequence for b in published] == sorted({b.sequence for b in published})
    assert all(b.exchange == "bitmex" and len(b.bids) == len(b.asks) == DEPTH for b in published)
    assert server.unsubscribe_requests == [[f"{BOOK_TABLE}:XBTUSD"]] and bitmex.counts.resubscribes == 1
    letters = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, 1)]
    assert letters[0]["source_topic"] == BOOK_SOURCE and "does not hold" in letters[0]["error"]


def test_hostile_book_messages_are_dead_lettered_and_the_book_goes_on_with_the_real_changes(
        kafka: KafkaResource, client: tuple[BitmexClient, BitmexServer], books: list[list[dict[str, Any]]]) -> None:
    """A ``partial`` whose filter names a list is refused and the book it would have replaced stays; a
    row dated in the year 2999 breaks the book like any row that cannot be read (resubscribed), instead
    of dating every later book of the symbol beyond what the contract accepts."""
    bitmex, server = client
    wait_until(lambda: bitmex.counts.books == 1, "the partial's book")
    listed = table_frame(BOOK_TABLE, "partial", books[1], filter={"symbol": ["XBTUSD"]})
    late = {**books[0][0], "size": books[0][0]["size"] + 1, "timestamp": "2999-01-01T00:00:00.000Z"}
    dated = table_frame(BOOK_TABLE, "update", [late])
    for frame in (NESTED_ARRAY, listed, dated):
        server.send(frame)
    wait_until(lambda: bitmex.counts.resubscribes == 1 and bitmex.books.trusted("XBTUSD"), "the fresh partial")
    changes = [table_frame(BOOK_TABLE, action, rows) for action, rows in differences(books[0], books[1]).items() if rows]
    for frame in changes:
        server.send(frame)
    published = 2 + len(changes)
    wait_until(lambda: bitmex.counts.books == published, "the real changes after the fresh partial")

    tops = [(b.bids, b.asks) for b in (OrderBook.from_json(m.value()) for m in consume(kafka, topics.ORDERBOOK, published))]
    assert tops[:2] == [top(books[0])] * 2 and tops[-1] == top(books[1])
    letters = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, 3)]
    assert_dead_lettered_once_each([one for one in letters if one["source_topic"] == FRAME_SOURCE],
                                   {NESTED_ARRAY: "nested more deeply"}, FRAME_SOURCE)
    assert_dead_lettered_once_each([one for one in letters if one["source_topic"] == BOOK_SOURCE], {
        listed: "could not be read: TypeError: unhashable type: 'list'",
        dated: "out of step, resubscribing: timestamp 32472144000000 is not a plausible time",
    }, BOOK_SOURCE)
    assert bitmex.counts.dead_letters == 3 and server.connections == 1
