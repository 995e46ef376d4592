"""CCXT's own ``binance`` class against the local Binance REST server fed with real klines: the
candles that arrive through CCXT are the native client's, and the paging, resume, rate limit and
errors hold as for the native source."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.records import Candle
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.binance.rest import BinanceRestClient
from pricepipe_assets.sources.ccxt.history import CcxtHistory, backfill, candle_from_ohlcv
from pricepipe_assets.sources.ccxt.markets import CcxtSourceError, open_exchange
from pricepipe_assets_tests.sources.ccxt.conftest import ccxt_urls
from pricepipe_assets_tests.support.exchange_servers.binance_rest_server import BinanceRestServer
from pricepipe_assets_tests.support.kafka_reads import consume

DAY_START = 1_704_067_200_000
DAY_END = DAY_START + 86_400_000 - 1
MINUTE = 60_000
YEAR_2021 = (1_609_459_200_000, 1_640_995_200_000 - 1)
PRICEPIPE = str(Path(sys.executable).parent / "pricepipe")


def without_ohlcv_gaps(candle: Candle) -> bytes:
    """The candle's contract JSON with the fields CCXT cannot carry set as the CCXT source sets them."""
    return dataclasses.replace(candle, quote_volume=0.0, trades=0).to_json()


def history(venue: Any, interval: str = "1m", sleeps: list[float] | None = None) -> CcxtHistory:
    options: dict[str, Any] = {"sleep": sleeps.append} if sleeps is not None else {}
    return CcxtHistory.open(venue, "BTC/USDT", interval, **options)


@pytest.mark.parametrize(("interval", "start", "end"), [("1m", DAY_START, DAY_END), ("1d", *YEAR_2021)])
def test_candles_through_ccxt_are_the_native_clients_byte_for_byte_but_the_fields_ohlcv_lacks(
        venue: Any, exchange: BinanceRestServer, interval: str, start: int, end: int) -> None:
    native = list(BinanceRestClient(exchange.base_url).candles("BTCUSDT", interval, start, end))
    through_ccxt = list(history(venue, interval).candles(start, end))

    assert len(through_ccxt) == len(native) == (1440 if interval == "1m" else 365)
    assert [c.to_json() for c in through_ccxt] == [without_ohlcv_gaps(c) for c in native]
    assert {(c.quote_volume, c.trades) for c in through_ccxt} == {(0.0, 0)}
    assert all(c.quote_volume > 0 and c.trades > 0 for c in native)


def test_whole_day_arrives_in_kafka_exactly_once_in_two_pages(venue: Any, exchange: BinanceRestServer,
                                                             publisher: Publisher, kafka: KafkaResource) -> None:
    result = backfill(history(venue), publisher, DAY_START, DAY_END)

    assert (result.symbol, result.candles, result.dead_letters, result.last_open_time) == (
        "BTCUSDT", 1440, 0, DAY_END + 1 - MINUTE)
    pages = [q for q in exchange.requests if q.get("interval") == "1m"]
    assert [(int(q["startTime"]), q["limit"]) for q in pages] == [
        (DAY_START, "1000"), (DAY_START + 1000 * MINUTE, "1000"), (DAY_END + 1, "1000")]
    messages = consume(kafka, topics.CANDLES_1M, 1440)
    assert len(messages) == 1440
    values = [json.loads(m.value()) for m in messages]
    assert sorted(v["open_time"] for v in values) == [DAY_START + i * MINUTE for i in range(1440)]
    assert {(m.key(), v["exchange"], v["symbol"]) for m, v in zip(messages, values, strict=True)} == {
        (b"BTCUSDT", "binance", "BTCUSDT")}


def test_resume_after_the_newest_stored_candle_fetches_only_later_ones(venue: Any, exchange: BinanceRestServer) -> None:
    stored = DAY_START + 1199 * MINUTE

    candles = list(history(venue).candles(DAY_START, DAY_END, after_open_time=stored))

    assert [c.open_time for c in candles] == [stored + i * MINUTE for i in range(1, 241)]
    assert int(exchange.requests[-2]["startTime"]) == stored + MINUTE


def test_rate_limit_is_waited_out_and_the_range_still_arrives_once(venue: Any, exchange: BinanceRestServer) -> None:
    sleeps: list[float] = []
    source = history(venue, sleeps=sleeps)
    exchange.rate_limited_calls = {len(exchange.requests) + 2}

    candles = list(source.candles(DAY_START, DAY_END))

    assert [c.open_time for c in candles] == [DAY_START + i * MINUTE for i in range(1440)]
    assert len(sleeps) == 1 and sleeps[0] > 0
    assert venue.enableRateLimit and venue.rateLimit > 0


def test_rate_limit_that_does_not_end_is_a_clear_error(venue: Any, exchange: BinanceRestServer) -> None:
    source = history(venue, sleeps=[])
    exchange.rate_limited_calls = set(range(len(exchange.requests) + 1, len(exchange.requests) + 20))

    with pytest.raises(CcxtSourceError, match="binance still refuses candles of BTC/USDT after 5 retries"):
        list(source.candles(DAY_START, DAY_END))


