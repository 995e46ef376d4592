"""BitMEX ``orderBookL2_25`` tables kept locally, one per symbol, and turned into order book records.

BitMEX sends the table's 25 best levels per side as rows keyed by ``id`` (with ``side``): a
``partial`` replaces the whole table, then ``insert`` adds rows, ``update`` changes a row's size
(``price`` may be repeated), ``delete`` removes rows. Decisions, and why:

* Messages that arrive before a symbol's ``partial`` are dropped, as BitMEX advises: they change
  rows the client does not have yet.
* An ``insert`` of an id already held, an ``update`` or ``delete`` of an id not held, or a row
  that cannot be read, whatever is wrong with it, means the local table missed a message: unlike
  Binance's price-keyed levels, BitMEX's table is exact, so this is never normal. The symbol's
  table is thrown away, the symbol is listed in :attr:`BitmexBooks.broken` for the client to
  resubscribe (BitMEX answers with a fresh ``partial``), and nothing is published for it until then.
* A row's ``timestamp`` must be a plausible time: the book's time is the newest row's, so one
  absurd time would make every later book of the symbol fail the contract's check, for good.
* ``sequence`` counts the book messages applied to a symbol since the client started (BitMEX's
  L2 has no sequence number of its own), so it only grows, across resubscribes too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.contract.record_values import (
    RecordError,
    iso_to_millis,
    parse_finite,
    parse_integer,
    parse_symbol,
    sane_time,
)
from pricepipe_assets.sources.frames import refusal

BOOK_TABLE = "orderBookL2_25"
EXCHANGE = "bitmex"
SIDES = ("Buy", "Sell")

Row = tuple[str, float, float]  # side, price, size


def _row_key(row: Any) -> tuple[str, int]:
    if not isinstance(row, Mapping):
        raise RecordError("a BitMEX orderBookL2_25 row must be an object")
    try:
        symbol, key = parse_symbol(row["symbol"]), parse_integer(row["id"], "id")
    except KeyError as missing:
        raise RecordError(f"BitMEX orderBookL2_25 row without field {missing}") from None
    if row.get("side") not in SIDES:
        raise RecordError(f"side must be Buy or Sell, got {str(row.get('side'))[:20]!r}")
    return symbol, key


def _level(row: Mapping[str, Any], previous: Row | None) -> Row:
    price = parse_finite(row["price"], "price") if "price" in row else previous[1] if previous else None
    if price is None or "size" not in row:
        raise RecordError("BitMEX orderBookL2_25 row without price or size")
    size = parse_finite(row["size"], "size")
    if not price > 0 or not size > 0:
        raise RecordError(f"level [{price}, {size}] needs a positive price and size")
    return row["side"], price, size


class BitmexBooks:
    """The local tables of the subscribed symbols; :meth:`take` applies one message."""

    def __init__(self, symbols: Sequence[str], depth: int) -> None:
        self.symbols = frozenset(symbols)
        self.depth = depth
        self.broken: set[str] = set()
        self.ignored = 0
        self._tables: dict[str, dict[int, Row]] = {}
        self._times: dict[str, int] = {}
        self._sequences: dict[str, int] = dict.fromkeys(symbols, 0)

    def trusted(self, symbol: str) -> bool:
        return symbol in self._tables

    def reset(self) -> frozenset[str]:
        """Forget every table (a new connection: each symbol waits for its new ``partial``); the symbols."""
        self._tables.clear()
        self.broken.clear()
        return self.symbols

    def take(self, action: str, rows: list[Any], filter_symbol: str | None = None) -> set[str]:
        """Apply one message; the symbols whose trusted book changed. Raises :class:`RecordError`
        (after marking the symbols concerned broken) when the message cannot be applied."""
        by_symbol: dict[str, list[Mapping[str, Any]]] = {}
        if action == "partial" and filter_symbol in self.symbols:
            by_symbol[filter_symbol] = []
        for row in rows:
            symbol, _ = _row_key(row)
            if symbol not in self.symbols:
                raise RecordError(f"symbol {symbol!r} was not subscribed")
            by_symbol.setdefault(symbol, []).append(row)
        changed = set()
        for symbol, symbol_rows in by_symbol.items():
            if action != "partial" and symbol not in self._tables:
                self.ignored += 1
                continue
            try:
                self._apply(symbol, action, symbol_rows)
            except Exception as error:  # any failure at all leaves the table out of step
                self._break(symbol)
                raise RecordError(f"{symbol} order book out of step, resubscribing: {refusal(error)}") from None
            self._sequences[symbol] += 1
            if self.book(symbol) is not None:
                changed.add(symbol)
        return changed

    def _apply(self, symbol: str, action: str, rows: list[Mapping[str, Any]]) -> None:
        table = {} if action == "partial" else dict(self._tables[symbol])
        for row in rows:
            _, key = _row_key(row)
            if action in ("partial", "insert"):
                if key in table:
                    raise RecordError(f"{action} of id {key}, which the book already holds")
                table[key] = _level(row, None)
            elif key not in table:
                raise RecordError(f"{action} of id {key}, which the book does not hold")
            elif action == "update":
                table[key] = _level(row, table[key])
            elif action == "delete":
                del table[key]
            else:
                raise RecordError(f"unknown action {action[:20]!r}")
            if "timestamp" in row:
                stamp = sane_time(iso_to_millis(row["timestamp"], "timestamp"), "timestamp")
                self._times[symbol] = max(self._times.get(symbol, 0), stamp)
        self._tables[symbol] = table
        self.broken.discard(symbol)

    def _break(self, symbol: str) -> None:
        self._tables.pop(symbol, None)
        self.broken.add(symbol)

    def book(self, symbol: str) -> OrderBook | None:
        """The best ``depth`` levels per side of a trusted table; a crossed one breaks it."""
        table = self._tables.get(symbol)
        if not table or symbol not in self._times:
            return None
        bids = sorted(((p, s) for side, p, s in table.values() if side == "Buy"), reverse=True)[:self.depth]
        asks = sorted((p, s) for side, p, s in table.values() if side == "Sell")[:self.depth]
        book = OrderBook(EXCHANGE, symbol, self._times[symbol], self._sequences[symbol], tuple(bids), tuple(asks))
        try:
            book.check()
        except RecordError:
            self._break(symbol)
            return None
        return book
