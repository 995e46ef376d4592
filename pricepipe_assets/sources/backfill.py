"""``pricepipe backfill``: a symbol's history for a date range into Kafka, from the dumps or the REST API."""

from __future__ import annotations

import datetime as dt
import sys

from pricepipe_assets.contract.utc import day_start_ms
from pricepipe_assets.kafka.client import kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dump_files import Dataset
from pricepipe_assets.sources.binance.endpoints import binance_endpoints
from pricepipe_assets.storage.cassandra import CassandraUnavailable, cassandra_cluster
from pricepipe_assets.storage.live_tables import last_stored_open_time


def backfill(settings: Settings, symbol: str, start: dt.date, end: dt.date, *, source: str = "dumps",
             interval: str = "1m") -> int:
    """Publish every ``interval`` candle of ``symbol`` from ``start`` to ``end`` (inclusive days)."""
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    publisher = kafka_cluster(settings).publisher()
    if source == "dumps":
        dumped = binance_endpoints(settings).dumps(progress=True).backfill(publisher, Dataset.klines(symbol, interval), start, end)
        print(f"[backfill] {symbol} {interval} {start}..{end}: {dumped.records_published:,} candles published, "
              f"{dumped.dead_letters} dead letters, {dumped.files} files ({dumped.verified} checksum-verified)",
              file=sys.stderr)
        return 0

    from pricepipe_assets.sources.binance.rest import BinanceRestClient
    from pricepipe_assets.sources.binance.rest import backfill as rest_backfill

    start_ms, end_ms = day_start_ms(start), day_start_ms(end + dt.timedelta(days=1))
    try:
        after = last_stored_open_time(cassandra_cluster(settings), symbol, interval, start_ms, end_ms)
    except CassandraUnavailable as error:
        print(f"[backfill] cannot see what is stored ({error}); starting at {start}", file=sys.stderr)
        after = None
    if after is not None:
        resumed = dt.datetime.fromtimestamp(after / 1000, dt.UTC).isoformat()
        print(f"[backfill] resuming after the last stored candle, {resumed}", file=sys.stderr)
    fetched = rest_backfill(BinanceRestClient(settings.binance_rest_url), publisher, symbol, interval, start_ms,
                            end_ms - 1, after_open_time=after)
    print(f"[backfill] {symbol} {interval} {start}..{end} via REST: {fetched.candles:,} candles published, "
          f"{fetched.dead_letters} dead letters", file=sys.stderr)
    return 0
