"""Delivery: every queued notice goes to its channel, in order, within a time budget per tick.

A channel that is down keeps its notices queued in the state (the sensor's cursor) and is tried
again after a capped, doubling delay; one failure skips that channel for the rest of the tick,
so a dead mail server costs a tick one timeout, not one per message, and never blocks it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pricepipe_assets.alerts.incidents import AlertState, Notice

FIRST_RETRY_S = 15.0
MAX_RETRY_S = 600.0
# A notice nobody could deliver for a day is stale news: dropped (and said so in the tick's log).
MAX_AGE_S = 86_400.0
TICK_BUDGET_S = 15.0


class ChannelError(RuntimeError):
    """A channel did not accept a notice; the message says why, without secrets."""


class Channel(Protocol):
    name: str

    def send(self, notice: Notice) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """What a tick's delivery did: notices sent, failures (channel and why), and notices dropped."""

    sent: int
    failures: list[str]
    dropped: int


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: 15 s doubling, at most 10 minutes."""
    return float(min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** max(attempts - 1, 0)))


def deliver(state: AlertState, channels: Mapping[str, Channel], now: float, budget_s: float = TICK_BUDGET_S,
            clock: Callable[[], float] = time.monotonic) -> Delivery:
    """Send the due notices of ``state.pending``, oldest first, removing each one its channel took.

    A channel's notices keep their order: once one of them is not due or fails, the later ones wait
    too, so nobody reads a resolution before its opening. Notices of a channel no longer configured
    are dropped, as are those older than ``MAX_AGE_S``.
    """
    started = clock()
    sent, failures, dropped = 0, [], 0
    blocked: set[str] = set()
    kept = []
    for item in state.pending:
        if item.channel not in channels or now - item.notice.at > MAX_AGE_S:
            dropped += 1
            continue
        if item.channel in blocked or item.next_try > now or clock() - started > budget_s:
            blocked.add(item.channel)
            kept.append(item)
            continue
        try:
            channels[item.channel].send(item.notice)
        except ChannelError as error:
            item.attempts += 1
            item.next_try = now + retry_delay(item.attempts)
            failures.append(f"{item.channel}: {error} (attempt {item.attempts}, next in {retry_delay(item.attempts):.0f} s)")
            blocked.add(item.channel)
            kept.append(item)
            continue
        sent += 1
    state.pending = kept
    return Delivery(sent, failures, dropped)
