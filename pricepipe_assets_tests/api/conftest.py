"""One keyspace filled once, for every API test, by the project's own write path with real data.

- the lake's raw zone gets 30 real days of BTCUSDT 1m candles (2024-01-01 .. 01-30), from which
  the Spark rollups write hourly and daily candles and moving averages to Cassandra, the minute
  model is trained and the (naive, the history being short) 15-day forecast is published;
- 2024-01-31's candles go through Kafka and the sensor-driven runs in ``CANDLE_CHUNKS`` parts, each
  run predicting the next minute, so predictions and their actual closes reach Cassandra; the
  first part is preceded by 2024-01-30's candles, a day that ended before the symbol's clock;
- the real day of BTCUSD_PERP aggTrades (2026-05-08) goes through Kafka into trades, minute and
  hour statistics and latest prices, and the 1m candles `trade_candles` derives from them (the
  symbol has no kline stream) go through `candles.1m` into Cassandra;
- ten real order books of BTCUSDT (tardis top-25 snapshots of Binance futures, 2020-09-01, cut to 10
  levels) go through `orderbook` into `order_books` and the latest bid and ask.

A test that needs a row to change while the API streams it writes a symbol of its own (:class:`LiveSymbol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import uvicorn
from dagster_pyspark import LazyPySparkResource
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.app import create_app
from api.server import GuardedHttpProtocol
from api.windows import iso
from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.contract.records import INTERVAL_MS, Candle
from pricepipe_assets.contract.topics import CANDLES_1M, ORDERBOOK, PREDICTIONS, TRADES
from pricepipe_assets.defs.analytics import (
    candles_daily,
    candles_hourly,
    moving_averages_daily,
)
from pricepipe_assets.defs.ml.daily import daily_forecast, daily_model
from pricepipe_assets.defs.ml.features import daily_features, minute_features
from pricepipe_assets.defs.ml.minute_models import minute_model
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource, ModelRulesResource
from pricepipe_assets.kafka.batches import Delivered
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.live_tables import UPSERT_VENUE_CANDLE
from pricepipe_assets.transforms.live_writes import candle_rows, record_activity
from pricepipe_assets_tests.support.kafka_runs import (
    definitions,
    drain,
    publish_trades,
    source_trades,
)
from pricepipe_assets_tests.support.lake_fill import real_minutes, write_raw_candles
from pricepipe_assets_tests.support.order_books import tardis_books

SYMBOL = "BTCUSDT"
TRADES_SYMBOL = "BTCUSD_PERP"
LAKE_DAYS = (dt.date(2024, 1, 1), dt.date(2024, 1, 30))
LIVE_DAY = dt.date(2024, 1, 31)
CLOSED_DAY = dt.date(2024, 1, 30)
CANDLE_CHUNKS = 4


@dataclass(frozen=True)
class Filled:
    settings: Settings
    cassandra: CassandraResource
    live_candles: pd.DataFrame  # the candles of LIVE_DAY, as published
    closed_candles: pd.DataFrame  # the candles of CLOSED_DAY, as published
    lake_candles: pd.DataFrame  # the candles of LAKE_DAYS
    trades: pd.DataFrame  # the aggTrades file, as in the dump
    books: list[OrderBook]  # SYMBOL's order books, as published (the last is the newest)


def _frame(candles: list[Any]) -> pd.DataFrame:
    return pd.DataFrame([c.to_dict() for c in candles])


@pytest.fixture(scope="session")
def filled(local_servers: None, spark_config: dict[str, str], shared_data: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    unique = uuid.uuid4().hex[:10]
    root = tmp_path_factory.mktemp("api-fill")
    settings = Settings.from_env({"PRICEPIPE_KEYSPACE": f"test_api_{unique}", "PRICEPIPE_TOPIC_PREFIX": f"test.api.{unique}.",
                                  "PRICEPIPE_LAKE_URI": str(root / "lake"), "PRICEPIPE_STATE_DIR": str(root / "state"),
                                  "PRICEPIPE_API_STREAM_S": "1"})
    kafka = KafkaResource(topic_prefix=settings.topic_prefix, topic_partitions=2, retention_hours=1)
    cassandra = CassandraResource(keyspace=settings.keyspace)
    lake = LakeResource(uri=str(root / "lake"))
    instance = dg.DagsterInstance.ephemeral()

    history = real_minutes(shared_data, root / "cache", SYMBOL, *LAKE_DAYS)
    write_raw_candles(lake, history)
    resources = {"spark": LazyPySparkResource(spark_config=spark_config), "lake": lake, "cassandra": cassandra,
                 "kafka": kafka, "model_rules": ModelRulesResource()}
    assert dg.materialize([candles_hourly, candles_daily, moving_averages_daily, minute_features, minute_model,
                           daily_features, daily_model, daily_forecast], resources=resources, instance=instance).success

    defs = definitions(kafka, cassandra, lake)
    live = real_minutes(shared_data, root / "cache", SYMBOL, LIVE_DAY, LIVE_DAY)
    closed = real_minutes(shared_data, root / "cache", SYMBOL, CLOSED_DAY, CLOSED_DAY)
    publisher = kafka.publisher()
    for candle in closed:
        publisher.publish(candle)
    size = len(live) // CANDLE_CHUNKS
    for chunk in range(CANDLE_CHUNKS):
        for candle in live[chunk * size:(chunk + 1) * size if chunk < CANDLE_CHUNKS - 1 else None]:
            publisher.publish(candle)
        publisher.flush()
        drain(defs, CANDLES_1M, kafka, instance)
        drain(defs, PREDICTIONS, kafka, instance)
    publish_trades(kafka, shared_data, root / "cache")
    drain(defs, TRADES, kafka, instance)
    drain(defs, CANDLES_1M, kafka, instance)
    books = tardis_books(shared_data)
    for book in books:
        publisher.publish(book)
    publisher.flush()
    drain(defs, ORDERBOOK, kafka, instance)

    yield Filled(settings, cassandra, _frame(live), _frame(closed), _frame(history), source_trades(shared_data),
                 books)
    cassandra.session().execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}")
    cassandra.close()
    admin = kafka.admin()
    mine = [name for name in admin.list_topics(timeout=10).topics if name.startswith(kafka.topic_prefix)]
    if mine:
        admin.delete_topics(mine, operation_timeout=10)


@pytest.fixture(scope="session")
def api_client(filled: Filled) -> Iterator[TestClient]:
    """The API over the filled keyspace, in process."""
    with TestClient(create_app(filled.settings)) as client:
        yield client


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def served(app: Starlette, protocol: type[asyncio.Protocol] = GuardedHttpProtocol) -> Iterator[str]:
    """``app`` served by a real uvicorn on a free loopback port, with the HTTP protocol the API runs with."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=protocol))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API server did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def api_base_url(filled: Filled) -> Iterator[str]:
    """The API over the filled keyspace, served by a real uvicorn on a free loopback port."""
    with served(create_app(filled.settings)) as url:
        yield url


