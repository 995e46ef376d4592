from __future__ import annotations

from pricepipe_assets.alerts.incidents import MAX_PENDING, AlertState, Finding


def _finding(key: str = "job:candles_1m_job", kind: str = "job_failures", since: float = 100.0) -> Finding:
    return Finding(key=key, kind=kind, title=f"{key} broke", detail="it broke", since=since,
                   link="http://ui/runs/1", assets=("candles_lake",), symbols=("BTCUSDT",))


def test_an_incident_opens_once_stays_quiet_while_seen_and_resolves_once() -> None:
    state = AlertState()
    events = []
    for tick, seen in enumerate([True, True, True, False, False]):
        notices = state.update([_finding()] if seen else [], {"job_failures"}, 1000.0 + tick, ["webhook:json"])
        events.extend((tick, n.event) for n in notices)
    assert events == [(0, "open"), (3, "resolve")]


def test_an_incident_keeps_the_time_it_was_first_seen() -> None:
    state = AlertState()
    state.update([_finding(since=100.0)], {"job_failures"}, 1000.0, [])
    state.update([_finding(since=500.0)], {"job_failures"}, 1030.0, [])
    [resolved] = state.update([], {"job_failures"}, 1060.0, [])
    assert resolved.finding.since == 100.0


def test_a_rule_that_could_not_run_resolves_nothing() -> None:
    state = AlertState()
    state.update([_finding()], {"job_failures"}, 1000.0, [])
    assert state.update([], set(), 1030.0, []) == []
    assert list(state.incidents) == ["job:candles_1m_job"]


def test_the_state_survives_json_mid_incident_and_still_resolves_exactly_once() -> None:
    state = AlertState()
    state.update([_finding()], {"job_failures"}, 1000.0, ["email"])
    state.memo["deadletter"] = [1000.0, 7]
    restored = AlertState.from_json(state.to_json())
    assert restored == state
    assert restored.update([_finding()], {"job_failures"}, 1030.0, ["email"]) == []
    assert [n.event for n in restored.update([], {"job_failures"}, 1060.0, ["email"])] == ["resolve"]


def test_every_notice_is_queued_once_per_channel_and_the_queue_is_bounded() -> None:
    state = AlertState()
    state.update([_finding(f"job:{n}") for n in range(3)], {"job_failures"}, 1000.0, ["email", "webhook:slack"])
    assert [(p.notice.finding.key, p.channel) for p in state.pending[:2]] == [("job:0", "email"), ("job:0", "webhook:slack")]
    state.update([_finding(f"job:{n}") for n in range(300)], {"job_failures"}, 1030.0, ["email"])
    assert len(state.pending) == MAX_PENDING
    assert {p.notice.at for p in state.pending} == {1030.0}, "the oldest notices are the ones dropped"


def test_an_empty_cursor_is_an_empty_state() -> None:
    assert AlertState.from_json(None) == AlertState() == AlertState.from_json("")
