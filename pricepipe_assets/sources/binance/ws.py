"""Live 1m candles from Binance's combined kline stream, with the gaps of every reconnect filled over REST.

A WebSocket drops: networks fail and Binance closes every connection after a day. The minutes
that closed while no connection was up are never re-sent on the stream, so after each (re)connect
they are read from the REST klines endpoint, from the minute after the last candle published for
each symbol up to the last closed minute. A closed candle that arrives later than the minute after
the last one published shows a gap the fill could not see yet (REST lags the stream by a moment),
and that gap is filled before the candle is published. Open times already published are never
published again, so ``candles.1m`` has neither holes the exchange did not have nor doubles.

Only closed candles (``"x": true``) are published; the open updates Binance sends every second or
two would be a stream of revisions of one minute. Frames that are not a valid kline, whatever is
wrong with them, go to ``deadletter`` with the reason and the raw frame, and the stream goes on
(see ``sources.frames``, also for the largest frame a connection reads).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection

from pricepipe_assets.contract.record_values import RecordError, now_ms
from pricepipe_assets.contract.records import INTERVAL_MS, Candle
from pricepipe_assets.sources.binance.formats import candle_from_binance_event
from pricepipe_assets.sources.binance.rest import BinanceRestClient, BinanceRestError
from pricepipe_assets.sources.frames import TRANSPORT_LIMIT_BYTES, frame_json, parse_or_refuse
from pricepipe_assets.sources.websocket import ConnectionCounts, WebSocketClient

if TYPE_CHECKING:
    from pricepipe_assets.kafka.publisher import Publisher

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "wss://stream.binance.com:9443"
INTERVAL = "1m"
STEP_MS = INTERVAL_MS[INTERVAL]
# Dead letters of frames that never were on Kafka name the stream they came from instead of a topic.
SOURCE = "binance.ws.kline_1m"


@dataclass
class StreamCounts(ConnectionCounts):
    """What the stream has done so far, for a status line; read it from any thread."""

    candles: int = 0
    gap_filled: int = 0

    def status_line(self) -> str:
        return (f"candles {self.candles}, gap-filled {self.gap_filled}, reconnects {self.reconnects}, "
                f"dead letters {self.dead_letters}")


def combined_stream_url(base_url: str, symbols: Sequence[str], stream: str) -> str:
    """The combined-stream URL of ``stream`` for each symbol (Binance wants stream names in lower case)."""
    names = "/".join(f"{symbol.lower()}@{stream}" for symbol in symbols)
    return f"{base_url.rstrip('/')}/stream?streams={names}"


def stream_url(base_url: str, symbols: Sequence[str]) -> str:
    """The combined-stream URL of the symbols' 1m klines."""
    return combined_stream_url(base_url, symbols, f"kline_{INTERVAL}")


class BinanceKlineStream(WebSocketClient[StreamCounts]):
    """Publishes the closed 1m candles of ``symbols`` until told to stop.

    ``last_open_times`` are the open times of the last candles already stored per symbol (to
    resume after a restart without a gap); the stream keeps it up to date. ``backoff`` maps the
    number of failed attempts in a row to a wait in seconds; ``clock`` (milliseconds UTC) decides
    which minutes have closed. Both are injectable so tests can replay a day in seconds.

    Frames are buffered without bound (``max_queue=None``) so that pings are still answered
    while a gap fill keeps the loop from reading; a kline stream sends only a few a second.
    """

    name = "Binance klines stream"
    # A failing gap fill is worth a reconnect too: the next connection's fill tries again.
    retriable = (BinanceRestError,)

    def __init__(self, symbols: Sequence[str], publisher: Publisher, rest: BinanceRestClient, *,
                 base_url: str = DEFAULT_BASE_URL, backoff: Callable[[int], float] | None = None,
                 clock: Callable[[], int] = now_ms, last_open_times: Mapping[str, int] | None = None,
                 open_timeout_s: float = 10.0, stop_poll_s: float = 0.2) -> None:
        if not symbols:
            raise ValueError("a kline stream needs at least one symbol")
        self.symbols = tuple(symbol.upper() for symbol in symbols)
        super().__init__(stream_url(base_url, self.symbols), publisher, StreamCounts(), backoff=backoff,
                         open_timeout_s=open_timeout_s, poll_s=stop_poll_s, max_size=TRANSPORT_LIMIT_BYTES)
        self.last_open_times: dict[str, int] = {s.upper(): t for s, t in (last_open_times or {}).items()}
        self._rest = rest
        self._clock = clock

    async def _opened(self, connection: ClientConnection) -> None:
        """Fill what closed while away before publishing the new connection's frames."""
        await asyncio.to_thread(self._fill_gaps)

    async def _on_frame(self, frame: bytes) -> None:
        self._working()
        await self._handle(frame)

    async def _handle(self, frame: bytes) -> None:
        candle = parse_or_refuse(lambda: self._parse(frame), lambda reason: self._dead_letter(SOURCE, frame, reason))
        if candle is None:
            return
        last = self.last_open_times.get(candle.symbol)
        if not candle.is_closed or (last is not None and candle.open_time <= last):
            return
        if last is not None and candle.open_time > last + STEP_MS:
            await asyncio.to_thread(self._fill, candle.symbol, candle.open_time - STEP_MS)
        self._publisher.publish(candle)
        self.last_open_times[candle.symbol] = candle.open_time
        self.counts.candles += 1

    def _parse(self, frame: bytes) -> Candle:
        """The candle of a combined-stream frame; what raises (:class:`RecordError` with the reason, or
        anything else that failed) makes the frame a dead letter."""
        message: Any = frame_json(frame)
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            raise RecordError('expected a combined-stream frame {"stream": ..., "data": {...}}')
        kline = message["data"].get("k")
        if isinstance(kline, dict) and kline.get("i") != INTERVAL:
            raise RecordError(f"expected a {INTERVAL} kline, got interval {str(kline.get('i'))[:20]!r}")
        candle = candle_from_binance_event(message["data"])
        if candle.symbol not in self.symbols:
            raise RecordError(f"kline for {candle.symbol}, which this stream did not subscribe to")
        return candle

    def _fill_gaps(self) -> None:
        """After a (re)connect: every minute closed since the last candle published, per symbol."""
        last_closed = self._clock() // STEP_MS * STEP_MS - STEP_MS
        for symbol in self.symbols:
            if symbol in self.last_open_times:
                self._fill(symbol, last_closed)

    def _fill(self, symbol: str, until: int) -> None:
        """Publish the candles after the last one published for ``symbol`` up to open time ``until``."""
        start = self.last_open_times[symbol] + STEP_MS
        if until < start:
            return
        dead_before = self._publisher.dead_letters
        for candle in self._rest.candles(symbol, INTERVAL, start, until, publisher=self._publisher):
            self.last_open_times[symbol] = candle.open_time
            self.counts.gap_filled += 1
        self.counts.dead_letters += self._publisher.dead_letters - dead_before
        log.info("%s: gap %d..%d filled over REST", symbol, start, until)