class LiveSymbol:
    """A symbol of the filled keyspace that only one test watches, whose newest 1m candle the test
    moves on with :meth:`tick`, for streams that must see a row change while the API serves them.

    Each candle is written as the stream worker's candles stage writes it: the row, then the
    symbol's clock. The candles are minutes of LIVE_DAY, so the platform's clock (the trades' day)
    and every other symbol's rows stay as the other tests expect them.
    """

    def __init__(self, filled: Filled) -> None:
        self.filled = filled
        self.name = f"LIVE{uuid.uuid4().hex[:8].upper()}"
        self.candles = 0
        self.tick()

    def tick(self) -> str:
        """Write the next minute's candle; returns its open time as the API writes it."""
        opened = dt.datetime.combine(LIVE_DAY, dt.time(), dt.UTC) + dt.timedelta(minutes=self.candles)
        start, price = int(opened.timestamp() * 1000), 100.0 + self.candles
        candle = Candle(exchange="binance", symbol=self.name, interval="1m", open_time=start,
                        close_time=start + INTERVAL_MS["1m"] - 1, open=price, high=price, low=price, close=price,
                        volume=1.0, quote_volume=price, trades=1, is_closed=True)
        records = [Delivered(CANDLES_1M, 0, self.candles, candle)]
        self.filled.cassandra.write_all(UPSERT_VENUE_CANDLE, candle_rows(records))
        record_activity(self.filled.cassandra, records)
        self.candles += 1
        return iso(opened)
