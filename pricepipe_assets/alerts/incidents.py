"""The incident state machine: a problem seen on a tick opens an incident once, stays quiet while
later ticks keep seeing it, and resolves once when a tick no longer does.

The whole state (open incidents and the messages not yet delivered) is plain JSON, so a sensor
keeps it in its cursor and a daemon restart, or a fresh evaluation in another process, picks up
exactly where the last saved tick stopped.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Event = Literal["open", "resolve"]
# Bounds the cursor: a channel down for days must not grow it without limit.
MAX_PENDING = 200


@dataclass(frozen=True)
class Finding:
    """A problem one tick sees: ``key`` names the incident (``job:retention_job``), ``kind`` the rule
    that found it, so a tick that could not run a rule never resolves that rule's incidents."""

    key: str
    kind: str
    title: str
    detail: str
    since: float
    link: str
    assets: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notice:
    """One message about an incident: its opening or its resolution."""

    event: Event
    finding: Finding
    at: float


@dataclass
class Pending:
    """A notice a channel has not accepted yet, and when to try again."""

    notice: Notice
    channel: str
    attempts: int = 0
    next_try: float = 0.0


@dataclass
class AlertState:
    """Open incidents by key, the notices each channel still owes, and what a rule must remember
    between ticks (``memo``: a previous sample, to turn a counter into a rate)."""

    incidents: dict[str, Finding] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)
    memo: dict[str, Any] = field(default_factory=dict)

    def update(self, findings: Iterable[Finding], checked: Collection[str], now: float,
               channels: Collection[str]) -> list[Notice]:
        """Open an incident for each new finding and resolve each open one of a ``checked`` kind that
        was not found again; returns the new notices, each also queued for every one of ``channels``.
        An incident keeps the finding it opened with, so its "since" is the first sighting."""
        seen = {finding.key: finding for finding in findings}
        notices = [Notice("open", finding, now) for key, finding in sorted(seen.items())
                   if key not in self.incidents]
        for key, opened in sorted(self.incidents.items()):
            if opened.kind in checked and key not in seen:
                notices.append(Notice("resolve", opened, now))
        for notice in notices:
            if notice.event == "open":
                self.incidents[notice.finding.key] = notice.finding
            else:
                del self.incidents[notice.finding.key]
        self.pending.extend(Pending(notice, channel) for notice in notices for channel in sorted(channels))
        del self.pending[:-MAX_PENDING]
        return notices

    def to_json(self) -> str:
        return json.dumps({"incidents": {key: asdict(f) for key, f in self.incidents.items()},
                           "pending": [asdict(p) for p in self.pending], "memo": self.memo}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> AlertState:
        """The state a cursor holds; none (a sensor's first tick) is an empty state."""
        if not text:
            return cls()
        data = json.loads(text)
        return cls(incidents={key: _finding(value) for key, value in data.get("incidents", {}).items()},
                   pending=[Pending(Notice(p["notice"]["event"], _finding(p["notice"]["finding"]), p["notice"]["at"]),
                                    p["channel"], p["attempts"], p["next_try"]) for p in data.get("pending", [])],
                   memo=data.get("memo", {}))


def _finding(value: dict[str, Any]) -> Finding:
    return replace(Finding(**value), assets=tuple(value["assets"]), symbols=tuple(value["symbols"]))
