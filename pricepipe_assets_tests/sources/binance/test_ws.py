"""Binance kline stream against local WebSocket and REST servers replaying real 1m candles, into real Kafka."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.backoff import exponential_backoff
from pricepipe_assets.sources.binance.rest import BinanceRestClient
from pricepipe_assets.sources.binance.ws import SOURCE, BinanceKlineStream
from pricepipe_assets.sources.frames import TRANSPORT_LIMIT_BYTES
from pricepipe_assets_tests.sources.binance.test_rest import dump_fields, message_fields
from pricepipe_assets_tests.support.exchange_servers import binance_rest_server, binance_ws_server
from pricepipe_assets_tests.support.exchange_servers.binance_rest_server import BinanceRestServer, load_day
from pricepipe_assets_tests.support.exchange_servers.binance_ws_server import BinanceWsServer, Drop, kline_frame
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

DAY = "2024-01-01"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
MINUTE = 60_000

Day = dict[str, list[list[str]]]


class RecordedBackoff:
    """Remembers which attempt in a row each wait was for, and waits not at all."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.attempts: list[int] = []
        self.seconds = seconds

    def __call__(self, attempt: int) -> float:
        self.attempts.append(attempt)
        return self.seconds


@pytest.fixture(scope="module")
def day(shared_data: Path) -> Day:
    return {symbol: load_day(shared_data, symbol, DAY) for symbol in SYMBOLS}


@pytest.fixture()
def rest_exchange(day: Day) -> Iterator[BinanceRestServer]:
    with binance_rest_server.running(day) as server:
        yield server


@pytest.fixture()
def publisher(kafka: KafkaResource) -> Publisher:
    kafka.ensure_topics(topics.ALL_TOPICS)
    return kafka.publisher()


def first_minutes(day: Day, minutes: int) -> Day:
    return {symbol: rows[:minutes] for symbol, rows in day.items()}


def kline_stream(ws: BinanceWsServer, rest: BinanceRestServer, publisher: Publisher, *,
                 backoff: Callable[[int], float] | None = None,
                 clock: Callable[[], int] | None = None) -> BinanceKlineStream:
    return BinanceKlineStream(SYMBOLS, publisher, BinanceRestClient(rest.base_url), base_url=ws.base_url,
                              backoff=backoff or RecordedBackoff(), clock=clock or ws.now_ms, stop_poll_s=0.05)


def stream_until(stream: BinanceKlineStream, done: Callable[[], bool], give_up_s: float = 60) -> None:
    """Run the stream in a thread as the CLI does, and stop it once ``done`` (or the server went quiet for good)."""
    stop = threading.Event()
    future = stream.start(stop)
    give_up = time.monotonic() + give_up_s
    while not done() and not future.done() and time.monotonic() < give_up:
        time.sleep(0.05)
    stop.set()
    future.result(timeout=30)
    assert done(), f"the stream stopped short: {stream.counts.status_line()}"


def all_candles_arrived(stream: BinanceKlineStream, expected: int) -> Callable[[], bool]:
    return lambda: stream.counts.candles + stream.counts.gap_filled >= expected


def assert_topic_equals_dump(kafka: KafkaResource, day: Day) -> None:
    """``candles.1m`` holds each dump line exactly once, per symbol in open-time order, and nothing else."""
    expected = sum(len(rows) for rows in day.values())
    messages = consume(kafka, topics.CANDLES_1M, expected)
    assert len(messages) == expected, f"{len(messages)} candles in Kafka, expected exactly {expected}"
    values = [json.loads(m.value()) for m in messages]
    assert all(v["is_closed"] and v["interval"] == "1m" and v["exchange"] == "binance" for v in values)
    for symbol, rows in day.items():
        mine = [message_fields(v) for v in values if v["symbol"] == symbol]
        assert mine == [dump_fields(row) for row in rows], f"{symbol} differs from the dump"


def test_dropped_connections_leave_no_gap_and_no_duplicate(day: Day, rest_exchange: BinanceRestServer,
                                                           publisher: Publisher, kafka: KafkaResource) -> None:
    drops = [
        Drop(after_frames=1001, skip_minutes=7),  # cut inside minute 250: its closes and 6 more never come
        Drop(after_frames=2003, skip_minutes=0, clean=True),  # between minute 757's two closes: one comes again
        Drop(after_frames=1500, skip_minutes=30, refuse=2),  # away 30 minutes, two handshakes refused
        Drop(after_frames=4 * (1430 - 1162), skip_minutes=10),  # away for the day's last 10 minutes
    ]
    backoff = RecordedBackoff()
    with binance_ws_server.running(BinanceWsServer(day, drops=drops)) as ws:
        stream = kline_stream(ws, rest_exchange, publisher, backoff=backoff)
        stream_until(stream, all_candles_arrived(stream, 2 * 1440))
        assert ws.finished and ws.refused == 2

    assert_topic_equals_dump(kafka, day)
    assert stream.counts.reconnects == 4
    assert stream.counts.gap_filled >= 2 * (7 + 30 + 10)
    assert stream.counts.dead_letters == 0
    assert backoff.attempts == [1, 1, 1, 2, 3, 1], "failed attempts in a row must grow the wait, a healthy one reset it"


