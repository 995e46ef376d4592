"""``pricepipe backfill``: a symbol's history for a date range into Kafka, from the dumps or the REST API."""

from __future__ import annotations

import datetime as dt
import sys

from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.contract.utc import day_start_ms
from pricepipe_assets.kafka.client import kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dumps import Dataset
from pricepipe_assets.sources.binance.endpoints import binance_endpoints
from pricepipe_assets.storage.cassandra import CassandraCluster, CassandraUnavailable, cassandra_cluster
from pricepipe_assets.storage.cassandra_schema import candle_bucket


def last_stored_open_time(cassandra: CassandraCluster, symbol: str, interval: str, start_ms: int,
                          end_ms: int) -> int | None:
    """The newest candle of ``symbol`` already in Cassandra within ``[start_ms, end_ms)``, newest bucket first."""
    query = cassandra.prepare(
        "SELECT open_time FROM candles WHERE symbol = ? AND interval = ? AND bucket = ?"
        " AND open_time >= ? AND open_time < ? ORDER BY open_time DESC LIMIT 1"
    )
    session = cassandra.session()
    buckets = sorted({candle_bucket(interval, ms) for ms in range(start_ms, end_ms, INTERVAL_MS["1d"])}, reverse=True)
    for bucket in buckets:
        row = session.execute(query, (symbol, interval, bucket, start_ms, end_ms)).one()
        if row is not None:
            return int(row.open_time.replace(tzinfo=dt.UTC).timestamp() * 1000)
    return None


def backfill(settings: Settings, symbol: str, start: dt.date, end: dt.date, *, source: str = "dumps",
             interval: str = "1m") -> int:
    """Publish every ``interval`` candle of ``symbol`` from ``start`` to ``end`` (inclusive days)."""
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    publisher = kafka_cluster(settings).publisher()
    if source == "dumps":
        result = binance_endpoints(settings).dumps(progress=True).backfill(publisher, Dataset.klines(symbol, interval), start, end)
        print(f"[backfill] {symbol} {interval} {start}..{end}: {result.records_published:,} candles published, "
              f"{result.dead_letters} dead letters, {result.files} files ({result.verified} checksum-verified)",
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
    result = rest_backfill(BinanceRestClient(settings.binance_rest_url), publisher, symbol, interval, start_ms,
                           end_ms - 1, after_open_time=after)
    print(f"[backfill] {symbol} {interval} {start}..{end} via REST: {result.candles:,} candles published, "
          f"{result.dead_letters} dead letters", file=sys.stderr)
    return 0
