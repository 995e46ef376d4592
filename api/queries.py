"""The CQL statements the API runs, written by the storage modules that own their tables and
prepared once per process (:data:`ALL`, at start-up).

Each reads one partition by its full key (symbol and time bucket, see
``pricepipe_assets.storage.cassandra_schema``) with a clustering range or a LIMIT, except
``SYMBOLS``' read of a table of one row per symbol and the single-row reads of ``LATEST_PRICE``
and ``ORDER_BOOK``; none needs ``ALLOW FILTERING``.
"""

from __future__ import annotations

from pricepipe_assets.storage.clock import SELECT_SYMBOLS as SYMBOLS
from pricepipe_assets.storage.live_tables import SELECT_CANDLES as CANDLES
from pricepipe_assets.storage.live_tables import SELECT_LATEST_PRICE as LATEST_PRICE
from pricepipe_assets.storage.live_tables import SELECT_MOVING_AVERAGES as MOVING_AVERAGES
from pricepipe_assets.storage.live_tables import SELECT_NEWEST_CANDLE as NEWEST_CANDLE
from pricepipe_assets.storage.live_tables import SELECT_ORDER_BOOK as ORDER_BOOK
from pricepipe_assets.storage.live_tables import SELECT_TRADE_HOURS as TRADE_HOURS
from pricepipe_assets.storage.live_tables import SELECT_TRADES as TRADES
from pricepipe_assets.storage.prediction_tables import SELECT_FORECAST as FORECAST
from pricepipe_assets.storage.prediction_tables import SELECT_MODEL_PREDICTIONS as MODEL_PREDICTIONS
from pricepipe_assets.storage.prediction_tables import SELECT_MODEL_SCORES as MODEL_SCORES
from pricepipe_assets.storage.prediction_tables import SELECT_NEWEST_FORECAST as NEWEST_FORECAST
from pricepipe_assets.storage.prediction_tables import SELECT_PREDICTIONS as PREDICTIONS

__all__ = ["ALL", "CANDLES", "FORECAST", "LATEST_PRICE", "MODEL_PREDICTIONS", "MODEL_SCORES", "MOVING_AVERAGES",
           "NEWEST_CANDLE", "NEWEST_FORECAST", "ORDER_BOOK", "PREDICTIONS", "SYMBOLS", "TRADES", "TRADE_HOURS"]

ALL = (SYMBOLS, CANDLES, NEWEST_CANDLE, MOVING_AVERAGES, NEWEST_FORECAST, FORECAST, PREDICTIONS, MODEL_PREDICTIONS,
       MODEL_SCORES, TRADE_HOURS, TRADES, LATEST_PRICE, ORDER_BOOK)