def test_gaps_the_reconnect_fill_could_not_see_yet_are_filled_before_the_next_candle(
        day: Day, rest_exchange: BinanceRestServer, publisher: Publisher, kafka: KafkaResource) -> None:
    """REST lags the stream: right after a reconnect it may not serve the last minutes yet."""
    drops = [Drop(after_frames=1001, skip_minutes=7), Drop(after_frames=1500, skip_minutes=30)]
    with binance_ws_server.running(BinanceWsServer(day, drops=drops)) as ws:
        lagging_clock = lambda: ws.now_ms() - 10 * MINUTE  # noqa: E731
        stream = kline_stream(ws, rest_exchange, publisher, clock=lagging_clock)
        stream_until(stream, all_candles_arrived(stream, 2 * 1440))

    assert_topic_equals_dump(kafka, day)
    assert stream.counts.reconnects == 2
    assert stream.counts.gap_filled >= 2 * (7 + 30)


def test_open_updates_are_not_published(day: Day, rest_exchange: BinanceRestServer, publisher: Publisher,
                                        kafka: KafkaResource) -> None:
    """Each minute comes twice, an open update and the close; the update's prices differ from the close's."""
    twenty = first_minutes(day, 20)
    with binance_ws_server.running(BinanceWsServer(twenty, open_updates=True)) as ws:
        stream = kline_stream(ws, rest_exchange, publisher)
        stream_until(stream, lambda: ws.finished and stream.counts.candles >= 40)

    assert_topic_equals_dump(kafka, twenty)
    assert (stream.counts.candles, stream.counts.gap_filled) == (40, 0)


def with_field(frame: str, **changes: Any) -> str:
    """A kline frame with fields of its ``k`` object changed."""
    message = json.loads(frame)
    message["data"]["k"].update(changes)
    return json.dumps(message)


def test_malformed_frames_are_dead_lettered_with_a_reason_and_the_stream_goes_on(
        day: Day, rest_exchange: BinanceRestServer, publisher: Publisher, kafka: KafkaResource) -> None:
    sixty = first_minutes(day, 60)
    btc_30 = kline_frame("BTCUSDT", sixty["BTCUSDT"][30], closed=True)
    bad: dict[str | bytes, str] = {
        "this is not JSON": "not valid JSON",
        b"\xff\xfe\x00binary": "not valid JSON",
        '{"stream": "btcusdt@kline_1m"}': "expected a combined-stream frame",
        "[1, 2, 3]": "expected a combined-stream frame",
        with_field(btc_30, c="99999.00000000"): "close 99999.0 is outside",
        with_field(btc_30, x="true"): "'x' must be true or false",
        with_field(btc_30, o="NaN"): "open must be finite",
        with_field(btc_30, i=["1m"]): "expected a 1m kline, got interval \"['1m']\"",
        with_field(btc_30, i="1h"): "expected a 1m kline, got interval '1h'",
        btc_30.replace("BTCUSDT", "XRPUSDT"): "XRPUSDT, which this stream did not subscribe to",
    }
    raws = list(bad)
    extra = {5: raws[:4], 150: raws[4:]}
    with binance_ws_server.running(BinanceWsServer(sixty, extra_frames=extra)) as ws:
        stream = kline_stream(ws, rest_exchange, publisher)
        stream_until(stream, lambda: ws.finished and stream.counts.candles >= 120)

    assert_topic_equals_dump(kafka, sixty)
    assert stream.counts.dead_letters == len(bad)
    letters = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, len(bad))]
    assert len(letters) == len(bad)
    errors = {base64.b64decode(letter["raw"]): letter["error"] for letter in letters}
    for raw, reason in bad.items():
        assert reason in errors[raw if isinstance(raw, bytes) else raw.encode()]
    assert {letter["source_topic"] for letter in letters} == {"binance.ws.kline_1m"}


