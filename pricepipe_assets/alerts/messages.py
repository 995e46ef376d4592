"""What an alert says, in each channel's form: what happened, since when, what it affects and where
to look in the Dagster UI. One wording for every channel, so a person who reads the email and
another who reads the chat room talk about the same thing."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pricepipe_assets.alerts.incidents import Notice


def _utc(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def subject(notice: Notice) -> str:
    """One line: ``[pricepipe] OPEN: ...`` or ``[pricepipe] RESOLVED: ...``."""
    state = "OPEN" if notice.event == "open" else "RESOLVED"
    return f"[pricepipe] {state}: {notice.finding.title}"


def affects(notice: Notice) -> str:
    finding = notice.finding
    parts = []
    if finding.assets:
        parts.append("assets " + ", ".join(finding.assets))
    if finding.symbols:
        parts.append("symbols " + ", ".join(finding.symbols))
    return "; ".join(parts) or "nothing named"


def text(notice: Notice) -> str:
    """The plain-text body, for email and logs."""
    finding = notice.finding
    lines = [subject(notice), "", finding.detail, "",
             f"Since:    {_utc(finding.since)}",
             f"Affects:  {affects(notice)}",
             f"Link:     {finding.link}"]
    if notice.event == "resolve":
        lines.insert(5, f"Resolved: {_utc(notice.at)}")
    return "\n".join(lines) + "\n"


def generic_json(notice: Notice) -> dict[str, Any]:
    """A flat JSON body any receiver can route on (``event``, ``key``, ``kind``)."""
    finding = notice.finding
    return {"source": "pricepipe", "event": notice.event, "key": finding.key, "kind": finding.kind,
            "title": finding.title, "detail": finding.detail, "since": _iso(finding.since), "at": _iso(notice.at),
            "assets": list(finding.assets), "symbols": list(finding.symbols), "link": finding.link}


def slack_json(notice: Notice) -> dict[str, Any]:
    """Slack's incoming-webhook body: ``text`` for notifications and clients without blocks, and
    the same in Block Kit sections."""
    finding = notice.finding
    icon = ":rotating_light:" if notice.event == "open" else ":white_check_mark:"
    headline = f"{icon} *{subject(notice)}*"
    facts = f"*Since:* {_utc(finding.since)}\n*Affects:* {affects(notice)}\n<{finding.link}|Open in Dagster>"
    return {"text": f"{subject(notice)}: {finding.detail}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"{headline}\n{finding.detail}"}},
                       {"type": "section", "text": {"type": "mrkdwn", "text": facts}}]}


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
