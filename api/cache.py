"""In-memory answers: a short-lived cache for hot ones, and a bounded one for those that never change.

Hot answers (latest price, the last hours' statistics) change at most once per sensor run
(seconds apart), while a dashboard may ask for them many times a second; serving them from memory
for ``PRICEPIPE_API_CACHE_S`` seconds spares Cassandra. Responses say so: ``X-Cache: HIT|MISS``,
``Age`` and ``Cache-Control: max-age``. A closed day of 1m candles never changes at all, so it is
kept for as long as memory allows (``PRICEPIPE_API_CLOSED_CACHE_MB``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

MAX_ENTRIES = 1024


class TtlCache:
    def __init__(self, ttl_s: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._max_entries = max_entries
        self.pending: dict[Any, Any] = {}  # key -> the future of the answer being computed for it

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def get(self, key: Any) -> tuple[Any, float] | None:
        """The cached value and its age in seconds, or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = time.monotonic() - entry[0]
        if age >= self.ttl_s:
            del self._entries[key]
            return None
        return entry[1], age

    def put(self, key: Any, value: Any) -> None:
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


class ByteLru:
    """Answers that never change, kept until ``max_bytes`` of them are held, least recently used
    dropped first: a bound on memory that does not depend on how large each answer is."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[Any, tuple[int, Any]] = OrderedDict()

    def get(self, key: Any) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Any, value: Any, size: int) -> None:
        """Keep ``value`` (of ``size`` bytes); one larger than the whole bound is not kept at all."""
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old[0]
        self._entries[key] = (size, value)
        self.size += size
        while self.size > self.max_bytes:
            self.size -= self._entries.popitem(last=False)[1][0]
