"""The API's endpoints, one module per resource; :data:`ENDPOINTS` lists them all."""

from __future__ import annotations

from api.endpoint import Endpoint
from api.routes import candles, forecasts, orderbook, prices, statistics, symbols

ENDPOINTS: tuple[Endpoint, ...] = (*symbols.ENDPOINTS, *candles.ENDPOINTS, *forecasts.ENDPOINTS,
                                   *statistics.ENDPOINTS, *prices.ENDPOINTS, *orderbook.ENDPOINTS)
