"""Real order books as the feeds publish them, for the tests of what reads `orderbook`.

The ten tardis top-25 snapshots of Binance futures BTCUSDT in ../shared/data/samples/orderbook,
each cut to its best ``depth`` levels; ``sequence`` is the row's number (tardis keeps no update id).
"""

from __future__ import annotations

import csv
from pathlib import Path

from pricepipe_assets.contract.books import OrderBook

BOOK25_CSV = "samples/orderbook/nautilus_tardis_binance-futures_book_snapshot_25_BTCUSDT.csv"


def tardis_books(shared_data: Path, depth: int = 10) -> list[OrderBook]:
    with (shared_data / BOOK25_CSV).open(newline="") as source:
        rows = list(csv.DictReader(source))
    return [OrderBook("binance", row["symbol"], int(row["timestamp"]) // 1000, number,
                      tuple((float(row[f"bids[{i}].price"]), float(row[f"bids[{i}].amount"])) for i in range(depth)),
                      tuple((float(row[f"asks[{i}].price"]), float(row[f"asks[{i}].amount"])) for i in range(depth)))
            for number, row in enumerate(rows, start=1)]
