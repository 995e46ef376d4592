"""1m candles built from trades, for the symbols no venue kline stream covers.

Which symbols: a trade is built into candles unless its ``exchange`` is one pricepipe already reads
klines from (:data:`KLINE_EXCHANGES`: ``binance``, the spot market, whose kline WebSocket, REST gap
fill, dumps and ``binance_history`` publish the candles of ``PRICEPIPE_SYMBOLS``). So BitMEX
(``bitmex``) and the futures aggTrades replay (``binancecoinm`` for BTCUSD_PERP, ``binanceusdm``)
get candles from their trades, and a spot symbol keeps the venue's own candles instead of a second,
competing set. The candle's ``exchange`` is its trades'.

When a minute is published: once the symbol's newest trade time (its event time, the clock the
platform uses everywhere) is at least the minute's end plus a grace period. A minute still open
stays unpublished, and a later run must publish it even if that run's batch holds none of its
trades. Not committing past such a minute's offsets would keep the consumer group lagging, and the
sensor would request a run every tick for as long as the symbol is quiet; so the whole batch is
committed, and each symbol's newest trade time so far (its *watermark*) is committed with it, in
the Kafka offset commit's metadata of the symbol's partition (a symbol is the key, so it always
lands in the same partition). The offset and the watermark are one atomic commit, so a run that
dies anywhere leaves both as they were, and the next run knows exactly which minutes were open:
those after ``watermark - 1 minute - grace``. Their trades are read back from Cassandra's
``trades`` table, which ``trade_stats_minute`` fills before it commits; the asset runs after it,
and reads no further than that asset committed, so every trade this stage ever committed is stored.

A minute is computed from the batch alone when it starts after the watermark's minute (no earlier
batch can hold a trade of it); any other minute, a late trade's or an open one's, from all its
stored trades. A late trade therefore republishes its minute, amended, and the upsert downstream
converges on the exact candle; a symbol without a watermark (its first batch, or offsets reset for
a replay) reads every minute back, so a replay never publishes a candle of only the replayed part.
Candles are a function of the minute's distinct trades only (ordered by time, then id; sums with
:func:`math.fsum`, which does not depend on order), so a replay publishes byte-identical candles.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from pricepipe_assets.contract.records import INTERVAL_MS, Candle, Trade
from pricepipe_assets.kafka.batches import Delivered, OffsetRange, commit, partitions_of
from pricepipe_assets.kafka.client import KafkaCluster
from pricepipe_assets.storage.cassandra import CassandraCluster, driver_ms
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.live_tables import SELECT_TRADES

MINUTE_MS = INTERVAL_MS["1m"]
DAY_MS = INTERVAL_MS["1d"]
KLINE_EXCHANGES = frozenset({"binance"})

# Per partition of `trades`: each of its symbols' newest trade time (ms) this stage has committed.
Watermarks = dict[int, dict[str, int]]


class Print(NamedTuple):
    """What a candle needs of a trade, from a Kafka record or a stored row alike."""

    ts: int
    trade_id: str
    size: float
    price: float


def builds_candles(trade: Trade) -> bool:
    """True for a trade whose venue gives pricepipe no klines (the rule of the module docstring)."""
    return trade.exchange not in KLINE_EXCHANGES


def _order(p: Print) -> tuple[int, int, str]:
    """Time, then id, numeric ids (Binance's) in numeric order: the venue's sequence of the trades."""
    return p.ts, len(p.trade_id), p.trade_id


def candle_of(exchange: str, symbol: str, minute: int, prints: Iterable[Print]) -> Candle:
    """The closed 1m candle of a minute's trades; a trade given twice counts once."""
    trades = sorted({(p.ts, p.trade_id): p for p in prints}.values(), key=_order)
    prices = [p.price for p in trades]
    return Candle(exchange=exchange, symbol=symbol, interval="1m", open_time=minute, close_time=minute + MINUTE_MS - 1,
                  open=prices[0], high=max(prices), low=min(prices), close=prices[-1],
                  volume=math.fsum(p.size for p in trades), quote_volume=math.fsum(p.size * p.price for p in trades),
                  trades=len(trades), is_closed=True)


def first_open_minute(watermark: int, grace_ms: int) -> int:
    """The first minute not yet closed when a symbol's newest trade is at ``watermark``."""
    return (watermark - MINUTE_MS - grace_ms) // MINUTE_MS * MINUTE_MS + MINUTE_MS


@dataclass
class Plan:
    """What one batch publishes: minutes complete in the batch, minutes to read back, the new watermarks."""

    from_batch: dict[tuple[str, int], list[Print]] = field(default_factory=dict)
    from_store: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    exchanges: dict[str, str] = field(default_factory=dict)
    watermarks: Watermarks = field(default_factory=dict)
    open_minutes: dict[str, int] = field(default_factory=dict)


def plan(records: Sequence[Delivered], watermarks: Mapping[int, Mapping[str, int]], grace_ms: int) -> Plan:
    """Sort the minutes a batch touches or closes into those computed from the batch and those read
    back (see the module docstring); ``watermarks`` are the committed ones, the plan's the new ones."""
    result = Plan(watermarks={p: dict(marks) for p, marks in watermarks.items()})
    by_symbol: dict[str, list[Trade]] = defaultdict(list)
    partition_of: dict[str, int] = {}
    for item in records:
        trade = item.record
        if isinstance(trade, Trade) and builds_candles(trade):
            by_symbol[trade.symbol].append(trade)
            partition_of[trade.symbol] = item.partition
            result.exchanges[trade.symbol] = trade.exchange
    for symbol, trades in sorted(by_symbol.items()):
        marks = result.watermarks.setdefault(partition_of[symbol], {})
        before = marks.get(symbol)
        newest = max(before or 0, *(t.ts for t in trades))
        marks[symbol] = newest
        open_from = first_open_minute(newest, grace_ms)
        result.open_minutes[symbol] = open_from
        fresh_from: float = math.inf
        if before is not None:
            first_fresh = before - before % MINUTE_MS + MINUTE_MS
            fresh_from = first_fresh
            result.from_store[symbol].update(range(first_open_minute(before, grace_ms), min(first_fresh, open_from),
                                                   MINUTE_MS))
        for trade in trades:
            minute = trade.ts - trade.ts % MINUTE_MS
            if minute >= open_from:
                continue
            if minute >= fresh_from:
                result.from_batch.setdefault((symbol, minute), []).append(
                    Print(trade.ts, trade.trade_id, trade.size, trade.price))
            else:
                result.from_store[symbol].add(minute)
    return result


def _spans(minutes: Iterable[int]) -> list[tuple[int, int]]:
    """Runs of consecutive minutes as ``[start, end)``, cut at day ends (a day is a `trades` bucket)."""
    spans: list[tuple[int, int]] = []
    for minute in sorted(minutes):
        if spans and spans[-1][1] == minute and minute % DAY_MS:
            spans[-1] = (spans[-1][0], minute + MINUTE_MS)
        else:
            spans.append((minute, minute + MINUTE_MS))
    return spans


def stored_prints(cassandra: CassandraCluster, symbol: str, minutes: Iterable[int]) -> dict[int, list[Print]]:
    """The stored trades of ``minutes``, by minute: one range read per run of consecutive minutes."""
    session, select = cassandra.session(), cassandra.prepare(SELECT_TRADES)
    utc = dt.UTC
    by_minute: dict[int, list[Print]] = defaultdict(list)
    for start, end in _spans(minutes):
        rows = session.execute(select, (symbol, candle_bucket("1m", start), dt.datetime.fromtimestamp(start / 1000, utc),
                                        dt.datetime.fromtimestamp(end / 1000, utc)))
        for row in rows:
            ts = driver_ms(row.ts)
            by_minute[ts - ts % MINUTE_MS].append(Print(ts, row.trade_id, row.size, row.price))
    return by_minute


def candles(cassandra: CassandraCluster, batch_plan: Plan) -> list[Candle]:
    """The candles of the plan's minutes, in (symbol, open time) order; a minute with no trade has none."""
    prints = dict(batch_plan.from_batch)
    for symbol, minutes in batch_plan.from_store.items():
        for minute, stored in stored_prints(cassandra, symbol, minutes).items():
            prints[(symbol, minute)] = stored
    return [candle_of(batch_plan.exchanges[symbol], symbol, minute, prints[(symbol, minute)])
            for symbol, minute in sorted(prints)]


def committed_watermarks(kafka: KafkaCluster, group_id: str, topic: str) -> Watermarks:
    """The watermarks ``group_id`` committed with its offsets of ``topic``; none where it committed none."""
    from confluent_kafka import TopicPartition

    full_topic = kafka.topic(topic)
    consumer = kafka.consumer(group_id)
    try:
        partitions = [TopicPartition(full_topic, p) for p in partitions_of(consumer, full_topic)]
        committed = consumer.committed(partitions, timeout=10) if partitions else []
    finally:
        consumer.close()
    return {tp.partition: {symbol: int(ms) for symbol, ms in json.loads(tp.metadata).items()}
            for tp in committed if tp.metadata}


def commit_with_watermarks(kafka: KafkaCluster, group_id: str, ranges: Iterable[OffsetRange],
                           watermarks: Watermarks) -> None:
    """Commit each range's end together with its partition's watermarks, in one request, so they
    can never disagree (Kafka keeps up to ``offset.metadata.max.bytes``, 4 KiB by default, a
    hundred-odd symbols per partition)."""
    ranges = list(ranges)
    commit(kafka, group_id, ranges, {r.partition: json.dumps(watermarks.get(r.partition, {}), sort_keys=True,
                                                             separators=(",", ":")) for r in ranges})
