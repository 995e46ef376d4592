"""``pricepipe backfill``: a symbol's history for a date range into Kafka, from Binance or any CCXT venue."""

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


def stored_after(settings: Settings, symbol: str, interval: str, start_ms: int, end_ms: int) -> int | None:
    """The newest candle in ``[start_ms, end_ms)`` that Cassandra or the lake's raw zone already holds,
    where a backfill resumes; either store may be behind the other (retention, a lake run not yet
    done), so the newer of the two counts."""
    from pricepipe_assets.sources.start_history import newest_in_lake
    from pricepipe_assets.storage.lake import data_lake

    try:
        stored = last_stored_open_time(cassandra_cluster(settings), symbol, interval, start_ms, end_ms)
    except CassandraUnavailable as error:
        print(f"[backfill] cannot see what Cassandra stores ({error})", file=sys.stderr)
        stored = None
    in_lake = newest_in_lake(data_lake(settings), symbol, interval)
    found = [t for t in (stored, in_lake) if t is not None and start_ms <= t < end_ms]
    if found:
        resumed = dt.datetime.fromtimestamp(max(found) / 1000, dt.UTC).isoformat()
        print(f"[backfill] resuming after the last stored candle, {resumed}", file=sys.stderr)
    return max(found, default=None)


def backfill(settings: Settings, symbol: str, start: dt.date, end: dt.date, *, source: str = "dumps",
             interval: str = "1m", exchange: str | None = None) -> int:
    """Publish every ``interval`` candle of ``symbol`` from ``start`` to ``end`` (inclusive days);
    ``exchange`` is the CCXT exchange id of ``source="ccxt"``."""
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    if source == "ccxt":
        return _ccxt_backfill(settings, exchange, symbol, start, end, interval)
    if exchange:
        raise ValueError(f"--exchange goes with --source ccxt; --source {source} is Binance's")
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
    after = stored_after(settings, symbol, interval, start_ms, end_ms)
    fetched = rest_backfill(BinanceRestClient(settings.binance_rest_url), publisher, symbol, interval, start_ms,
                            end_ms - 1, after_open_time=after)
    print(f"[backfill] {symbol} {interval} {start}..{end} via REST: {fetched.candles:,} candles published, "
          f"{fetched.dead_letters} dead letters", file=sys.stderr)
    return 0


def _ccxt_backfill(settings: Settings, exchange_id: str | None, symbol: str, start: dt.date, end: dt.date,
                   interval: str) -> int:
    from pricepipe_assets.sources.ccxt.history import CcxtHistory
    from pricepipe_assets.sources.ccxt.history import backfill as ccxt_backfill
    from pricepipe_assets.sources.ccxt.markets import open_exchange, parse_url_overrides

    if not exchange_id:
        raise ValueError("pricepipe backfill --source ccxt needs --exchange, a CCXT exchange id such as kraken")
    venue = open_exchange(exchange_id.lower(), parse_url_overrides(settings.ccxt_urls))
    history = CcxtHistory.open(venue, symbol, interval)
    start_ms, end_ms = day_start_ms(start), day_start_ms(end + dt.timedelta(days=1))
    after = stored_after(settings, history.symbol, interval, start_ms, end_ms)
    fetched = ccxt_backfill(history, kafka_cluster(settings).publisher(), start_ms, end_ms - 1, after_open_time=after,
                            progress=True)
    print(f"[backfill] {venue.id} {history.market['symbol']} as {history.symbol} {interval} {start}..{end} via CCXT: "
          f"{fetched.candles:,} candles published, {fetched.dead_letters} dead letters", file=sys.stderr)
    return 0