def test_a_malformed_row_is_dead_lettered_and_the_page_goes_on(venue: Any, exchange: BinanceRestServer,
                                                               publisher: Publisher, kafka: KafkaResource) -> None:
    broken = DAY_START + 10 * MINUTE
    row = list(exchange.rows["BTCUSDT"][broken])
    row[2] = "0.5"  # the high below the low
    exchange.replace("BTCUSDT", broken, row)

    result = backfill(history(venue), publisher, DAY_START, DAY_END)

    assert (result.candles, result.dead_letters) == (1439, 1)
    (letter,) = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, 1)]
    assert letter["source_topic"] == "ccxt.binance.ohlcv" and "high 0.5 is below low" in letter["error"]


def test_a_market_is_found_by_ccxt_symbol_venue_id_or_contract_name(venue: Any) -> None:
    for name in ("BTC/USDT", "BTCUSDT", "btcusdt"):
        assert CcxtHistory.open(venue, name, "1m").market["symbol"] == "BTC/USDT"


def test_unknown_market_is_a_clear_error(venue: Any) -> None:
    with pytest.raises(CcxtSourceError, match="binance has no market 'BTC/EUR'"):
        CcxtHistory.open(venue, "BTC/EUR", "1m")


def test_unknown_exchange_is_a_clear_error_with_a_suggestion() -> None:
    with pytest.raises(CcxtSourceError, match=r"unknown CCXT exchange 'krakn' \(did you mean kraken"):
        open_exchange("krakn", {})


def test_a_venue_without_candle_history_is_a_clear_error() -> None:
    with pytest.raises(CcxtSourceError, match="bitflyer offers no candle history"):
        CcxtHistory.open(open_exchange("bitflyer", {}), "BTC/JPY", "1m")


def test_an_endpoint_key_the_class_lacks_is_refused_rather_than_left_pointing_at_the_venue() -> None:
    with pytest.raises(CcxtSourceError, match=r"no endpoint urls\['api'\] key 'publik'.*public"):
        open_exchange("binance", {"binance": {"publik": "http://127.0.0.1:1"}})


def test_an_ohlcv_row_without_a_close_is_refused_with_the_reason() -> None:
    with pytest.raises(Exception, match="close"):
        candle_from_ohlcv([DAY_START, 1.0, 2.0, 0.5, None, 3.0], "kraken", "XXBTZUSD", "1m")


def test_the_backfill_command_publishes_through_ccxt_and_resumes_after_the_stored_candle(
        venue: Any, exchange: BinanceRestServer, kafka: KafkaResource, cassandra: CassandraResource,
        tmp_path: Path) -> None:
    stored = DAY_START + 1199 * MINUTE
    insert = cassandra.prepare("INSERT INTO candles (symbol, interval, bucket, open_time, close) VALUES (?, ?, ?, ?, ?)")
    cassandra.session().execute(insert, ("BTCUSDT", "1m", dt.date(2024, 1, 1),
                                         dt.datetime.fromtimestamp(stored / 1000, dt.UTC), 42000.0))
    env = {**os.environ, "PRICEPIPE_TOPIC_PREFIX": kafka.topic_prefix, "PRICEPIPE_KEYSPACE": cassandra.keyspace,
           "PRICEPIPE_LAKE_URI": str(tmp_path / "lake"), "PRICEPIPE_CCXT_URLS": ",".join(ccxt_urls(exchange))}

    result = subprocess.run([PRICEPIPE, "backfill", "--source", "ccxt", "--exchange", "binance", "--symbol", "BTC/USDT",
                             "--start", "2024-01-01", "--end", "2024-01-01"], env=env, capture_output=True, text=True,
                            timeout=300)

    assert result.returncode == 0, result.stderr
    assert "resuming after the last stored candle, 2024-01-01T19:59:00+00:00" in result.stderr
    assert "binance BTC/USDT as BTCUSDT 1m 2024-01-01..2024-01-01 via CCXT: 240 candles published" in result.stderr
    opens = sorted(json.loads(m.value())["open_time"] for m in consume(kafka, topics.CANDLES_1M, 240))
    assert opens == [stored + i * MINUTE for i in range(1, 241)]


@pytest.mark.parametrize(("arguments", "message"), [
    (["--exchange", "krakn", "--symbol", "BTC/USD"], "unknown CCXT exchange 'krakn' (did you mean kraken"),
    (["--symbol", "BTC/USD"], "needs --exchange, a CCXT exchange id"),
    (["--exchange", "bitflyer", "--symbol", "BTC/JPY"], "bitflyer offers no candle history"),
])
def test_the_backfill_command_names_what_is_wrong(arguments: list[str], message: str) -> None:
    result = subprocess.run([PRICEPIPE, "backfill", "--source", "ccxt", "--start", "2024-01-01", "--end", "2024-01-01",
                             *arguments], capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
