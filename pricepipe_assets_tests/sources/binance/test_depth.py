"""Binance order books: the diff depth stream synced with REST snapshots exactly as Binance documents it,
against local WebSocket and REST servers, into the real local Kafka.

Data: the real BTCUSDT depth snapshot (bids only, 100 levels, update id 2098021528332) and the
real ``depthUpdate`` of 100 level changes (U 2098041693435, u 2098041696700, 10 minutes later, 21
of its changes remove levels the snapshot does not hold) from ../shared/data/samples/orderbook,
in Binance spot's wire shapes. Constructed, and only this: the second and third snapshots are the
real snapshot's levels with an update id moved into the stream's range, and the later events reuse
real levels of the real event with the ids that follow it (one of them skipping two ids: the gap).
The hostile frames are the event that follows the real one, broken in one way each.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.sources.binance.depth import DepthSync, depth_event, depth_snapshot
from pricepipe_assets.sources.binance.depth_stream import SOURCE, BinanceDepthStream
from pricepipe_assets.sources.binance.rest import BinanceRestClient
from pricepipe_assets.sources.book_throttle import BookThrottle
from pricepipe_assets.sources.frames import TRANSPORT_LIMIT_BYTES
from pricepipe_assets_tests.support.exchange_servers import binance_rest_server, binance_ws_server
from pricepipe_assets_tests.support.exchange_servers.binance_depth_server import (
    BinanceDepthServer,
    depth_frame,
    load_samples,
    spot_event,
    spot_snapshot,
)
from pricepipe_assets_tests.support.exchange_servers.hostile import (
    LONG_NUMBER,
    MEGABYTES,
    NESTED_ARRAY,
    WireFrame,
    assert_dead_lettered_once_each,
    grown,
    invalid_utf8,
    random_binary,
)
from pricepipe_assets_tests.support.kafka_reads import consume

U_REAL, u_REAL = 2098041693435, 2098041696700


@pytest.fixture(scope="module")
def samples(shared_data: Path) -> dict[str, Any]:
    snapshot_rows, update_rows = load_samples(shared_data)
    real = spot_event(update_rows)
    # what follows the real event: the best ask's size changes and the best bid goes (real levels)
    follow = {**real, "E": real["E"] + 100, "U": u_REAL + 1, "u": u_REAL + 7,
              "b": [["20472.10", "0.000"]], "a": [["20472.20", "1.500"]]}
    gap = {**real, "E": real["E"] + 300, "U": u_REAL + 10, "u": u_REAL + 12, "b": [["20472.10", "3.000"]], "a": []}
    after_gap = {**real, "E": real["E"] + 400, "U": u_REAL + 13, "u": u_REAL + 13, "b": [], "a": [["20472.20", "2.000"]]}
    return {
        "stale": spot_snapshot(snapshot_rows),
        "bridging": spot_snapshot(snapshot_rows, U_REAL + 100),
        "after_gap": spot_snapshot(snapshot_rows, u_REAL + 11),
        "events": [real, follow, gap, after_gap],
    }


def test_a_stale_snapshot_is_refused_and_a_bridging_one_syncs_ignoring_removals_of_absent_levels(
        samples: dict[str, Any]) -> None:
    sync = DepthSync("BTCUSDT")
    assert sync.on_event(depth_event(samples["events"][0])) is False
    assert sync.needs_snapshot and sync.book(10) is None
    assert sync.on_snapshot(depth_snapshot(samples["stale"])) is False  # 2098021528332 + 1 < U
    assert sync.stale_snapshots == 1 and sync.needs_snapshot
    assert sync.on_snapshot(depth_snapshot(samples["bridging"])) is True
    book = sync.book(10)
    assert book is not None and book.sequence == u_REAL
    assert book.best_bid == (20472.10, 22.276) and book.best_ask == (20472.20, 4.211)
    assert len(book.bids) == len(book.asks) == 10


def test_a_gap_throws_the_book_away_until_a_new_snapshot_bridges_it(samples: dict[str, Any]) -> None:
    sync = DepthSync("BTCUSDT")
    sync.on_event(depth_event(samples["events"][0]))
    sync.on_snapshot(depth_snapshot(samples["bridging"]))
    assert sync.on_event(depth_event(samples["events"][1])) is True
    assert sync.on_event(depth_event(samples["events"][2])) is False  # U = u + 3
    assert sync.resyncs == 1 and not sync.trusted and sync.book(10) is None and sync.needs_snapshot
    assert sync.on_snapshot(depth_snapshot(samples["after_gap"]))
    assert sync.trusted and sync.book(10).sequence == u_REAL + 12


class Recorder:
    def __init__(self) -> None:
        self.books: list[OrderBook] = []

    def publish(self, book: OrderBook) -> None:
        self.books.append(book)


def test_the_throttle_publishes_at_most_one_book_per_interval_and_always_the_newest() -> None:
    now = [0.0]
    recorder = Recorder()
    throttle = BookThrottle(recorder, 1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    books = [OrderBook("binance", "BTCUSDT", 1667347199939 + i, i, ((20472.1, 1.0 + i),), ((20472.2, 1.0),))
             for i in range(4)]
    throttle.offer(books[0])
    now[0] = 0.3
    throttle.offer(books[1])
    throttle.offer(books[2])
    assert [b.sequence for b in recorder.books] == [0]
    now[0] = 1.0
    throttle.flush_due()
    assert [b.sequence for b in recorder.books] == [0, 2]
    now[0] = 1.5
    throttle.offer(books[3])
    throttle.forget("BTCUSDT")
    now[0] = 5.0
    throttle.flush_due()
    assert [b.sequence for b in recorder.books] == [0, 2]


def stream_until(stream: BinanceDepthStream, done: Callable[[], bool], give_up_s: float = 30) -> None:
    """Run the stream in a thread until ``done``; it must still be running then, and stop cleanly when told."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            stream.run(stop)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + give_up_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert thread.is_alive(), f"the stream ended before it was told to stop: {errors}"
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and errors == []


