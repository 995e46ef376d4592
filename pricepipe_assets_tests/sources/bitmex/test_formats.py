"""BitMEX trade and quote rows parse to the contract; bad rows are refused with a reason."""

from __future__ import annotations

import pytest

from pricepipe_assets.contract.records import Quote, RecordError
from pricepipe_assets.sources.bitmex import formats


def test_bitmex_trade_and_quote() -> None:
    trade = formats.trade_from_bitmex({"timestamp": "2024-01-01T00:00:00.123Z", "symbol": "XBTUSD", "side": "Sell",
                                       "size": 100, "price": 42000.5, "trdMatchID": "00000000-aaaa"})
    assert (trade.ts, trade.side, trade.size) == (1704067200123, "sell", 100.0)
    quote = formats.quote_from_bitmex({"timestamp": "2024-01-01T00:00:01.000Z", "symbol": "XBTUSD", "bidSize": 5,
                                       "bidPrice": 42000.0, "askPrice": 42000.5, "askSize": 7})
    assert quote == Quote("bitmex", "XBTUSD", 1704067201000, 42000.0, 42000.5, 5.0, 7.0)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"timestamp": "2024-01-01T00:00:00Z", "symbol": "XBTUSD", "side": "Buy", "size": -5, "price": 1,
          "trdMatchID": "a"}, "size must be positive"),
        ({"timestamp": "yesterday", "symbol": "XBTUSD", "side": "Buy", "size": 5, "price": 1, "trdMatchID": "a"},
         "timestamp must be an ISO-8601 time"),
        ({"timestamp": "2024-01-01T00:00:00Z", "symbol": "XBT/USD", "side": "Buy", "size": 5, "price": 1,
          "trdMatchID": "a"}, "symbol must be"),
        ({"timestamp": "2024-01-01T00:00:00Z", "symbol": "XBTUSD", "side": "Hold", "size": 5, "price": 1,
          "trdMatchID": "a"}, "side must be 'buy' or 'sell'"),
        ({"timestamp": "2024-01-01T00:00:00Z", "symbol": "XBTUSD", "side": "Buy", "size": True, "price": 1,
          "trdMatchID": "a"}, "size must be a number, got bool"),
        ({"symbol": "XBTUSD"}, "BitMEX trade without field 'side'"),
    ],
)
def test_invalid_bitmex_trades_are_refused(item: dict, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        formats.trade_from_bitmex(item)


def test_quote_with_empty_book_side_or_crossed_is_refused() -> None:
    base = {"timestamp": "2024-01-01T00:00:01Z", "symbol": "XBTUSD", "bidSize": 5, "bidPrice": 42000.0,
            "askPrice": 42000.5, "askSize": 7}
    with pytest.raises(RecordError, match="bidPrice must be a number, got NoneType"):
        formats.quote_from_bitmex({**base, "bidPrice": None})
    with pytest.raises(RecordError, match="crossed quote"):
        formats.quote_from_bitmex({**base, "bidPrice": 42001.0})
