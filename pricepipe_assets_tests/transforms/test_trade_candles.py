"""Candles from trades, without servers: which trades count, when a minute closes, which minutes a
batch computes itself and which it reads back."""

from __future__ import annotations

from pricepipe_assets.contract.records import Trade
from pricepipe_assets.kafka.batches import Delivered
from pricepipe_assets.transforms.trade_candles import Print, builds_candles, candle_of, first_open_minute, plan

MINUTE = 1_778_198_400_000  # 2026-05-08 00:00 UTC
GRACE_MS = 10_000


def trade(ts: int, trade_id: str, price: float = 80_000.0, exchange: str = "bitmex") -> Delivered:
    return Delivered("trades", 0, 0, Trade(exchange, "XBTUSD", trade_id, ts, "buy", 2.0, price))


def test_spot_trades_keep_the_venues_klines_and_every_other_venue_gets_candles() -> None:
    assert not builds_candles(trade(MINUTE, "1", exchange="binance").record)
    assert all(builds_candles(trade(MINUTE, "1", exchange=name).record)
               for name in ("bitmex", "binancecoinm", "binanceusdm"))


def test_a_candle_orders_numeric_ids_numerically_and_counts_a_repeated_trade_once() -> None:
    prints = [Print(MINUTE + 5, "100", 1.0, 3.0), Print(MINUTE + 5, "99", 1.0, 2.0), Print(MINUTE, "7", 1.0, 1.0),
              Print(MINUTE + 5, "99", 1.0, 2.0)]
    candle = candle_of("bitmex", "XBTUSD", MINUTE, prints)
    assert (candle.open, candle.high, candle.low, candle.close) == (1.0, 3.0, 1.0, 3.0)
    assert (candle.volume, candle.quote_volume, candle.trades) == (3.0, 6.0, 3)
    assert candle.close_time == MINUTE + 59_999 and candle.is_closed
    assert candle_of("bitmex", "XBTUSD", MINUTE, reversed(prints)).to_json() == candle.to_json()


def test_a_minute_closes_once_the_symbols_trades_are_the_grace_period_past_its_end() -> None:
    assert first_open_minute(MINUTE + 60_000 + GRACE_MS - 1, GRACE_MS) == MINUTE
    assert first_open_minute(MINUTE + 60_000 + GRACE_MS, GRACE_MS) == MINUTE + 60_000


def test_a_first_batch_reads_every_closed_minute_back_and_publishes_no_open_one() -> None:
    batch = [trade(MINUTE + 1_000, "1"), trade(MINUTE + 61_000, "2"), trade(MINUTE + 125_000, "3")]
    result = plan(batch, {}, GRACE_MS)
    assert result.from_batch == {}
    assert result.from_store == {"XBTUSD": {MINUTE}}
    assert result.watermarks == {0: {"XBTUSD": MINUTE + 125_000}}


def test_a_later_batch_closes_the_minutes_left_open_and_rereads_a_late_trades_minute() -> None:
    watermark = MINUTE + 61_000  # minutes 0 and 1 were left open
    batch = [trade(MINUTE + 2_000, "late"), trade(MINUTE + 190_000, "4"), trade(MINUTE + 200_000, "5")]
    result = plan(batch, {0: {"XBTUSD": watermark}}, GRACE_MS)
    assert result.from_store == {"XBTUSD": {MINUTE, MINUTE + 60_000}}
    assert set(result.from_batch) == set()  # minute 3 is still open at 00:03:20
    result = plan([*batch, trade(MINUTE + 250_000, "6")], {0: {"XBTUSD": watermark}}, GRACE_MS)
    assert set(result.from_batch) == {("XBTUSD", MINUTE + 180_000)}
    assert [p.trade_id for p in result.from_batch[("XBTUSD", MINUTE + 180_000)]] == ["4", "5"]


def test_an_older_trade_never_moves_a_watermark_back() -> None:
    result = plan([trade(MINUTE, "late")], {0: {"XBTUSD": MINUTE + 600_000}}, GRACE_MS)
    assert result.watermarks == {0: {"XBTUSD": MINUTE + 600_000}}
    assert result.from_store == {"XBTUSD": {MINUTE}} and result.from_batch == {}
