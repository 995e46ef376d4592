"""The Dagster resource of :class:`~pricepipe_assets.sources.binance.endpoints.BinanceEndpoints`: the
same settings as resource config, so the UI shows where history is read from."""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.sources.binance.endpoints import BinanceEndpoints


# Unparametrized: a subscripted ConfigurableResource is a pydantic model class of its own at run time.
class BinanceResource(BinanceEndpoints, dg.ConfigurableResource):  # type: ignore[type-arg]
    """Binance's public dumps (any mirror or ``file://`` folder) and REST API."""
