"""The arithmetic of the rules Dagster has no mechanism for, on plain values: a job's failures in a
row and a counter's rate. The sensors read the values from the Dagster instance and Kafka."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A rate over less than a minute of samples jumps with every burst; the sensors tick more often.
MIN_RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class RunOutcome:
    """A finished run of a job: whether it failed, whether Dagster will retry it, when it ended."""

    run_id: str
    failed: bool
    will_retry: bool
    ended: float


def failure_streak(newest_first: Iterable[RunOutcome]) -> list[RunOutcome]:
    """The job's failed runs since its last success, newest first. A run Dagster retries is not
    counted: its retry tells whether the attempt as a whole failed."""
    streak = []
    for outcome in newest_first:
        if outcome.will_retry:
            continue
        if not outcome.failed:
            break
        streak.append(outcome)
    return streak


def counter_rate(memo: dict[str, Any], name: str, total: int, now: float) -> float | None:
    """Per minute, how fast ``total`` grew since the sample kept in ``memo[name]``, once that sample
    is at least ``MIN_RATE_WINDOW_S`` old (then ``total`` becomes the sample); None before. A counter
    that went down (a topic recreated) restarts from the new value."""
    sample = memo.get(name)
    if sample is None or total < int(sample[1]):
        memo[name] = [now, total]
        return None
    elapsed = now - float(sample[0])
    if elapsed < MIN_RATE_WINDOW_S:
        return None
    memo[name] = [now, total]
    return (total - int(sample[1])) * 60.0 / elapsed


def symbols_in(value: Any) -> tuple[str, ...]:
    """The symbol names a check's metadata lists: a JSON list of names, or the keys of a JSON
    object by symbol (nested one level deeper by topic, as a feed's observation has them)."""
    if isinstance(value, Mapping):
        names: set[str] = set()
        for key, inner in value.items():
            names.update(inner if isinstance(inner, Mapping) else [key])
        return tuple(sorted(names))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(sorted(str(item) for item in value))
    return ()
