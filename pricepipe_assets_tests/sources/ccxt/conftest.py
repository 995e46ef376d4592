"""The local Binance REST server of the native client's tests, answering CCXT too: CCXT's ``binance``
class first loads the venue's markets from ``exchangeInfo``, then reads the same klines (and, for the
live feed's gap fill, the aggregated trades of ``binance_trade_server``).

The exchange information is Binance's documented layout for the one spot market the server holds
(BTCUSDT, with its real precision and filters); the futures endpoints CCXT also asks list no market.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.ccxt.markets import open_exchange, parse_url_overrides
from pricepipe_assets_tests.support.exchange_servers.binance_rest_server import (
    BinanceRestServer,
    KlinesHandler,
    load_day,
)

DAY = "2024-01-01"
DAILY_FILE = "daily_candles/ronaldlu66_spot_BTCUSDT_1d.csv"
SPOT_MARKET = {
    "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8, "quoteAsset": "USDT",
    "quotePrecision": 8, "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
    "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
    "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
                 "tickSize": "0.01000000"},
                {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
                 "stepSize": "0.00001000"}],
    "permissions": [], "permissionSets": [["SPOT", "MARGIN"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
}


class CcxtBinanceServer(BinanceRestServer):
    """``trade_history`` answers ``GET /api/v3/aggTrades`` when a test serves trades."""

    trade_history: Callable[[dict[str, str]], tuple[int, Any]] | None = None


class ExchangeInfoHandler(KlinesHandler):
    server: CcxtBinanceServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/api/v3/aggTrades" and self.server.trade_history is not None:
            self.reply(*self.server.trade_history({k: v[-1] for k, v in parse_qs(url.query).items()}))
        elif url.path.endswith("/exchangeInfo"):
            spot = self.path.startswith("/api/v3/")
            self.reply(200, {"timezone": "UTC", "serverTime": 1704067200000, "rateLimits": [],
                             "exchangeFilters": [], "symbols": [SPOT_MARKET] if spot else []})
        else:
            super().do_GET()


def ccxt_urls(server: BinanceRestServer) -> tuple[str, ...]:
    """``PRICEPIPE_CCXT_URLS`` entries pointing CCXT's binance at the local server."""
    return (f"binance.public={server.base_url}/api/v3", f"binance.fapiPublic={server.base_url}/fapi/v1",
            f"binance.dapiPublic={server.base_url}/dapi/v1")


@pytest.fixture(scope="module")
def btc_day(shared_data: Path) -> list[list[str]]:
    return load_day(shared_data, "BTCUSDT", DAY)


@pytest.fixture(scope="module")
def btc_days(shared_data: Path) -> list[list[str]]:
    """Real daily BTCUSDT klines of 2021 (Binance's 12 columns)."""
    with (shared_data / DAILY_FILE).open(newline="") as file:
        rows = list(csv.reader(file))[1:]
    return [row for row in rows if row[0].startswith("16")][:365]


@pytest.fixture()
def exchange(btc_day: list[list[str]], btc_days: list[list[str]]) -> Iterator[CcxtBinanceServer]:
    server = CcxtBinanceServer({"BTCUSDT": btc_day}, daily={"BTCUSDT": btc_days})
    server.RequestHandlerClass = ExchangeInfoHandler
    thread = threading.Thread(target=server.serve_forever, name="ccxt-binance-rest", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture()
def venue(exchange: BinanceRestServer) -> Any:
    """CCXT's own ``binance`` class, its endpoints pointed at the local server."""
    return open_exchange("binance", parse_url_overrides(ccxt_urls(exchange)))


@pytest.fixture()
def publisher(kafka: KafkaResource) -> Publisher:
    kafka.ensure_topics(topics.ALL_TOPICS)
    return kafka.publisher()
