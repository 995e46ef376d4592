"""The order book record: levels best first, never crossed, round trip through the topic's JSON.

The levels are the best bids and asks of the first real tardis top-5 snapshot of Binance futures
BTCUSDT in ../shared/data/samples/orderbook (copied here as numbers, not read from the file, so
the contract tests need no data folder)."""

from __future__ import annotations

import json

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.contract.records import RecordError, decode

BIDS = ((11657.07, 10.896), (11656.97, 0.2), (11655.78, 0.2))
ASKS = ((11657.08, 1.714), (11657.54, 5.4), (11657.56, 0.238))
BOOK = OrderBook("binance", "BTCUSDT", 1598918403696, 2098041696700, BIDS, ASKS)


def test_a_book_round_trips_through_the_orderbook_topic_with_spread_and_mid() -> None:
    assert BOOK.topic == topics.ORDERBOOK
    assert decode(topics.ORDERBOOK, BOOK.to_json()) == BOOK
    assert BOOK.spread == pytest.approx(0.01)
    assert BOOK.mid == pytest.approx(11657.075)
    assert BOOK.top(1).bids == BIDS[:1] and BOOK.top(1).asks == ASKS[:1]


def test_levels_as_binance_strings_are_read_as_numbers() -> None:
    message = json.loads(BOOK.to_json())
    message["bids"] = [[str(p), str(s)] for p, s in BIDS]
    assert decode(topics.ORDERBOOK, json.dumps(message).encode()) == BOOK


@pytest.mark.parametrize(("change", "reason"), [
    ({"bids": [BIDS[1], BIDS[0]]}, "strictly falling"),
    ({"asks": [ASKS[1], ASKS[0]]}, "strictly rising"),
    ({"bids": [[11657.08, 1.0]]}, "crossed book"),
    ({"asks": [[11657.08, 0]]}, "size must be positive"),
    ({"bids": [], "asks": []}, "at least one level"),
    ({"bids": [[1.0]]}, "must be [price, size]"),
    ({"asks": "11657.08"}, "must be an array"),
    ({"sequence": -1}, "must not be negative"),
])
def test_a_book_a_reader_could_not_trust_is_refused(change: dict[str, object], reason: str) -> None:
    message = {**json.loads(BOOK.to_json()), **change}
    with pytest.raises(RecordError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        decode(topics.ORDERBOOK, json.dumps(message).encode())


def test_one_empty_side_is_a_valid_book_without_spread() -> None:
    book = OrderBook("binance", "BTCUSDT", 1598918403696, 1, BIDS, ())
    book.check()
    assert book.spread is None and book.mid is None