def test_the_stream_publishes_only_books_synced_with_a_snapshot_and_resyncs_after_a_gap(
        kafka: KafkaResource, samples: dict[str, Any]) -> None:
    kafka.ensure_topics(topics.ALL_TOPICS)
    publisher = kafka.publisher()
    frames = [depth_frame(event) for event in samples["events"]] + ["{not json"]
    snapshots = {"BTCUSDT": [samples["stale"], samples["bridging"], samples["after_gap"]]}
    with binance_rest_server.running(depth=snapshots) as rest, \
            binance_ws_server.running(BinanceDepthServer([frames], pause_s=0.3)) as ws:
        stream = BinanceDepthStream(["BTCUSDT"], publisher, BinanceRestClient(rest.base_url), depth=10,
                                    throttle=BookThrottle(publisher, 0.0), base_url=ws.base_url,
                                    snapshot_retry_s=0.05)
        stream_until(stream, lambda: stream.counts.dead_letters == 1 and stream.syncs["BTCUSDT"].trusted)
    assert ws.paths == ["/stream?streams=btcusdt@depth@100ms"]
    assert len(rest.depth_requests) == 3 and rest.depth_requests[0]["symbol"] == "BTCUSDT"
    books = [OrderBook.from_json(m.value()) for m in consume(kafka, topics.ORDERBOOK, 2)]
    sequences = [b.sequence for b in books]
    # events that arrive while a snapshot is read are replayed at once: their states may merge into one book
    assert sequences == sorted(set(sequences)) and set(sequences) <= {u_REAL, u_REAL + 7, u_REAL + 12, u_REAL + 13}
    assert sequences[-1] == u_REAL + 13 and sequences[0] in (u_REAL, u_REAL + 7)
    assert books[0].best_bid in ((20472.10, 22.276), (20469.20, 2.864))
    last = books[-1]  # rebuilt from the third snapshot (bids only): none of the real event's asks survive the gap
    assert last.bids[:2] == ((20472.10, 3.0), (20377.00, 1.77)) and last.asks == ((20472.20, 2.0),)
    assert all(len(b.bids) <= 10 and len(b.asks) <= 10 for b in books)
    assert stream.counts.resyncs == 1 and stream.syncs["BTCUSDT"].stale_snapshots == 1
    letters = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, 1)]
    assert letters[0]["source_topic"] == "binance.ws.depth" and "not valid JSON" in letters[0]["error"]


