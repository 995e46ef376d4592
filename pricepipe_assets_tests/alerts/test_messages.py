from __future__ import annotations

from pricepipe_assets.alerts.incidents import Finding, Notice
from pricepipe_assets.alerts.messages import generic_json, slack_json, subject, text

FINDING = Finding(key="check:minute_model:not_worse_than_baseline", kind="naive_fallback",
                  title="not_worse_than_baseline failed on minute_model", detail="minute_model forecasts worse than "
                  "the naive one; served by the naive baseline (ETHUSDT).", since=1_767_225_600.0,
                  link="http://127.0.0.1:3000/runs/abc", assets=("minute_model",), symbols=("ETHUSDT",))


def test_every_message_says_what_since_when_what_it_affects_and_where_to_look() -> None:
    body = text(Notice("open", FINDING, 1_767_225_660.0))
    for part in ("OPEN", "served by the naive baseline", "2026-01-01 00:00:00 UTC", "assets minute_model",
                 "symbols ETHUSDT", "http://127.0.0.1:3000/runs/abc"):
        assert part in body


def test_a_resolution_says_when_it_resolved() -> None:
    notice = Notice("resolve", FINDING, 1_767_229_200.0)
    assert subject(notice).startswith("[pricepipe] RESOLVED: ")
    assert "Resolved: 2026-01-01 01:00:00 UTC" in text(notice)


def test_the_generic_body_has_fields_to_route_on() -> None:
    body = generic_json(Notice("open", FINDING, 1_767_225_660.0))
    assert body["event"] == "open" and body["kind"] == "naive_fallback"
    assert body["since"] == "2026-01-01T00:00:00Z" and body["symbols"] == ["ETHUSDT"]


def test_the_slack_body_has_a_text_fallback_and_blocks_with_the_link() -> None:
    body = slack_json(Notice("open", FINDING, 1_767_225_660.0))
    assert body["text"].startswith("[pricepipe] OPEN: not_worse_than_baseline failed on minute_model")
    assert "<http://127.0.0.1:3000/runs/abc|Open in Dagster>" in body["blocks"][1]["text"]["text"]
