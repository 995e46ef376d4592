"""What ``PRICEPIPE_CCXT_MARKETS`` and ``PRICEPIPE_CCXT_URLS`` mean, and what a CCXT market is called
in the contract."""

from __future__ import annotations

import pytest

from pricepipe_assets.sources.ccxt.markets import (
    CcxtMarket,
    CcxtSourceError,
    contract_symbol,
    open_exchange,
    parse_markets,
    parse_url_overrides,
)


def test_markets_are_exchange_and_symbol_pairs_in_order_without_repeats() -> None:
    assert parse_markets(["Kraken:BTC/USD", " okx : BTC/USDT", "kraken:BTC/USD"]) == (
        CcxtMarket("kraken", "BTC/USD"), CcxtMarket("okx", "BTC/USDT"))


@pytest.mark.parametrize("entry", ["kraken", "kraken:", ":BTC/USD"])
def test_a_market_without_exchange_or_symbol_is_refused_with_an_example(entry: str) -> None:
    with pytest.raises(CcxtSourceError, match="such as kraken:BTC/USD"):
        parse_markets([entry])


def test_endpoint_overrides_are_dotted_keys_per_exchange() -> None:
    assert parse_url_overrides(["binance.public=http://127.0.0.1:1/api/v3", "binance.ws.spot=ws://127.0.0.1:2/ws"]) == {
        "binance": {"public": "http://127.0.0.1:1/api/v3", "ws.spot": "ws://127.0.0.1:2/ws"}}


@pytest.mark.parametrize("entry", ["binance=http://x", "binance.public", "binance.public="])
def test_an_endpoint_override_without_key_or_url_is_refused_with_an_example(entry: str) -> None:
    with pytest.raises(CcxtSourceError, match="such as binance.public="):
        parse_url_overrides([entry])


def test_an_override_replaces_only_the_named_endpoint() -> None:
    venue = open_exchange("binance", {"binance": {"public": "http://127.0.0.1:1/api/v3"}})
    assert venue.urls["api"]["public"] == "http://127.0.0.1:1/api/v3"
    assert venue.urls["api"]["private"] == "https://api.binance.com/api/v3"
    assert venue.enableRateLimit is True


@pytest.mark.parametrize(("venue_id", "symbol"), [("BTCUSDT", "BTCUSDT"), ("BTC-USDT", "BTCUSDT"),
                                                  ("XXBTZUSD", "XXBTZUSD"), ("btc_usdt", "BTC_USDT"),
                                                  ("XBTUSD", "XBTUSD")])
def test_the_contract_symbol_is_the_venue_id_with_only_letters_digits_and_underscores(venue_id: str,
                                                                                       symbol: str) -> None:
    assert contract_symbol({"id": venue_id, "symbol": "X/Y"}) == symbol


def test_a_venue_id_with_nothing_the_contract_accepts_is_a_clear_error() -> None:
    with pytest.raises(CcxtSourceError, match="has no name the contract accepts"):
        contract_symbol({"id": "--", "symbol": "X/Y"})
