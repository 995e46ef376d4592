"""Kafka topic names of the pricepipe contract (design §3); every producer and consumer uses these."""

CANDLES_1M = "candles.1m"
CANDLES_1H = "candles.1h"
CANDLES_1D = "candles.1d"
TRADES = "trades"
QUOTES = "quotes"
PREDICTIONS = "predictions"
ORDERBOOK = "orderbook"
DEADLETTER = "deadletter"

ALL_TOPICS: tuple[str, ...] = (CANDLES_1M, CANDLES_1H, CANDLES_1D, TRADES, QUOTES, ORDERBOOK, PREDICTIONS,
                               DEADLETTER)
