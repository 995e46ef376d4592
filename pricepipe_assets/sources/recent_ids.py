"""Which trades a live client has seen: BitMEX's ``partial`` after a reconnect repeats recent
trades, and a CCXT venue's stream and its REST gap fill overlap at the junction.

Kept apart so the clients' modules hold only their protocols' flow.
"""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """A bounded memory of ids; the oldest is forgotten first, so memory stays flat on a long run."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> bool:
        """Remember ``key``; False when it was remembered already."""
        if key in self._ids:
            return False
        self._ids[key] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._ids)
