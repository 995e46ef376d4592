"""Binance REST klines client against a local klines server fed with real 1m candles, into real Kafka."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.binance.rest import BinanceRateLimitError, BinanceRestClient, BinanceRestError, backfill
from pricepipe_assets_tests.support.exchange_servers.binance_rest_server import BinanceRestServer, load_day, running
from pricepipe_assets_tests.support.kafka_reads import consume

DAY = "2024-01-01"
DAY_START = 1_704_067_200_000
DAY_END = DAY_START + 86_400_000 - 1
MINUTE = 60_000


@pytest.fixture(scope="module")
def btc_day(shared_data: Path) -> list[list[str]]:
    return load_day(shared_data, "BTCUSDT", DAY)


@pytest.fixture()
def exchange(btc_day: list[list[str]]) -> Iterator[BinanceRestServer]:
    with running({"BTCUSDT": btc_day}) as server:
        yield server


@pytest.fixture()
def publisher(kafka: KafkaResource) -> Publisher:
    kafka.ensure_topics(topics.ALL_TOPICS)
    return kafka.publisher()


@pytest.fixture()
def sleeps() -> list[float]:
    """The waits the client asked for, recorded instead of slept."""
    return []


@pytest.fixture()
def client(exchange: BinanceRestServer, sleeps: list[float]) -> BinanceRestClient:
    return BinanceRestClient(exchange.base_url, sleep=sleeps.append)


def dump_fields(row: list[str]) -> tuple[Any, ...]:
    """A dump line's values, read straight from the CSV text (independent of the parser under test)."""
    return (int(row[0]), int(row[6]), float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5]),
            float(row[7]), int(row[8]))


