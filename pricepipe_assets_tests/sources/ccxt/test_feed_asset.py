"""The CCXT feed in the asset graph: an asset of the `exchanges` group beside the native feeds,
writing the topics it publishes, and observed by `feeds_sensor` from its records' `exchange`."""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.contract.records import Record, Trade
from pricepipe_assets.contract.topics import CANDLES_1D, CANDLES_1M, ORDERBOOK, TRADES
from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.exchanges import BINANCE_FEED, CCXT_FEED, FEEDS, feed_observations
from pricepipe_assets.defs.kafka import WRITERS
from pricepipe_assets.sources.ccxt.live import trade_from_ccxt

TS = 1_704_067_200_000


def test_the_ccxt_feed_is_an_exchanges_asset_writing_candles_trades_and_books() -> None:
    (spec,) = [spec for spec in FEEDS if spec.key == CCXT_FEED]
    assert spec.group_name == "exchanges"
    assert {topic for topic, writers in WRITERS.items() if CCXT_FEED in writers} >= {CANDLES_1M, CANDLES_1D, TRADES,
                                                                                       ORDERBOOK}


def test_a_ccxt_venues_records_are_observed_as_the_ccxt_feed_and_binances_as_binance_feed() -> None:
    def trade(exchange: str, symbol: str, ts: int) -> Trade:
        return trade_from_ccxt({"id": "1", "timestamp": ts, "price": 1.0, "amount": 1.0, "side": "buy"}, exchange,
                               symbol)

    records: list[Record] = [trade("kraken", "XXBTZUSD", TS), trade("okx", "BTCUSDT", TS + 5),
                             trade("binance", "BTCUSDT", TS)]
    events, _ = feed_observations({TRADES: records}, {TRADES: 3})

    by_feed = {event.asset_key: event.metadata for event in events}
    assert set(by_feed) == {CCXT_FEED, BINANCE_FEED}
    assert by_feed[CCXT_FEED]["newest_by_topic_and_symbol"] == dg.MetadataValue.json(
        {TRADES: {"BTCUSDT": utc_iso(TS + 5), "XXBTZUSD": utc_iso(TS)}})
