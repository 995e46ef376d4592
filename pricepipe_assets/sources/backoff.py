"""Reconnect delays shared by every streaming client."""

from __future__ import annotations

import random
from collections.abc import Callable


def exponential_backoff(initial_s: float = 1.0, factor: float = 2.0, cap_s: float = 60.0, jitter: float = 0.5,
                        random_fraction: Callable[[], float] = random.random) -> Callable[[int], float]:
    """Seconds to wait before the n-th reconnect attempt in a row (n from 1).

    The wait grows by ``factor`` up to ``cap_s``, then a random share of up to ``jitter`` is taken
    off, so many clients cut off together do not all knock again at the same instant.
    """

    def delay(attempt: int) -> float:
        ceiling = min(cap_s, initial_s * factor ** min(attempt - 1, 64))
        return ceiling * (1 - jitter * random_fraction())

    return delay
