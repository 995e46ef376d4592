"""Each key's rate limit: a token bucket per key, in this worker's memory.

The limit is per API worker process: with ``PRICEPIPE_API_WORKERS`` workers a key may make up to
that many times its rate in all, and a restart forgets what was spent. A shared counter (in
Cassandra or elsewhere) would cost a write per request, which is what the limit is there to
spare; a per-worker bucket costs a dictionary lookup.
"""

from __future__ import annotations

import math
import time

from pricepipe_assets.storage.api_keys import ApiKey


class RateLimits:
    """A bucket of ``limit`` requests per key, refilled at ``limit`` per ``period_s``: a client may
    burst up to its limit at once, then goes at the rate."""

    def __init__(self) -> None:
        self._buckets: dict[bytes, tuple[float, float]] = {}  # key hash -> (requests left, when counted)

    def take(self, key: ApiKey) -> int:
        """Count one request of ``key``; 0 when it may go on, else the whole seconds until it may."""
        if key.rate is None:
            return 0
        now = time.monotonic()
        per_s = key.rate.limit / key.rate.period_s
        left, then = self._buckets.get(key.key_hash, (float(key.rate.limit), now))
        left = min(float(key.rate.limit), left + (now - then) * per_s)
        if left >= 1:
            self._buckets[key.key_hash] = (left - 1, now)
            return 0
        self._buckets[key.key_hash] = (left, now)
        return max(1, math.ceil((1 - left) / per_s))
