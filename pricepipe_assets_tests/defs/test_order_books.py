"""`orderbook` to Cassandra through the topic's sensor and job: `order_books_live` keeps the newest book
per symbol and `latest_prices` takes its best bid and ask, so a Binance symbol has buy and sell.

Data: the ten real tardis top-25 snapshots of Binance futures BTCUSDT in
../shared/data/samples/orderbook, cut to their best 10 levels as the feed publishes them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import dagster as dg

from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.contract.topics import ALL_TOPICS, ORDERBOOK
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets_tests.support.kafka_reads import consume
from pricepipe_assets_tests.support.kafka_runs import definitions, drain

BOOK25_CSV = "samples/orderbook/nautilus_tardis_binance-futures_book_snapshot_25_BTCUSDT.csv"


def tardis_books(shared_data: Path, depth: int = 10) -> list[OrderBook]:
    """Each real snapshot row as the order book record a feed would publish."""
    with (shared_data / BOOK25_CSV).open(newline="") as source:
        rows = list(csv.DictReader(source))
    return [OrderBook("binance", row["symbol"], int(row["timestamp"]) // 1000, number,
                      tuple((float(row[f"bids[{i}].price"]), float(row[f"bids[{i}].amount"])) for i in range(depth)),
                      tuple((float(row[f"asks[{i}].price"]), float(row[f"asks[{i}].amount"])) for i in range(depth)))
            for number, row in enumerate(rows, start=1)]


def test_the_newest_book_is_stored_per_symbol_and_feeds_the_latest_bid_and_ask(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path) -> None:
    kafka.ensure_topics(ALL_TOPICS)
    books = tardis_books(shared_data)
    publisher = kafka.publisher()
    for book in [*books[5:], *books[:5]]:  # the older half arrives late: it must not win
        publisher.publish(book)
    publisher.flush()
    producer = kafka.producer()
    producer.produce(kafka.topic(ORDERBOOK), key=b"BTCUSDT", value=b'{"v":1,"symbol":"BTCUSDT"}')
    producer.flush(10)
    defs, instance = definitions(kafka, cassandra, local_lake), dg.DagsterInstance.ephemeral()
    assert all(run.success for run in drain(defs, ORDERBOOK, kafka, instance))

    newest = books[-1]
    row = cassandra.session().execute("SELECT * FROM order_books WHERE symbol = 'BTCUSDT'").one()
    assert row.exchange == "binance" and row.sequence == newest.sequence
    assert tuple(tuple(level) for level in row.bids) == newest.bids
    assert tuple(tuple(level) for level in row.asks) == newest.asks
    assert int(row.ts.timestamp() * 1000) == newest.ts
    prices = cassandra.session().execute("SELECT bid, ask, quote_time FROM latest_prices WHERE symbol = 'BTCUSDT'").one()
    assert (prices.bid, prices.ask) == (newest.bids[0][0], newest.asks[0][0])
    (letter,) = consume(kafka, "deadletter", 1)
    assert b"missing field" in letter.value()
