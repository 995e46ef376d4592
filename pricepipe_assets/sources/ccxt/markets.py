"""Which CCXT venues and markets pricepipe follows, where their endpoints are, and what a market is
called in the contract.

A CCXT market has two names: CCXT's unified symbol (``BTC/USDT``, ``BTC/USD:BTC`` for BitMEX's
perpetual) and the venue's own id (``BTCUSDT``, ``XBTUSD``, ``BTC-USDT`` at OKX). The contract's
symbol is the venue's id with everything but ASCII letters, digits and ``_`` dropped, upper-cased:
the native clients use the venues' ids too, so a Binance or BitMEX market has the same key on
Kafka and in Cassandra whichever client fetched it, and a user finds the name the venue's own pages
use. Records carry CCXT's exchange id (``binance``, ``kraken``, ``okx``) as ``exchange``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pricepipe_assets.contract.record_values import RecordError, parse_symbol


class CcxtSourceError(ValueError):
    """A CCXT source cannot start or go on; the message says what to change."""


@dataclass(frozen=True, slots=True)
class CcxtMarket:
    """One market of ``PRICEPIPE_CCXT_MARKETS``: a CCXT exchange id and a symbol of that venue."""

    exchange: str
    symbol: str


def parse_markets(entries: Iterable[str]) -> tuple[CcxtMarket, ...]:
    """``kraken:BTC/USD``-style entries; the symbol may be CCXT's unified one or the venue's id."""
    markets = []
    for entry in entries:
        exchange, colon, symbol = entry.partition(":")
        if not colon or not exchange.strip() or not symbol.strip():
            raise CcxtSourceError(f"a CCXT market is <exchange id>:<symbol>, such as kraken:BTC/USD, got {entry!r}")
        markets.append(CcxtMarket(exchange.strip().lower(), symbol.strip()))
    return tuple(dict.fromkeys(markets))


def parse_url_overrides(entries: Iterable[str]) -> dict[str, dict[str, str]]:
    """``binance.public=http://...`` entries as ``{exchange id: {dotted key: URL}}``."""
    overrides: dict[str, dict[str, str]] = {}
    for entry in entries:
        key, equals, url = entry.partition("=")
        exchange, dot, path = key.strip().partition(".")
        if not equals or not dot or not path or not url.strip():
            raise CcxtSourceError(f"a CCXT endpoint is <exchange id>.<key of urls['api']>=<URL>, such as "
                                  f"binance.public=http://127.0.0.1:8080/api/v3, got {entry!r}")
        overrides.setdefault(exchange.lower(), {})[path] = url.strip()
    return overrides


def _closest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _override_urls(exchange: Any, overrides: Mapping[str, str]) -> None:
    """Replace the endpoints named by dotted keys inside ``exchange.urls['api']``, refusing a key the
    class does not have: a typo would otherwise leave the real venue in use, silently."""
    for dotted, url in overrides.items():
        node = exchange.urls["api"]
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or not isinstance(node.get(leaf), str):
            raise CcxtSourceError(f"CCXT's {exchange.id} has no endpoint urls['api'] key {dotted!r}"
                                  f"{_closest(dotted, _endpoint_keys(exchange.urls['api']))}")
        node[leaf] = url


def _endpoint_keys(node: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        if isinstance(value, str):
            keys.append(prefix + key)
        elif isinstance(value, Mapping):
            keys += _endpoint_keys(value, f"{prefix}{key}.")
    return keys


def open_exchange(exchange_id: str, overrides: Mapping[str, Mapping[str, str]], *, live: bool = False) -> Any:
    """A CCXT exchange instance (ccxt.pro's with ``live``) with CCXT's rate limiter on and the
    configured endpoints in place; its markets are not loaded yet."""
    import ccxt

    if live:
        import ccxt.pro
    module = ccxt.pro if live else ccxt
    if exchange_id not in ccxt.exchanges:
        raise CcxtSourceError(f"unknown CCXT exchange {exchange_id!r}{_closest(exchange_id, ccxt.exchanges)}; "
                              f"CCXT {ccxt.__version__} knows {len(ccxt.exchanges)} exchanges")
    if exchange_id not in module.exchanges:
        raise CcxtSourceError(f"CCXT {ccxt.__version__} has no WebSocket client (ccxt.pro) for {exchange_id}: "
                              f"its history can be backfilled, its live trades cannot be streamed")
    exchange = getattr(module, exchange_id)({"enableRateLimit": True})
    _override_urls(exchange, overrides.get(exchange_id, {}))
    return exchange


def contract_symbol(market: Mapping[str, Any]) -> str:
    """The contract's name of a loaded CCXT market (see the module docstring)."""
    venue_id = str(market.get("id") or "")
    symbol = "".join(c for c in venue_id if c.isascii() and (c.isalnum() or c == "_")).upper()
    try:
        return parse_symbol(symbol)
    except RecordError:
        raise CcxtSourceError(f"the market {market.get('symbol')!r} (venue id {venue_id!r}) has no name the "
                              f"contract accepts") from None


def find_market(exchange: Any, symbol: str) -> dict[str, Any]:
    """The loaded market ``symbol`` names: CCXT's unified symbol, the venue's id or the contract's name."""
    markets: dict[str, dict[str, Any]] = exchange.markets or {}
    if symbol in markets:
        return markets[symbol]
    wanted = symbol.upper()
    for market in markets.values():
        if str(market.get("id")) == symbol or contract_symbol_or_none(market) == wanted:
            return market
    raise CcxtSourceError(f"{exchange.id} has no market {symbol!r}{_closest(symbol, markets)}; "
                          f"give CCXT's unified symbol (such as BTC/USDT) or the venue's id")


def contract_symbol_or_none(market: Mapping[str, Any]) -> str | None:
    try:
        return contract_symbol(market)
    except CcxtSourceError:
        return None


def load_market(exchange: Any, symbol: str) -> dict[str, Any]:
    """Load the venue's markets (once per instance) and find ``symbol`` among them."""
    import ccxt

    try:
        exchange.load_markets()
    except ccxt.BaseError as error:
        raise CcxtSourceError(f"cannot load the markets of {exchange.id}: {type(error).__name__}: {error}") from None
    return find_market(exchange, symbol)
