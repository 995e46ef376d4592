"""Property-based tests: hostile input to every venue parser (Binance's kline and aggTrade rows and WebSocket events,
BitMEX's trades and quotes) either becomes a valid record or is refused with a RecordError and a reason, in every
part of a valid message of each format (:mod:`pricepipe_assets_tests.support.hostile_json`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pricepipe_assets.contract.record_values import loads_json
from pricepipe_assets.contract.records import Record
from pricepipe_assets.sources.binance.formats import (
    candle_from_binance_event,
    candle_from_binance_row,
    trade_from_binance_agg_row,
)
from pricepipe_assets.sources.bitmex.formats import quote_from_bitmex, trade_from_bitmex
from pricepipe_assets_tests.support.hostile_json import (
    BIG_PROPERTIES,
    PROPERTIES,
    WIDE_PROPERTIES,
    Path,
    huge,
    refused_or_valid,
    shallow_hostile,
    slots_of,
    values,
    with_part,
)


@PROPERTIES
@given(row=st.lists(values, max_size=14))
def test_kline_and_agg_trade_rows_of_any_shape_are_parsed_or_refused(row: list[Any]) -> None:
    refused_or_valid(lambda: candle_from_binance_row(row, "BTCUSDT", "1m"))
    refused_or_valid(lambda: trade_from_binance_agg_row(row, "BTCUSD_PERP"))


@PROPERTIES
@given(item=values)
def test_websocket_elements_of_any_shape_are_parsed_or_refused(item: Any) -> None:
    refused_or_valid(lambda: candle_from_binance_event(item))
    refused_or_valid(lambda: trade_from_bitmex(item))
    refused_or_valid(lambda: quote_from_bitmex(item))


# A valid message of each venue format, as its client reads it from the wire, with the parser it goes to.
VENUES: list[tuple[Callable[[Any], Record], Any]] = [
    (functools.partial(candle_from_binance_row, symbol="BTCUSDT", interval="1m"),
     [1704067200000, "42283.58", "42298.62", "42261.02", "42298.61", "35.92724", 1704067259999, "1519031.69", 1327,
      "17.4", "735872.3", "0"]),
    (functools.partial(trade_from_binance_agg_row, symbol="BTCUSD_PERP"),
     [26129, "42000.5", "0.01", 27781, 27781, 1704067200123, "true"]),
    (candle_from_binance_event,
     {"e": "kline", "E": 1704067260000, "s": "BTCUSDT",
      "k": {"t": 1704067200000, "T": 1704067259999, "s": "BTCUSDT", "i": "1m", "o": "42283.58", "c": "42298.61",
            "h": "42298.62", "l": "42261.02", "v": "35.92724", "n": 1327, "x": True, "q": "1519031.69"}}),
    (trade_from_bitmex,
     {"timestamp": "2024-01-01T00:00:00.123Z", "symbol": "XBTUSD", "side": "Buy", "size": 100, "price": 42000.5,
      "trdMatchID": "00000000-006d-1000-0000-000000000001"}),
    (quote_from_bitmex,
     {"timestamp": "2024-01-01T00:00:00.123Z", "symbol": "XBTUSD", "bidSize": 10, "bidPrice": 41999.5,
      "askPrice": 42000.0, "askSize": 12}),
]
VENUE_SLOTS: list[tuple[int, Path]] = [(index, path) for index, (_, message) in enumerate(VENUES)
                                       for path in slots_of(message)]


def parsed_by_venue(slot: tuple[int, Path], value: bytes) -> None:
    """A venue's message with ``value`` in one part, read from JSON as its client reads it and given to its
    parser. ``loads_json`` gives the values ``json.loads`` gives, and nesting as deep as orjson reads (1,024
    levels); what it refuses (invalid UTF-8, deeper nesting) never reaches a parser, so is no parser's to test."""
    index, path = slot
    parse, message = VENUES[index]
    try:
        item = loads_json(with_part(message, path, value))
    except ValueError:
        return
    if isinstance(message, list) and not isinstance(item, list):
        return  # a row's callers give its parser a list: a CSV line's fields, or a JSON array the REST client checked
    refused_or_valid(functools.partial(parse, item))


def test_every_venue_format_has_a_valid_message_to_break() -> None:
    """So a refusal below is about the one part broken."""
    for parse, message in VENUES:
        assert refused_or_valid(functools.partial(parse, message)) is not None


@WIDE_PROPERTIES
@given(slot=st.sampled_from(VENUE_SLOTS), value=shallow_hostile)
def test_anything_as_any_part_of_a_venue_message_is_parsed_or_refused(slot: tuple[int, Path], value: bytes) -> None:
    """Deep nesting has a test of its own, next: the venue parsers cannot take it yet."""
    parsed_by_venue(slot, value)


def test_a_value_nested_as_deep_as_json_readers_go_is_refused_by_every_venue_parser() -> None:
    """A value 500 or 1,000 deep in every part of every venue message: JSON readers return such values
    (orjson reads 1,024 levels; json.loads a little under Python's recursion limit), and a reason that
    showed ``str()`` of such a value recursed past the limit itself."""
    for slot in VENUE_SLOTS:
        for opening, closing in ((b"[", b"]"), (b'{"a":', b"}")):
            for depth in (500, 1000):
                parsed_by_venue(slot, opening * depth + b"0" + closing * depth)


@BIG_PROPERTIES
@given(slot=st.sampled_from(VENUE_SLOTS), value=huge)
def test_a_megabyte_value_as_any_part_of_a_venue_message_is_parsed_or_refused(
        slot: tuple[int, Path], value: bytes) -> None:
    parsed_by_venue(slot, value)