def test_after_a_reconnect_every_book_starts_over_from_a_new_snapshot(
        kafka: KafkaResource, samples: dict[str, Any]) -> None:
    """The events sent while the client was away are lost, so the book it had is never continued."""
    kafka.ensure_topics(topics.ALL_TOPICS)
    publisher = kafka.publisher()
    real, follow, gap, after_gap = (depth_frame(event) for event in samples["events"])
    snapshots = {"BTCUSDT": [samples["bridging"], samples["after_gap"]]}
    server = BinanceDepthServer([[real, follow], [gap, after_gap]], pause_s=0.3, hang_up=True)
    with binance_rest_server.running(depth=snapshots) as rest, binance_ws_server.running(server) as ws:
        stream = BinanceDepthStream(["BTCUSDT"], publisher, BinanceRestClient(rest.base_url), depth=10,
                                    throttle=BookThrottle(publisher, 0.0), base_url=ws.base_url,
                                    backoff=lambda attempt: 0.05, snapshot_retry_s=0.05)
        stream_until(stream, lambda: ws.sent == 4 and stream.syncs["BTCUSDT"].trusted)
    assert len(ws.paths) == 2 and stream.counts.reconnects == 1 and len(rest.depth_requests) == 2
    books = [OrderBook.from_json(m.value()) for m in consume(kafka, topics.ORDERBOOK, 2)]
    assert books[-1].sequence == u_REAL + 13 and books[-1].asks == ((20472.20, 2.0),)
    assert stream.counts.resyncs == 0


def expected_books(*steps: tuple[str, dict[str, Any]]) -> list[OrderBook]:
    """The books a fresh :class:`DepthSync` publishes for these events and snapshots, one per step
    that changed the trusted book: what the stream must publish when every event arrives after the
    snapshot it waits for."""
    sync, books = DepthSync("BTCUSDT"), []
    for kind, body in steps:
        changed = sync.on_event(depth_event(body)) if kind == "event" else sync.on_snapshot(depth_snapshot(body))
        book = sync.book(10) if changed else None
        if book is not None:
            books.append(book)
    return books


