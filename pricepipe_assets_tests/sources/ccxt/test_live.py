"""ccxt.pro's own ``binance`` class against a local aggregated-trade stream and REST history fed with
real trades, into real Kafka: the trades that arrive through CCXT are the native parser's, and the
ones missed while the connection was down arrive once, from REST."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.binance.depth import DepthSync, depth_event, depth_snapshot
from pricepipe_assets.sources.binance.formats import trade_from_binance_agg_row
from pricepipe_assets.sources.book_throttle import BookThrottle
from pricepipe_assets.sources.ccxt.live import CcxtLiveFeed, trade_from_ccxt
from pricepipe_assets.sources.ccxt.markets import CcxtSourceError, open_exchange, parse_url_overrides
from pricepipe_assets_tests.sources.ccxt.binance_trade_server import BinanceTradeServer, Drop, agg_rows
from pricepipe_assets_tests.sources.ccxt.conftest import CcxtBinanceServer, ccxt_urls
from pricepipe_assets_tests.support.exchange_servers.binance_depth_server import load_samples, spot_event, spot_snapshot
from pricepipe_assets_tests.support.exchange_servers.binance_ws_server import running
from pricepipe_assets_tests.support.kafka_reads import consume

TRADES = 400
PRICEPIPE = str(Path(sys.executable).parent / "pricepipe")
U_REAL, u_REAL = 2098041693435, 2098041696700  # the real depthUpdate's first and last update ids


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> list[list[str]]:
    return agg_rows(shared_data, TRADES)


def live_venue(exchange: CcxtBinanceServer, stream: BinanceTradeServer) -> Any:
    return open_exchange("binance", parse_url_overrides([*ccxt_urls(exchange), f"binance.ws.spot={stream.url}"]),
                         live=True)


def run_until(feed: CcxtLiveFeed, done: Any, timeout_s: float = 60) -> None:
    stop = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            feed.run(stop)
        except BaseException as error:  # noqa: BLE001 - asserted below
            failure.append(error)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert not failure, failure
    assert done(), feed.status_line()


@pytest.fixture()
def stream(rows: list[list[str]], exchange: CcxtBinanceServer) -> Iterator[BinanceTradeServer]:
    server = BinanceTradeServer("BTCUSDT", rows, [Drop(after=150, missed=60, repeated=20)])
    exchange.trade_history = server.agg_trades
    with running(server):
        yield server


def test_trades_through_ccxt_are_the_native_parsers_and_a_reconnect_gap_arrives_once(
        exchange: CcxtBinanceServer, stream: BinanceTradeServer, publisher: Publisher, kafka: KafkaResource,
        rows: list[list[str]]) -> None:
    feed = CcxtLiveFeed(publisher, live_venue(exchange, stream), ["BTC/USDT"], backoff=lambda _: 0.05)

    run_until(feed, lambda: feed.counts.trades >= TRADES)
    publisher.flush()

    assert stream.connections == 2 and feed.counts.reconnects == 1
    # trades 150-189 passed while the feed was away and only REST has them; 190-209 came both ways
    assert feed.counts.filled >= 40 and feed.counts.repeats >= 1
    messages = consume(kafka, topics.TRADES, TRADES)
    assert len(messages) == TRADES
    assert sorted(m.value() for m in messages) == sorted(trade_from_binance_agg_row(r, "BTCUSDT").to_json()
                                                         for r in rows)
    assert {m.key() for m in messages} == {b"BTCUSDT"}
    assert [q["symbol"] for q in stream.rest_requests] and all(q["symbol"] == "BTCUSDT" for q in stream.rest_requests)


def test_an_unknown_market_stops_the_feed_with_a_clear_error(exchange: CcxtBinanceServer,
                                                            stream: BinanceTradeServer, publisher: Publisher) -> None:
    feed = CcxtLiveFeed(publisher, live_venue(exchange, stream), ["DOGE/EUR"])

    with pytest.raises(CcxtSourceError, match="binance has no market 'DOGE/EUR'"):
        feed.run(threading.Event())


def test_a_venue_without_a_ccxt_pro_client_is_a_clear_error() -> None:
    with pytest.raises(CcxtSourceError, match="no WebSocket client \\(ccxt.pro\\) for bitflyer"):
        open_exchange("bitflyer", {}, live=True)


def test_a_trade_without_a_taker_side_is_refused_with_the_reason() -> None:
    with pytest.raises(Exception, match="side must be buy or sell"):
        trade_from_ccxt({"id": "1", "timestamp": 1_704_067_200_000, "price": 1.0, "amount": 1.0, "side": None},
                        "kraken", "XXBTZUSD")


def test_trades_are_keyed_and_named_as_the_contract_says(rows: list[list[str]]) -> None:
    wire = {"id": rows[0][0], "timestamp": int(rows[0][5]), "price": float(rows[0][1]), "amount": float(rows[0][2]),
            "side": "sell" if rows[0][6] == "true" else "buy"}
    assert json.loads(trade_from_ccxt(wire, "binance", "BTCUSDT").to_json()) == json.loads(
        trade_from_binance_agg_row(rows[0], "BTCUSDT").to_json())


def test_order_books_through_ccxt_are_the_native_sync_of_the_same_snapshot_and_events(
        exchange: CcxtBinanceServer, publisher: Publisher, kafka: KafkaResource, shared_data: Path) -> None:
    """The real snapshot with its update id moved into the real event's range, the real event, and the
    event that follows it built from real levels, as in the native depth tests."""
    snapshot_rows, update_rows = load_samples(shared_data)
    real = spot_event(update_rows)
    follow = {**real, "E": real["E"] + 100, "U": u_REAL + 1, "u": u_REAL + 7,
              "b": [["20472.10", "0.000"]], "a": [["20472.20", "1.500"]]}
    snapshot = spot_snapshot(snapshot_rows, U_REAL + 100)
    exchange.depth = {"BTCUSDT": [snapshot]}
    native = DepthSync("BTCUSDT")
    native.on_event(depth_event(real))
    native.on_snapshot(depth_snapshot(snapshot))
    native.on_event(depth_event(follow))
    expected = native.book(10)
    assert expected is not None
    stream = BinanceTradeServer("BTCUSDT", [], [], depth_events=[real, follow])
    with running(stream):
        feed = CcxtLiveFeed(publisher, live_venue(exchange, stream), ["BTC/USDT"],
                            books=BookThrottle(publisher, 0.0), book_depth=10)
        run_until(feed, lambda: feed.counts.books >= 2)
    publisher.flush()

    books = [m.value() for m in consume(kafka, topics.ORDERBOOK, 2)]
    assert books[-1] == expected.to_json()


def test_the_feed_command_streams_the_configured_markets_until_ctrl_c(
        exchange: CcxtBinanceServer, stream: BinanceTradeServer, kafka: KafkaResource, rows: list[list[str]]) -> None:
    kafka.ensure_topics(topics.ALL_TOPICS)
    env = {**os.environ, "PRICEPIPE_TOPIC_PREFIX": kafka.topic_prefix, "PRICEPIPE_CCXT_MARKETS": "binance:BTC/USDT",
           "PRICEPIPE_CCXT_URLS": ",".join([*ccxt_urls(exchange), f"binance.ws.spot={stream.url}"])}
    feed = subprocess.Popen([PRICEPIPE, "feed", "--source", "ccxt"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        messages = consume(kafka, topics.TRADES, TRADES, timeout_s=30)
    finally:
        feed.send_signal(signal.SIGINT)
        _, stderr = feed.communicate(timeout=60)

    assert feed.returncode == 0, stderr
    assert "ccxt-binance stopped" in stderr
    assert "BTC/USDT book: BadSymbol" in stderr  # the server holds no book: trades go on without one
    assert sorted(m.value() for m in messages) == sorted(trade_from_binance_agg_row(r, "BTCUSDT").to_json()
                                                         for r in rows)


def test_the_feed_command_without_markets_says_which_setting_to_set() -> None:
    env = {name: value for name, value in os.environ.items() if name != "PRICEPIPE_CCXT_MARKETS"}
    result = subprocess.run([PRICEPIPE, "feed", "--source", "ccxt"], env=env, capture_output=True, text=True,
                            timeout=120)

    assert result.returncode == 1
    assert "PRICEPIPE_CCXT_MARKETS, which is not set" in result.stderr


def test_a_refused_trade_is_dead_lettered_once_and_the_stream_goes_on(
        exchange: CcxtBinanceServer, publisher: Publisher, kafka: KafkaResource, rows: list[list[str]]) -> None:
    served = [list(row) for row in rows[:50]]
    served[10][1] = "0.00000000"  # a price of 0
    stream = BinanceTradeServer("BTCUSDT", served, [Drop(after=20, missed=0, repeated=15)])
    exchange.trade_history = stream.agg_trades
    with running(stream):
        feed = CcxtLiveFeed(publisher, live_venue(exchange, stream), ["BTC/USDT"], backoff=lambda _: 0.05)
        run_until(feed, lambda: feed.counts.trades >= 49)
    publisher.flush()

    assert len(consume(kafka, topics.TRADES, 49)) == 49
    (letter,) = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, 1)]
    assert letter["source_topic"] == "ccxt.binance.trades" and "price must be positive" in letter["error"]
