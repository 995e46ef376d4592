"""BitMEX's wire formats turned into contract records: rows of the ``trade`` and ``quote`` tables.

Every function returns a validated record or raises :class:`RecordError` with a reason fit for the
dead-letter topic, like the contract's own parsers, so a client never publishes what the contract
would refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pricepipe_assets.contract.record_values import RecordError, iso_to_millis, parse_finite, parse_symbol, parse_text
from pricepipe_assets.contract.records import Quote, Trade


def trade_from_bitmex(item: Mapping[str, Any]) -> Trade:
    """One element of a BitMEX ``trade`` table's ``data`` array."""
    if not isinstance(item, Mapping):
        raise RecordError("a BitMEX trade must be an object")
    try:
        side = parse_text(item["side"], "side").lower()
        trade = Trade(
            exchange="bitmex",
            symbol=parse_symbol(item["symbol"]),
            trade_id=parse_text(item["trdMatchID"], "trdMatchID"),
            ts=iso_to_millis(item["timestamp"], "timestamp"),
            side=side,
            size=parse_finite(item["size"], "size"),
            price=parse_finite(item["price"], "price"),
        )
    except KeyError as missing:
        raise RecordError(f"BitMEX trade without field {missing}") from None
    trade.check()
    return trade


def quote_from_bitmex(item: Mapping[str, Any]) -> Quote:
    """One element of a BitMEX ``quote`` table's ``data`` array (an empty book side is an error)."""
    if not isinstance(item, Mapping):
        raise RecordError("a BitMEX quote must be an object")
    try:
        quote = Quote(
            exchange="bitmex",
            symbol=parse_symbol(item["symbol"]),
            ts=iso_to_millis(item["timestamp"], "timestamp"),
            bid=parse_finite(item["bidPrice"], "bidPrice"),
            ask=parse_finite(item["askPrice"], "askPrice"),
            bid_size=parse_finite(item["bidSize"], "bidSize"),
            ask_size=parse_finite(item["askSize"], "askSize"),
        )
    except KeyError as missing:
        raise RecordError(f"BitMEX quote without field {missing}") from None
    quote.check()
    return quote
