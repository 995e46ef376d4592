"""`orderbook` to Cassandra through the topic's sensor and job: `order_books_live` keeps the newest book
per symbol, `latest_prices` takes its best bid and ask, so a Binance symbol has buy and sell, and
`order_books_lake` keeps every book in the raw zone.

Data: the real tardis top-25 snapshots of Binance futures BTCUSDT (``support.order_books``).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pricepipe_assets.contract.topics import ALL_TOPICS, ORDERBOOK
from pricepipe_assets.defs.live import order_books_live_valid
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets_tests.support.kafka_reads import consume
from pricepipe_assets_tests.support.kafka_runs import definitions, drain
from pricepipe_assets_tests.support.order_books import tardis_books


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
    evaluation = order_books_live_valid(cassandra=cassandra)
    assert evaluation.passed and evaluation.metadata["books_checked"].value == 1
    (letter,) = consume(kafka, "deadletter", 1)
    assert b"missing field" in letter.value()
    raw = local_lake.read_dataset("raw/order_books").to_pandas().sort_values("ts")
    assert len(raw) == len(books) and list(raw["sequence"]) == [b.sequence for b in books]
    assert [tuple(level) for level in raw["bids"].iloc[-1]] == list(newest.bids)
