"""What a BitMEX connection remembers between frames: when to ping, and which trades it has seen.

BitMEX's keepalive is application-level (the text ``ping``, answered ``pong``), and its ``partial``
after a reconnect repeats recent trades; both are kept here so the client's module holds only the
protocol's flow.
"""

from __future__ import annotations

import time
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


class Keepalive:
    """When to send BitMEX's ``ping`` and when a missing ``pong`` means the connection is dead."""

    def __init__(self, ping_after_s: float, pong_timeout_s: float) -> None:
        self.ping_after_s = ping_after_s
        self.pong_timeout_s = pong_timeout_s
        self.last_heard = time.monotonic()
        self.ping_sent: float | None = None

    def seconds_left(self, now: float) -> float:
        if self.ping_sent is not None:
            return self.ping_sent + self.pong_timeout_s - now
        return self.last_heard + self.ping_after_s - now

    def heard(self, now: float) -> None:
        """Any message postpones the next ping; only a pong answers one already sent."""
        self.last_heard = now

    def pinged(self, now: float) -> None:
        self.ping_sent = now

    def ponged(self, now: float) -> None:
        self.ping_sent = None
        self.last_heard = now
