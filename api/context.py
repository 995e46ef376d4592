"""What every endpoint is given: the settings, the store, and the symbols with their clocks.

The ``symbols`` table (one row per symbol with its newest event time) is the platform clock of
``pricepipe_assets.storage.clock``: wall time when live, the replayed moment when replaying. It is small
and read whole, at most once per cache period, because nearly every request needs it (to tell a
known symbol from an unknown one, and to know what "now" is).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass

from api import queries
from api.cache import ByteLru, TtlCache
from api.errors import StreamsFull, UnknownSymbol
from api.live import Feeds
from api.store import AsyncStore
from api.windows import utc
from pricepipe_assets.settings import Settings

FINAL_MAX_AGE_S = 365 * 24 * 3600
# A refused stream has no slot to wait for: one frees only when some chart page closes.
STREAM_RETRY_AFTER_S = 30


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    exchange: str | None
    latest_event_time: dt.datetime | None
    configured: bool


class StreamSlots:
    """The live streams this worker serves, at most ``limit`` at once.

    A stream keeps its connection until the client leaves and is sent every change of its symbol.
    The reads are per symbol, not per stream (:mod:`api.live`), but without a cap the number of
    clients alone would decide this worker's sockets and the work of sending each change to all.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> None:
        if self.open >= self.limit:
            raise StreamsFull(self.limit, STREAM_RETRY_AFTER_S)
        self.open += 1

    def give_back(self) -> None:
        self.open -= 1


class ApiContext:
    def __init__(self, settings: Settings, store: AsyncStore) -> None:
        self.settings = settings
        self.store = store
        self.cache = TtlCache(settings.api_cache_s)
        self.final = ByteLru(settings.api_closed_cache_mb * 1_000_000)
        # Shared caches may keep a final answer too; api.auth makes it private when a key guards it.
        self.final_cache_control = f"public, max-age={FINAL_MAX_AGE_S}, immutable".encode()
        self.streams = StreamSlots(settings.api_streams_max)
        self.feeds = Feeds(settings.api_stream_s)
        self._symbols: dict[str, SymbolInfo] = {}
        self._symbols_read_at = -float("inf")
        self._symbols_lock = asyncio.Lock()

    def _configured(self) -> dict[str, str]:
        configured = {symbol: "bitmex" for symbol in self.settings.bitmex_symbols}
        configured.update({symbol: "binance" for symbol in self.settings.symbols})
        return configured

    async def symbols(self) -> dict[str, SymbolInfo]:
        """Configured symbols and every symbol data arrived for, by name.

        Requests that wait while another reads the table take that read's answer (it finished
        after they asked), so concurrent requests cost one read, even with the cache off. The table
        is read again after ``PRICEPIPE_API_STREAM_S`` when that is shorter than the cache's time:
        the clocks end the default ranges, so a candle `/stream` has sent is in `/candles` as soon.
        """
        asked = time.monotonic()
        async with self._symbols_lock:
            if self._symbols_read_at < asked - min(self.settings.api_cache_s, self.settings.api_stream_s):
                rows = await self.store.rows(queries.SYMBOLS, ())
                configured = self._configured()
                found = {symbol: SymbolInfo(symbol, exchange, None, True) for symbol, exchange in configured.items()}
                for row in rows:
                    found[row.symbol] = SymbolInfo(
                        row.symbol, row.exchange or configured.get(row.symbol),
                        utc(row.latest_event_time) if row.latest_event_time else None, row.symbol in configured)
                self._symbols, self._symbols_read_at = found, time.monotonic()
            return self._symbols

    async def symbol(self, symbol: str) -> SymbolInfo:
        """The symbol's info; 404 when no such symbol is configured or was ever seen."""
        info = (await self.symbols()).get(symbol)
        if info is None:
            raise UnknownSymbol(symbol)
        return info

    async def now(self, symbol: str | None = None) -> dt.datetime | None:
        """The symbol's clock, or the platform's (the newest of all) when no symbol is given;
        None before any event arrived."""
        if symbol is not None:
            return (await self.symbol(symbol)).latest_event_time
        times = [info.latest_event_time for info in (await self.symbols()).values() if info.latest_event_time]
        return max(times, default=None)
