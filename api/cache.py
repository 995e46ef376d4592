"""A short-lived cache for hot answers (latest price, the last hours' statistics).

Those answers change at most once per sensor run (seconds apart), while a dashboard may ask for
them many times a second; serving them from memory for ``PRICEPIPE_API_CACHE_S`` seconds spares
Cassandra. Responses say so: ``X-Cache: HIT|MISS``, ``Age`` and ``Cache-Control: max-age``.
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