def message_fields(value: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(value[name] for name in ("open_time", "close_time", "open", "high", "low", "close", "volume",
                                          "quote_volume", "trades"))


def published_candles(kafka: KafkaResource, expected: int) -> list[dict[str, Any]]:
    """The candle messages, exactly ``expected`` of them, each in open-time order within its symbol."""
    messages = consume(kafka, topics.CANDLES_1M, expected)
    assert len(messages) == expected, f"{len(messages)} candles in Kafka, expected exactly {expected}"
    values = [json.loads(m.value()) for m in messages]
    assert all(m.key().decode() == v["symbol"] for m, v in zip(messages, values, strict=True))
    for symbol in {v["symbol"] for v in values}:
        times = [v["open_time"] for v in values if v["symbol"] == symbol]
        assert times == sorted(times), f"{symbol} candles out of order"
    return values


def assert_equal_to_dump(values: list[dict[str, Any]], rows: list[list[str]]) -> None:
    """The same candles as the dump, row by row, no more, no fewer, none twice."""
    got = sorted(message_fields(v) for v in values)
    assert got == [dump_fields(row) for row in rows]
    assert {(v["exchange"], v["symbol"], v["interval"], v["is_closed"]) for v in values} == {
        ("binance", "BTCUSDT", "1m", True)}


def test_whole_day_arrives_exactly_once_in_two_pages(client: BinanceRestClient, publisher: Publisher,
                                                     exchange: BinanceRestServer, kafka: KafkaResource,
                                                     btc_day: list[list[str]]) -> None:
    result = backfill(client, publisher, "BTCUSDT", "1m", DAY_START, DAY_END)

    assert (result.candles, result.dead_letters, result.last_open_time) == (1440, 0, DAY_END + 1 - MINUTE)
    assert [(int(q["startTime"]), int(q["endTime"]), q["limit"]) for q in exchange.requests] == [
        (DAY_START, DAY_END, "1000"), (DAY_START + 999 * MINUTE + 1, DAY_END, "1000")]
    assert_equal_to_dump(published_candles(kafka, 1440), btc_day)


def test_rate_limit_is_waited_out_as_retry_after_asks(client: BinanceRestClient, publisher: Publisher,
                                                      exchange: BinanceRestServer, kafka: KafkaResource,
                                                      sleeps: list[float], btc_day: list[list[str]]) -> None:
    exchange.rate_limited_calls = {2}

    result = backfill(client, publisher, "BTCUSDT", "1m", DAY_START, DAY_END)

    assert sleeps == [1.0]
    second_page = DAY_START + 999 * MINUTE + 1
    assert [int(q["startTime"]) for q in exchange.requests] == [DAY_START, second_page, second_page]
    assert result.candles == 1440
    assert_equal_to_dump(published_candles(kafka, 1440), btc_day)


def test_rate_limit_that_does_not_end_is_a_clear_error(exchange: BinanceRestServer, sleeps: list[float]) -> None:
    exchange.rate_limited_calls = {1, 2, 3, 4}
    client = BinanceRestClient(exchange.base_url, max_retries=2, sleep=sleeps.append)

    with pytest.raises(BinanceRateLimitError, match=r"BTCUSDT after 2 retries \(HTTP 429.*code -1003\).*127\.0\.0\.1"):
        list(client.candles("BTCUSDT", "1m", DAY_START, DAY_END))
    assert sleeps == [1.0, 1.0]


def test_resume_after_an_open_time_fetches_only_later_candles(client: BinanceRestClient, publisher: Publisher,
                                                              exchange: BinanceRestServer, kafka: KafkaResource,
                                                              btc_day: list[list[str]]) -> None:
    last_stored = int(btc_day[1199][0])

    result = backfill(client, publisher, "BTCUSDT", "1m", DAY_START, DAY_END, after_open_time=last_stored)

    assert [int(q["startTime"]) for q in exchange.requests] == [last_stored + MINUTE]
    assert result.candles == 240
    assert_equal_to_dump(published_candles(kafka, 240), btc_day[1200:])


def test_resume_from_inside_an_interval_starts_at_the_next_boundary(client: BinanceRestClient,
                                                                    btc_day: list[list[str]]) -> None:
    candles = list(client.candles("BTCUSDT", "1m", DAY_START, DAY_START + 10 * MINUTE,
                                  after_open_time=DAY_START + 4 * MINUTE + 30_000))

    assert [c.open_time for c in candles] == [DAY_START + i * MINUTE for i in range(5, 11)]


def test_malformed_rows_are_dead_lettered_and_the_page_goes_on(client: BinanceRestClient, publisher: Publisher,
                                                               exchange: BinanceRestServer, kafka: KafkaResource,
                                                               btc_day: list[list[str]]) -> None:
    close_above_high = exchange.rows["BTCUSDT"][DAY_START + 500 * MINUTE][:]
    close_above_high[4] = "99999.00000000"
    exchange.replace("BTCUSDT", DAY_START + 500 * MINUTE, close_above_high)
    exchange.replace("BTCUSDT", DAY_START + 1200 * MINUTE, {"not": "a row"})

    result = backfill(client, publisher, "BTCUSDT", "1m", DAY_START, DAY_END)

    assert (result.candles, result.dead_letters) == (1438, 2)
    assert_equal_to_dump(published_candles(kafka, 1438), btc_day[:500] + btc_day[501:1200] + btc_day[1201:])
    letters = [json.loads(m.value()) for m in consume(kafka, topics.DEADLETTER, 2)]
    assert len(letters) == 2
    by_raw = {json.dumps(json.loads(base64.b64decode(letter["raw"]))): letter for letter in letters}
    assert "close 99999.0 is outside" in by_raw[json.dumps(close_above_high)]["error"]
    assert "must be a JSON array" in by_raw[json.dumps({"not": "a row"})]["error"]
    assert {letter["source_topic"] for letter in letters} == {"binance.rest.klines"}


def test_malformed_row_without_a_publisher_is_an_error_naming_the_url(client: BinanceRestClient,
                                                                      exchange: BinanceRestServer) -> None:
    exchange.replace("BTCUSDT", DAY_START + 3 * MINUTE, [DAY_START + 3 * MINUTE, "NaN"])

    with pytest.raises(BinanceRestError, match=r"malformed 1m kline for BTCUSDT from http://127\.0\.0\.1:\d+/api/v3/"
                                               r"klines\?symbol=BTCUSDT.*columns, got 2"):
        list(client.candles("BTCUSDT", "1m", DAY_START, DAY_END))


def test_unknown_symbol_is_a_clear_error(client: BinanceRestClient) -> None:
    with pytest.raises(BinanceRestError, match=r"refused klines for NOSUCHCOIN: HTTP 400 Invalid symbol\. "
                                               r"\(code -1121\): http://127\.0\.0\.1:\d+/api/v3/klines\?symbol=NOSUCHCOIN"):
        list(client.candles("NOSUCHCOIN", "1m", DAY_START, DAY_END))


def test_other_http_errors_are_clear_errors(exchange: BinanceRestServer) -> None:
    client = BinanceRestClient(exchange.base_url + "/wrong-prefix")

    with pytest.raises(BinanceRestError, match=r"refused klines for BTCUSDT: HTTP 404 .*/wrong-prefix/api/v3/klines"):
        list(client.candles("BTCUSDT", "1m", DAY_START, DAY_END))
