"""The lake's datasets and how their files are named.

Raw files are named by Kafka partition and a fixed block of offsets (``p0-o000000010000`` holds
offsets [10000, 20000)), so a rewrite of a block replaces its file instead of adding a copy; the
curated zone holds what Spark derives from the raw zone.
"""

from __future__ import annotations

OFFSETS_PER_FILE = 10_000
RAW_CANDLES = "raw/candles"
RAW_TRADES = "raw/trades"
RAW_ORDER_BOOKS = "raw/order_books"
CURATED_CANDLES = "curated/candles"
CURATED_MOVING_AVERAGES = "curated/moving_averages"
CURATED_TRADE_STATS = "curated/trade_stats"


def block_start(offset: int) -> int:
    return offset - offset % OFFSETS_PER_FILE


def chunk_basename(partition: int, offset: int) -> str:
    """The file name stem of the offset block ``offset`` falls in."""
    return f"p{partition}-o{block_start(offset):012d}"
