"""Binance's wire formats turned into contract records: kline rows (dumps and REST), kline
WebSocket events and aggTrades rows.

Every function returns a validated record or raises :class:`RecordError` with a reason fit for the
dead-letter topic, like the contract's own parsers, so a client never publishes what the contract
would refuse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pricepipe_assets.contract.record_values import (
    RecordError,
    parse_finite,
    parse_integer,
    parse_symbol,
    preview,
    to_millis,
)
from pricepipe_assets.contract.records import Candle, Trade, covers_interval


def candle_from_binance_row(row: Sequence[Any], symbol: str, interval: str, *, exchange: str = "binance",
                            is_closed: bool = True) -> Candle:
    """A Binance kline row: a dump CSV line (ms or µs times) or a REST ``/api/v3/klines`` array.

    Binance has no completeness column: a candle the venue closed early (an outage inside its
    interval) is told only by its ``close_time``, so ``is_complete`` is derived from it.
    """
    if len(row) < 9:  # Binance sends 12 columns; the first 9 are the ones the contract keeps
        raise RecordError(f"a Binance kline row needs at least 9 columns, got {len(row)}")
    open_time, close_time = to_millis(row[0], "open_time"), to_millis(row[6], "close_time")
    candle = Candle(
        exchange=exchange,
        symbol=symbol,
        interval=interval,
        open_time=open_time,
        close_time=close_time,
        open=parse_finite(row[1], "open"),
        high=parse_finite(row[2], "high"),
        low=parse_finite(row[3], "low"),
        close=parse_finite(row[4], "close"),
        volume=parse_finite(row[5], "volume"),
        quote_volume=parse_finite(row[7], "quote_volume"),
        trades=parse_integer(row[8], "trades"),
        is_closed=is_closed,
        is_complete=covers_interval(interval, open_time, close_time),
    )
    candle.check()
    return candle


def candle_from_binance_event(event: Mapping[str, Any]) -> Candle:
    """A Binance WebSocket kline event (``{"e": "kline", "s": ..., "k": {...}}``)."""
    if not isinstance(event, Mapping) or event.get("e") != "kline" or not isinstance(event.get("k"), Mapping):
        raise RecordError("not a Binance kline event")
    k = event["k"]
    try:
        row = [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"]]
        symbol, interval, closed = k["s"], k["i"], k["x"]
    except KeyError as missing:
        raise RecordError(f"kline event without field {missing}") from None
    if not isinstance(closed, bool):
        raise RecordError(f"kline field 'x' must be true or false, got {preview(closed)!r}")
    return candle_from_binance_row(row, parse_symbol(symbol), interval, is_closed=closed)


def trade_from_binance_agg_row(row: Sequence[Any], symbol: str, *, exchange: str = "binance") -> Trade:
    """A Binance aggTrades CSV row: ``agg_trade_id, price, quantity, first_id, last_id, time, is_buyer_maker``.

    The taker sold when the buyer was the maker, so ``is_buyer_maker`` true means side ``sell``.
    """
    if len(row) < 7:
        raise RecordError(f"an aggTrades row has 7 columns, got {len(row)}")
    flag = row[6].strip().lower() if isinstance(row[6], str) else row[6]
    if isinstance(flag, bool):
        buyer_maker = flag
    elif flag in ("true", "false"):
        buyer_maker = flag == "true"
    else:
        raise RecordError(f"is_buyer_maker must be true or false, got {preview(row[6])!r}")
    trade = Trade(
        exchange=exchange,
        symbol=symbol,
        trade_id=str(parse_integer(row[0], "agg_trade_id")),
        ts=to_millis(row[5], "transact_time"),
        side="sell" if buyer_maker else "buy",
        size=parse_finite(row[2], "quantity"),
        price=parse_finite(row[1], "price"),
    )
    trade.check()
    return trade
