"""The BitMEX WebSocket client against a local BitMEX-protocol server fed with real data, publishing
to the real local Kafka."""

from __future__ import annotations

import base64
import csv
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.sources.backoff import exponential_backoff
from pricepipe_assets.sources.bitmex.ws import (
    FRAME_SOURCE,
    QUOTE_SOURCE,
    TRADE_SOURCE,
    TRANSPORT_LIMIT_FACTOR,
    BitmexClient,
)
from pricepipe_assets_tests.support.exchange_servers.bitmex_server import (
    BitmexServer,
    bitmex_quotes_from_tardis_book,
    bitmex_trades_from_tardis,
    table_frame,
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

TRADES_CSV = "samples/trades/tardis_bitmex_trades_XBTUSD_sample.csv"
BOOK_CSV = "samples/orderbook/nautilus_tardis_binance-futures_book_snapshot_5_BTCUSDT.csv"
SYMBOLS = ("XBTUSD", "ETHUSD", "SOLUSD", "DOGEUSD")
ALL_SUBSCRIPTIONS = frozenset(f"{table}:{symbol}" for table in ("trade", "quote") for symbol in SYMBOLS)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    """Poll ``condition``; the timeout only keeps a broken client from hanging the run."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def values(messages: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(message.value()) for message in messages]


@pytest.fixture()
def trade_items(shared_data: Path) -> list[dict[str, Any]]:
    return bitmex_trades_from_tardis(shared_data / TRADES_CSV)


@pytest.fixture()
def quote_items(shared_data: Path) -> list[dict[str, Any]]:
    return bitmex_quotes_from_tardis_book(shared_data / BOOK_CSV, "XBTUSD")


@pytest.fixture()
def server() -> Iterator[BitmexServer]:
    with BitmexServer(SYMBOLS, trade_partial_size=5) as running:
        yield running


@pytest.fixture()
def start_client(kafka: KafkaResource, server: BitmexServer) -> Iterator[Callable[..., BitmexClient]]:
    """Starts clients in threads, as the CLI does; stops them afterwards and fails on their errors."""
    kafka.ensure_topics([topics.TRADES, topics.QUOTES, topics.DEADLETTER])
    stop = threading.Event()
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(symbols: tuple[str, ...] = SYMBOLS, **options: Any) -> BitmexClient:
        backoff = exponential_backoff(initial_s=0.05, factor=2, cap_s=0.2, random_fraction=random.Random(11).random)
        client = BitmexClient(kafka.publisher(), url=server.url, symbols=symbols, backoff=backoff, poll_s=0.05,
                              **options)

        def target() -> None:
            try:
                client.run(stop)
            except BaseException as error:  # reported by the fixture, not lost in the thread
                errors.append(error)

        thread = threading.Thread(target=target, name="bitmex-client", daemon=True)
        thread.start()
        threads.append(thread)
        return client

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "the client did not stop when asked"
    assert errors == []


def expected_trades(shared_data: Path) -> list[dict[str, Any]]:
    """The contract's trade records, straight from the tardis CSV (not through the test server)."""
    with (shared_data / TRADES_CSV).open(newline="") as source:
        return [{"v": 1, "exchange": "bitmex", "symbol": row["symbol"], "trade_id": row["id"],
                 "ts": int(row["timestamp"]) // 1000, "side": row["side"], "size": float(row["amount"]),
                 "price": float(row["price"])} for row in csv.DictReader(source)]


def expected_quotes(shared_data: Path) -> list[dict[str, Any]]:
    with (shared_data / BOOK_CSV).open(newline="") as source:
        return [{"v": 1, "exchange": "bitmex", "symbol": "XBTUSD", "ts": int(row["timestamp"]) // 1000,
                 "bid": float(row["bids[0].price"]), "ask": float(row["asks[0].price"]),
                 "bid_size": float(row["bids[0].amount"]), "ask_size": float(row["asks[0].amount"])}
                for row in csv.DictReader(source)]


def test_every_real_trade_arrives_once_across_a_reconnect_with_a_repeating_partial(
        kafka: KafkaResource, server: BitmexServer, start_client: Callable[..., BitmexClient],
        trade_items: list[dict[str, Any]], shared_data: Path) -> None:
    server.seed("trade", trade_items[:4])
    client = start_client()
    wait_until(lambda: client.counts.trades == 4, "the partial's 4 trades")
    server.insert("trade", trade_items[4:7])
    wait_until(lambda: client.counts.trades == 7, "3 inserted trades")

    server.drop_connections()
    # the new connection's partial repeats the last 5 trades, all delivered already
    wait_until(lambda: client.counts.duplicates == 5, "the repeated partial")
    assert server.connections == 2 and client.counts.reconnects == 1
    server.insert("trade", trade_items[7:])
    wait_until(lambda: client.counts.trades == 10, "the last 3 trades")

    messages = consume(kafka, topics.TRADES, 10)
    assert values(messages) == expected_trades(shared_data)
    assert {message.key() for message in messages} == {b"XBTUSD"}
    assert client.counts.dead_letters == 0


def test_real_quotes_arrive_once_across_a_reconnect(
        kafka: KafkaResource, server: BitmexServer, start_client: Callable[..., BitmexClient],
        quote_items: list[dict[str, Any]], shared_data: Path) -> None:
    server.seed("quote", quote_items[:1])
    client = start_client()
    wait_until(lambda: client.counts.quotes == 1, "the partial's quote")
    server.insert("quote", quote_items[1:6])
    wait_until(lambda: client.counts.quotes == 6, "5 inserted quotes")

    server.drop_connections()
    wait_until(lambda: client.counts.duplicates == 1, "the partial repeating the last quote")
    server.insert("quote", quote_items[6:])
    wait_until(lambda: client.counts.quotes == 10, "the last 4 quotes")

    assert values(consume(kafka, topics.QUOTES, 10)) == expected_quotes(shared_data)


def test_subscribes_logs_a_refused_subscription_and_keeps_a_quiet_connection_alive_with_ping_pong(
        kafka: KafkaResource, server: BitmexServer, start_client: Callable[..., BitmexClient],
        trade_items: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pricepipe_assets.sources.bitmex.ws")
    client = start_client(symbols=(*SYMBOLS, "NOPEUSD"), ping_after_s=0.1, pong_timeout_s=5)
    wait_until(lambda: client.counts.errors == 2, "BitMEX's error answers for NOPEUSD")

    assert server.subscribe_requests == [[*(f"trade:{s}" for s in (*SYMBOLS, "NOPEUSD")),
                                          *(f"quote:{s}" for s in (*SYMBOLS, "NOPEUSD"))]]
    assert client.subscriptions == ALL_SUBSCRIPTIONS
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refusals) == 2 and all("NOPEUSD" in line and "Unknown or expired symbol" in line for line in refusals)

    wait_until(lambda: server.pings >= 3, "three pings on the quiet connection")
    assert server.connections == 1 and client.counts.reconnects == 0

    server.insert("trade", trade_items[:1])
    assert values(consume(kafka, topics.TRADES, 1))[0]["trade_id"] == trade_items[0]["trdMatchID"]


def test_a_server_that_stops_answering_pings_is_left_for_a_new_connection(
        kafka: KafkaResource, server: BitmexServer, start_client: Callable[..., BitmexClient],
        trade_items: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pricepipe_assets.sources.bitmex.ws")
    server.answer_pings = False
    client = start_client(ping_after_s=0.1, pong_timeout_s=0.2)
    wait_until(lambda: server.connections >= 2, "a reconnect after the missing pong")
    server.answer_pings = True

    assert server.pings >= 1 and client.counts.reconnects >= 1
    assert any("no pong" in record.getMessage() for record in caplog.records)
    wait_until(lambda: client.subscriptions == ALL_SUBSCRIPTIONS, "the subscriptions on the new connection")
    server.insert("trade", trade_items[:2])
    assert [v["trade_id"] for v in values(consume(kafka, topics.TRADES, 2))] == [
        item["trdMatchID"] for item in trade_items[:2]]


def test_malformed_frames_go_to_deadletter_with_a_reason_while_good_elements_arrive(
        kafka: KafkaResource, server: BitmexServer, start_client: Callable[..., BitmexClient],
        trade_items: list[dict[str, Any]], quote_items: list[dict[str, Any]], shared_data: Path) -> None:
    client = start_client(max_frame_bytes=4096)
    wait_until(lambda: client.subscriptions == ALL_SUBSCRIPTIONS, "the subscriptions")

    broken = '{"table":"trade","action":"insert","data":[{"symbol":"XBTUSD",'
    negative = {**trade_items[1], "size": -trade_items[1]["size"]}
    no_bid = {**quote_items[1], "bidPrice": None}
    oversized = table_frame("trade", "insert", trade_items[3:] * 3)
    assert len(oversized.encode()) > 4096
    server.send(broken)
    server.send(table_frame("trade", "insert", [trade_items[0], negative, trade_items[2]]))
    server.send(table_frame("quote", "insert", [quote_items[0], no_bid, quote_items[2]]))
    server.send(table_frame("quote", "update", [quote_items[3]]))
    server.send(oversized)
    server.send(table_frame("trade", "insert", trade_items[3:]))
    wait_until(lambda: client.counts.trades == 9, "the 9 good trades")

    good_trades = [row for i, row in enumerate(expected_trades(shared_data)) if i != 1]
    assert values(consume(kafka, topics.TRADES, 9)) == good_trades
    assert values(consume(kafka, topics.QUOTES, 2)) == [expected_quotes(shared_data)[i] for i in (0, 2)]

    letters = values(consume(kafka, topics.DEADLETTER, 4))

    def letter(reason_start: str) -> tuple[str, str, bytes]:
        found = [one for one in letters if one["error"].startswith(reason_start)]
        assert len(found) == 1, f"one dead letter starting {reason_start!r} expected in {letters}"
        return found[0]["source_topic"], found[0]["error"], base64.b64decode(found[0]["raw"])

    assert letter("not valid JSON")[::2] == (FRAME_SOURCE, broken.encode())
    source, reason, raw = letter("size")
    assert (source, reason, json.loads(raw)) == (TRADE_SOURCE, "size must be positive, got -1.0", negative)
    source, reason, raw = letter("bidPrice")
    assert (source, reason, json.loads(raw)) == (QUOTE_SOURCE, "bidPrice must be a number, got NoneType", no_bid)
    source, reason, raw = letter("frame of")
    assert (source, raw) == (FRAME_SOURCE, oversized.encode())
    assert f"{len(oversized.encode())} bytes exceeds the limit of 4096 bytes" in reason
    assert (client.counts.dead_letters, client.counts.ignored, client.counts.duplicates) == (4, 1, 0)


def element_json(item: dict[str, Any]) -> bytes:
    """An element as the client writes it into its dead letter: compact JSON."""
    return json.dumps(item, separators=(",", ":")).encode()


def test_hostile_frames_are_dead_lettered_once_each_while_the_real_trades_and_quotes_arrive_unchanged(
        kafka: KafkaResource, server: BitmexServer, start_client: Callable[..., BitmexClient],
        trade_items: list[dict[str, Any]], quote_items: list[dict[str, Any]], shared_data: Path) -> None:
    """Frames that cannot be read go to ``deadletter`` whole; a readable frame's bad element goes alone.
    The fixture fails the test if the client ended before it was told to stop."""
    client = start_client()
    wait_until(lambda: client.subscriptions == ALL_SUBSCRIPTIONS, "the subscriptions")
    server.insert("trade", trade_items[:3])
    server.insert("quote", quote_items[:3])
    wait_until(lambda: (client.counts.trades, client.counts.quotes) == (3, 3), "the first trades and quotes")

    trade, quote = trade_items[3], quote_items[3]
    frames: dict[WireFrame, str] = {
        NESTED_ARRAY: "nested more deeply than Python's recursion limit",
        grown(table_frame("trade", "insert", [{**trade, "trdMatchID": "SIZED"}]), "SIZED", MEGABYTES):
            f"frame of {MEGABYTES} bytes exceeds the limit of 1048576 bytes",
        random_binary(): "not valid JSON",
        invalid_utf8(table_frame("trade", "insert", [trade]), "XBTUSD"): "can't decode byte 0xff",
        table_frame("trade", "insert", [{**trade, "size": -1}]).replace('"size": -1', f'"size": {LONG_NUMBER}'):
            "Exceeds the limit (4300 digits)",
        table_frame("trade", "insert", {"0": trade}): "trade insert without a data array",
        json.dumps({"table": ["trade"], "action": "insert", "data": [trade]}): "unexpected table \"['trade']\"",
    }
    trades = {  # a readable frame's bad element: its dead letter holds the element
        element_json({**trade, "price": 1e300}): "price must be 0 or between 1e-12 and 1e+18 in magnitude",
        element_json({**trade, "size": 2**70}): "size must be 0 or between 1e-12 and 1e+18 in magnitude",
        element_json({**trade, "timestamp": "9999-12-31T23:59:59.999Z"}): "is not a plausible time",
        element_json({**trade, "trdMatchID": "\ud800"}): "trdMatchID is not encodable as UTF-8",
    }
    quotes = {element_json({**quote, "bidPrice": [quote["bidPrice"]]}): "bidPrice must be a number, got list"}
    for frame in frames:
        server.send(frame)
    for table, rows in (("trade", trades), ("quote", quotes)):
        server.send(table_frame(table, "insert", [json.loads(row) for row in rows]))
    server.insert("trade", trade_items[3:])
    server.insert("quote", quote_items[3:])
    wait_until(lambda: (client.counts.trades, client.counts.quotes) == (10, 10), "every real trade and quote")

    assert values(consume(kafka, topics.TRADES, 10)) == expected_trades(shared_data)
    assert values(consume(kafka, topics.QUOTES, 10)) == expected_quotes(shared_data)
    dead = len(frames) + len(trades) + len(quotes)
    letters = values(consume(kafka, topics.DEADLETTER, dead))
    assert len(letters) == client.counts.dead_letters == dead
    for source, expected in ((FRAME_SOURCE, frames), (TRADE_SOURCE, trades), (QUOTE_SOURCE, quotes)):
        assert_dead_lettered_once_each([one for one in letters if one["source_topic"] == source], expected, source)
    assert (server.connections, client.counts.reconnects, client.counts.duplicates) == (1, 0, 0)


def test_only_a_frame_beyond_the_transport_limit_costs_a_reconnect_and_no_trade_is_lost_or_repeated(
        kafka: KafkaResource, server: BitmexServer, start_client: Callable[..., BitmexClient],
        trade_items: list[dict[str, Any]], shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A frame of exactly the transport limit (``max_frame_bytes`` times ``TRANSPORT_LIMIT_FACTOR``) is
    refused unparsed, and its dead letter still tells the whole frame's size and SHA-256; one byte more
    and websockets closes the connection (1009) unread, and the client reconnects after its backoff."""
    caplog.set_level(logging.WARNING, logger="pricepipe_assets.sources.bitmex.ws")
    max_frame_bytes = 16 * 1024
    client = start_client(max_frame_bytes=max_frame_bytes)
    wait_until(lambda: client.subscriptions == ALL_SUBSCRIPTIONS, "the subscriptions")
    server.insert("trade", trade_items[:4])
    wait_until(lambda: client.counts.trades == 4, "the first trades")

    sized = table_frame("trade", "insert", [{**trade_items[4], "trdMatchID": "SIZED"}])
    limit = max_frame_bytes * TRANSPORT_LIMIT_FACTOR
    largest, too_large = (grown(sized, "SIZED", size) for size in (limit, limit + 1))
    server.send(largest)
    server.send(too_large)
    # the new connection's partial repeats the 4 trades the client has: it is subscribed again
    wait_until(lambda: client.counts.duplicates == 4, "the partial of a new connection")
    server.insert("trade", trade_items[4:])
    wait_until(lambda: client.counts.trades == 10, "the other trades")

    assert any("sent 1009 (message too big)" in record.getMessage() for record in caplog.records)
    assert client.counts.reconnects == 1 and server.connections == 2
    assert values(consume(kafka, topics.TRADES, 10)) == expected_trades(shared_data)
    letters = values(consume(kafka, topics.DEADLETTER, 1))
    assert_dead_lettered_once_each(letters, {largest: f"frame of {limit} bytes exceeds the limit"}, FRAME_SOURCE)