def hostile_depth(follow: dict[str, Any]) -> dict[WireFrame, str]:
    """The event that follows the real one, broken in one way each, with (part of) the reason. Each
    keeps the ids of ``follow``, so one applied by mistake would make ``follow`` a repeat and change
    the books published."""
    frame = depth_frame(follow)
    levels = [["20472.10", "1.000"]] * (MEGABYTES // 20)
    flood = depth_frame({**follow, "b": levels})
    assert len(flood) > MEGABYTES
    return {
        NESTED_ARRAY: "nested more deeply than Python's recursion limit",
        flood: f"b has {len(levels)} levels, more than the 1000 allowed",
        random_binary(): "not valid JSON",
        invalid_utf8(frame, "BTCUSDT"): "can't decode byte 0xff",
        depth_frame({**follow, "U": -1}).replace('"U": -1', f'"U": {LONG_NUMBER}'): "Exceeds the limit (4300 digits)",
        depth_frame({**follow, "a": [["1e300", "1.500"]]}): "a[0] price must be 0 or between 1e-12 and 1e+18",
        depth_frame({**follow, "E": 2**64 + 1}): "E must fit in 64 bits",
        depth_frame({**follow, "E": 4_102_444_800_000}): "E 4102444800000 is not a plausible time",
        depth_frame({**follow, "b": "20472.10"}): "b must be an array of [price, size], got str",
        frame.replace('"s": "BTCUSDT"', '"s": ["BTCUSDT"]'): "symbol must be a non-empty string",
    }


def test_hostile_frames_are_dead_lettered_once_each_and_leave_the_synced_book_as_it_was(
        kafka: KafkaResource, samples: dict[str, Any]) -> None:
    kafka.ensure_topics(topics.ALL_TOPICS)
    publisher = kafka.publisher()
    real, follow = samples["events"][:2]
    hostile = hostile_depth(follow)
    frames = [depth_frame(real), *hostile, depth_frame(follow)]
    with binance_rest_server.running(depth={"BTCUSDT": [samples["bridging"]]}) as rest, \
            binance_ws_server.running(BinanceDepthServer([frames], pause_s=0.2)) as ws:
        stream = BinanceDepthStream(["BTCUSDT"], publisher, BinanceRestClient(rest.base_url), depth=10,
                                    throttle=BookThrottle(publisher, 0.0), base_url=ws.base_url)
        stream_until(stream, lambda: ws.sent == len(frames) and stream.counts.events == 2)

    expected = expected_books(("event", real), ("snapshot", samples["bridging"]), ("event", follow))
    assert [b.sequence for b in expected] == [u_REAL, u_REAL + 7]
    assert [OrderBook.from_json(m.value()) for m in consume(kafka, topics.ORDERBOOK, 2)] == expected
    assert (stream.counts.snapshots, stream.counts.resyncs, stream.counts.reconnects) == (1, 0, 0)
    assert stream.counts.dead_letters == len(hostile) and len(ws.paths) == 1
    letters = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, len(hostile))]
    assert_dead_lettered_once_each(letters, hostile, SOURCE)


def test_only_a_frame_beyond_the_transport_limit_costs_a_reconnect_and_every_book_resyncs(
        kafka: KafkaResource, samples: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    """A frame of exactly ``TRANSPORT_LIMIT_BYTES`` is read and dead-lettered; one byte more and websockets
    closes the connection (1009) unread, the stream reconnects after its backoff, and the book starts
    over from a new snapshot, as after any drop."""
    kafka.ensure_topics(topics.ALL_TOPICS)
    publisher = kafka.publisher()
    real, follow, gap, after_gap = samples["events"]
    sized = json.dumps({"stream": "btcusdt@depth@100ms", "data": {**follow, "s": "SIZED"}})
    largest, too_large = (grown(sized, "SIZED", size) for size in (TRANSPORT_LIMIT_BYTES, TRANSPORT_LIMIT_BYTES + 1))
    connections = [[depth_frame(real), largest, too_large, depth_frame(follow)], [depth_frame(gap), depth_frame(after_gap)]]
    snapshots = {"BTCUSDT": [samples["bridging"], samples["after_gap"]]}
    with binance_rest_server.running(depth=snapshots) as rest, \
            binance_ws_server.running(BinanceDepthServer(connections, pause_s=0.3)) as ws:
        stream = BinanceDepthStream(["BTCUSDT"], publisher, BinanceRestClient(rest.base_url), depth=10,
                                    throttle=BookThrottle(publisher, 0.0), base_url=ws.base_url,
                                    backoff=lambda attempt: 0.05)
        stream_until(stream, lambda: len(ws.paths) == 2 and stream.counts.events == 3)

    assert stream.counts.reconnects == 1 and len(rest.depth_requests) == 2
    assert any("sent 1009 (message too big)" in r.getMessage() for r in caplog.records)
    first = expected_books(("event", real), ("snapshot", samples["bridging"]))
    after = expected_books(("event", gap), ("snapshot", samples["after_gap"]), ("event", after_gap))
    books = [OrderBook.from_json(m.value()) for m in consume(kafka, topics.ORDERBOOK, 2)]
    # an event that arrives while the new snapshot is read is replayed with it: their books may merge
    assert books[0] == first[0] and books[-1] == after[-1] and all(book in first + after for book in books)
    letters = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, 1)]
    assert_dead_lettered_once_each(letters, {largest: "symbol must be at most 256 characters"}, SOURCE)
