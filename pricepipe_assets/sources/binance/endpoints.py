"""Where Binance history comes from: the public dumps site (or a mirror) and the REST API."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dumps import BinanceDumps


class BinanceEndpoints(BaseModel):
    """Binance's public dumps (``data.binance.vision`` layout; any mirror or ``file://`` folder) and REST API."""

    dumps_url: str = "https://data.binance.vision"
    rest_url: str = "https://api.binance.com"
    cache_dir: str

    def dumps(self, progress: bool = False) -> BinanceDumps:
        """A dumps client whose downloads are cached outside the repository, under ``cache_dir``."""
        return BinanceDumps(Path(self.cache_dir) / "binance-dumps", self.dumps_url, progress=progress)


def binance_endpoints(settings: Settings) -> BinanceEndpoints:
    """The endpoints the settings name."""
    return BinanceEndpoints(dumps_url=settings.binance_dumps_url, rest_url=settings.binance_rest_url,
                            cache_dir=str(settings.cache_dir))