def hostile_klines(kline: str) -> dict[WireFrame, str]:
    """Frames no venue should send, made from a real closed kline, each with (part of) its reason."""
    return {
        NESTED_ARRAY: "nested more deeply than Python's recursion limit",
        grown(with_field(kline, s="SIZED"), "SIZED", MEGABYTES): "symbol must be at most 256 characters",
        random_binary(): "not valid JSON",
        invalid_utf8(kline, "BTCUSDT"): "can't decode byte 0xff",
        with_field(kline, n=-1).replace('"n": -1', f'"n": {LONG_NUMBER}'): "Exceeds the limit (4300 digits)",
        with_field(kline, c="1e300"): "close must be 0 or between 1e-12 and 1e+18 in magnitude, got 1e+300",
        with_field(kline, t=2**64 + 60_000): "open_time must fit in 64 bits",
        with_field(kline, n=[1]): "trades must be an integer",
        with_field(kline, o={"price": "1"}): "open must be a number, got dict",
    }


def test_hostile_frames_are_dead_lettered_once_each_while_the_real_candles_arrive_unchanged(
        day: Day, rest_exchange: BinanceRestServer, publisher: Publisher, kafka: KafkaResource) -> None:
    """In the middle of the hour, after minute 37's first frames: none costs a reconnect, none ends the stream."""
    sixty = first_minutes(day, 60)
    hostile = hostile_klines(kline_frame("BTCUSDT", sixty["BTCUSDT"][30], closed=True))
    with binance_ws_server.running(BinanceWsServer(sixty, extra_frames={150: list(hostile)})) as ws:
        stream = kline_stream(ws, rest_exchange, publisher)
        stream_until(stream, lambda: ws.finished and stream.counts.candles >= 120)

    assert_topic_equals_dump(kafka, sixty)
    assert (stream.counts.candles, stream.counts.gap_filled, stream.counts.reconnects) == (120, 0, 0)
    assert ws.connections == 1
    assert stream.counts.dead_letters == len(hostile)
    letters = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, len(hostile))]
    assert_dead_lettered_once_each(letters, hostile, SOURCE)


def test_only_a_frame_beyond_the_transport_limit_costs_a_reconnect_whose_gap_fill_keeps_the_candles_complete(
        day: Day, rest_exchange: BinanceRestServer, publisher: Publisher, kafka: KafkaResource,
        caplog: pytest.LogCaptureFixture) -> None:
    """A frame of exactly ``TRANSPORT_LIMIT_BYTES`` is read and dead-lettered; one byte more and websockets
    closes the connection (1009) unread, the stream reconnects after its backoff, and the minutes the
    lost connection carried come over REST, as after any drop."""
    sixty = first_minutes(day, 60)
    kline = with_field(kline_frame("BTCUSDT", sixty["BTCUSDT"][30], closed=True), s="SIZED")
    largest, too_large = (grown(kline, "SIZED", size) for size in (TRANSPORT_LIMIT_BYTES, TRANSPORT_LIMIT_BYTES + 1))
    backoff = RecordedBackoff()
    with binance_ws_server.running(BinanceWsServer(sixty, extra_frames={100: [largest], 150: [too_large]})) as ws:
        stream = kline_stream(ws, rest_exchange, publisher, backoff=backoff)
        stream_until(stream, lambda: ws.finished and all_candles_arrived(stream, 120)())

    assert_topic_equals_dump(kafka, sixty)
    assert ws.connections == 2 and any("sent 1009 (message too big)" in r.getMessage() for r in caplog.records)
    assert stream.counts.reconnects == 1 and backoff.attempts == [1]
    assert stream.counts.dead_letters == 1
    letters = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, 1)]
    assert_dead_lettered_once_each(letters, {largest: "symbol must be at most 256 characters"}, SOURCE)


def test_stop_ends_the_stream_while_it_waits_to_reconnect(publisher: Publisher) -> None:
    with socket.socket() as probe:  # a port nobody listens on: every attempt fails
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backoff = RecordedBackoff(seconds=3600)
    stream = BinanceKlineStream(SYMBOLS, publisher, BinanceRestClient("http://127.0.0.1:1"),
                                base_url=f"ws://127.0.0.1:{port}", backoff=backoff, stop_poll_s=0.05)
    stop = threading.Event()
    future = stream.start(stop)
    while not backoff.attempts and not future.done():
        time.sleep(0.05)

    stop.set()
    assert future.result(timeout=30) is None
    assert backoff.attempts == [1]
    assert stream.counts.status_line() == "candles 0, gap-filled 0, reconnects 0, dead letters 0"


def test_backoff_grows_exponentially_to_a_cap_with_jitter_below_it() -> None:
    no_jitter = exponential_backoff(initial_s=1, factor=2, cap_s=30, jitter=0.5, random_fraction=lambda: 0.0)
    full_jitter = exponential_backoff(initial_s=1, factor=2, cap_s=30, jitter=0.5, random_fraction=lambda: 1.0)

    assert [no_jitter(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert [full_jitter(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert no_jitter(10_000) == 30
