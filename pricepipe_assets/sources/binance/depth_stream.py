"""Live Binance order books: the combined ``<symbol>@depth@100ms`` stream, synced with REST snapshots.

One connection carries every symbol's diff events. Each symbol has its own :class:`DepthSync`
(the rules Binance documents are in ``depth``): as soon as a symbol has buffered events and no
snapshot, one is read over REST in a worker thread while the connection goes on reading and
buffering, so a slow snapshot never stalls the other symbols or the WebSocket's pings. A gap or a
stale snapshot makes the symbol read a new snapshot; after a reconnect every symbol starts over,
because the events sent while it was away are lost. Only trusted books reach the
:class:`BookThrottle`, and a symbol's waiting book is forgotten the moment its sync breaks.

Frames that are not a valid depth event, and snapshots Binance garbles, go to ``deadletter`` with
the reason, whatever is wrong with them (see ``sources.frames``); the stream goes on, and a refused
frame leaves every book as it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection

from pricepipe_assets.contract.record_values import RecordError
from pricepipe_assets.sources.binance.depth import DepthEvent, DepthSnapshot, DepthSync, depth_event, depth_snapshot
from pricepipe_assets.sources.binance.rest import BinanceRestClient, BinanceRestError
from pricepipe_assets.sources.binance.ws import DEFAULT_BASE_URL, combined_stream_url
from pricepipe_assets.sources.book_throttle import BookThrottle
from pricepipe_assets.sources.frames import TRANSPORT_LIMIT_BYTES, frame_json, json_bytes, parse_or_refuse
from pricepipe_assets.sources.websocket import ConnectionCounts, WebSocketClient

if TYPE_CHECKING:
    from pricepipe_assets.kafka.publisher import Publisher

log = logging.getLogger(__name__)

SOURCE = "binance.ws.depth"
SNAPSHOT_SOURCE = "binance.rest.depth"
STREAM = "depth@100ms"


@dataclass
class DepthCounts(ConnectionCounts):
    """What the depth stream did so far, for a status line (read from any thread)."""

    events: int = 0
    snapshots: int = 0
    resyncs: int = 0

    def status_line(self) -> str:
        return (f"depth events {self.events}, snapshots {self.snapshots}, resyncs {self.resyncs}, "
                f"reconnects {self.reconnects}, dead letters {self.dead_letters}")


def depth_stream_url(base_url: str, symbols: Sequence[str]) -> str:
    return combined_stream_url(base_url, symbols, STREAM)


class BinanceDepthStream(WebSocketClient[DepthCounts]):
    """Publishes the top ``depth`` levels of each symbol's trusted book through ``throttle`` until stopped."""

    name = "Binance depth stream"
    retriable = (BinanceRestError,)

    def __init__(self, symbols: Sequence[str], publisher: Publisher, rest: BinanceRestClient, *,
                 depth: int, throttle: BookThrottle, base_url: str = DEFAULT_BASE_URL,
                 backoff: Callable[[int], float] | None = None, open_timeout_s: float = 10.0,
                 poll_s: float = 0.2, snapshot_retry_s: float = 0.5) -> None:
        if not symbols:
            raise ValueError("a depth stream needs at least one symbol")
        self.symbols = tuple(symbol.upper() for symbol in symbols)
        super().__init__(depth_stream_url(base_url, self.symbols), publisher, DepthCounts(), backoff=backoff,
                         open_timeout_s=open_timeout_s, poll_s=poll_s, max_size=TRANSPORT_LIMIT_BYTES)
        self.syncs = {symbol: DepthSync(symbol) for symbol in self.symbols}
        self._rest = rest
        self._depth = depth
        self._throttle = throttle
        self._snapshot_retry_s = snapshot_retry_s
        self._fetching: dict[str, asyncio.Task[None]] = {}

    async def _opened(self, connection: ClientConnection) -> None:
        """Every book starts over: the events sent while the stream was away are lost."""
        for sync in self.syncs.values():
            sync.reset()
            self._throttle.forget(sync.symbol)

    async def _on_frame(self, frame: bytes) -> None:
        self._working()
        self.handle_frame(frame)

    async def _between_frames(self, connection: ClientConnection) -> None:
        self._throttle.flush_due()

    def _closed(self) -> None:
        for task in self._fetching.values():
            task.cancel()
        self._fetching.clear()

    def handle_frame(self, frame: str | bytes) -> None:
        """Apply one frame's event; a frame that is none is a dead letter, whatever is wrong with it,
        so no input can end the stream (failures of Kafka still do)."""
        event = parse_or_refuse(lambda: self._parse(frame), lambda reason: self._reject(SOURCE, frame, reason))
        if event is None:
            return
        self.counts.events += 1
        sync = self.syncs[event.symbol]
        resyncs = sync.resyncs
        self._after(sync, sync.on_event(event), resyncs)

    def _parse(self, frame: str | bytes) -> DepthEvent:
        message: Any = frame_json(frame)
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            raise RecordError('expected a combined-stream frame {"stream": ..., "data": {...}}')
        event = depth_event(message["data"])
        if event.symbol not in self.syncs:
            raise RecordError(f"depth event for {event.symbol}, which this stream did not subscribe to")
        return event

    def _after(self, sync: DepthSync, changed: bool, resyncs: int) -> None:
        """Publish a trusted change; forget a broken book's waiting state and fetch a snapshot when needed."""
        book = sync.book(self._depth) if changed else None
        if book is not None:
            self._throttle.offer(book)
        if not sync.trusted:
            self._throttle.forget(sync.symbol)
        self.counts.resyncs += sync.resyncs - resyncs
        if sync.needs_snapshot and sync.symbol not in self._fetching:
            self._fetching[sync.symbol] = asyncio.get_running_loop().create_task(self._fetch(sync))

    async def _fetch(self, sync: DepthSync, delay_s: float = 0.0) -> None:
        resyncs = sync.resyncs
        try:
            while sync.needs_snapshot:
                await asyncio.sleep(delay_s)
                delay_s = self._snapshot_retry_s
                try:
                    body = await asyncio.to_thread(self._rest.depth, sync.symbol)
                except BinanceRestError as error:
                    log.warning("Binance depth snapshot of %s: %s", sync.symbol, error)
                    continue
                snapshot = self._read_snapshot(body)
                if snapshot is None:
                    continue
                self.counts.snapshots += 1
                if sync.on_snapshot(snapshot):
                    log.info("%s: depth snapshot %d taken", sync.symbol, snapshot.last_update_id)
                else:
                    log.info("%s: depth snapshot %d older than the stream; reading another", sync.symbol,
                             snapshot.last_update_id)
        finally:  # a fetch cancelled by a lost connection must not drop the next connection's fetch
            if self._fetching.get(sync.symbol) is asyncio.current_task():
                del self._fetching[sync.symbol]
        self._after(sync, sync.trusted, resyncs)

    def _read_snapshot(self, body: Any) -> DepthSnapshot | None:
        return parse_or_refuse(lambda: depth_snapshot(body),
                               lambda reason: self._reject(SNAPSHOT_SOURCE, json_bytes(body, b""), reason))

    def _reject(self, source: str, raw: str | bytes, reason: str) -> None:
        log.warning("Binance depth input refused (%s): %s", source, reason)
        self._dead_letter(source, raw, reason)
