"""Delivery against real receivers: a local HTTP server and a local SMTP server with STARTTLS."""

from __future__ import annotations

import time

import pytest

from pricepipe_assets.alerts.channels import MAX_AGE_S, Channel, ChannelError, deliver, retry_delay
from pricepipe_assets.alerts.configured import configured_channels
from pricepipe_assets.alerts.incidents import AlertState, Finding
from pricepipe_assets.alerts.smtp import SmtpChannel
from pricepipe_assets.alerts.webhook import WebhookChannel
from pricepipe_assets.settings import Settings
from pricepipe_assets_tests.support.alert_receivers import (
    SMTP_PASSWORD,
    SMTP_USER,
    HttpReceiver,
    SmtpReceiver,
    free_port,
)

FINDING = Finding(key="silent:binance_feed", kind="feed_silence", title="binance_feed is silent",
                  detail="binance_feed has published no new event for over 300 s.", since=1_767_225_600.0,
                  link="http://127.0.0.1:3000/assets/binance_feed", assets=("binance_feed",), symbols=("BTCUSDT",))


def _opened(channels: dict[str, Channel], now: float = 1_767_225_700.0) -> AlertState:
    state = AlertState()
    state.update([FINDING], {"feed_silence"}, now, channels)
    return state


def test_the_webhook_posts_the_generic_body(http_receiver: HttpReceiver) -> None:
    channels: dict[str, Channel] = {"webhook:json": WebhookChannel(http_receiver.url)}
    state = _opened(channels)
    assert deliver(state, channels, 1_767_225_700.0).sent == 1
    assert state.pending == []
    [body] = http_receiver.bodies
    assert (body["event"], body["key"], body["symbols"]) == ("open", "silent:binance_feed", ["BTCUSDT"])


def test_the_webhook_posts_a_slack_body(http_receiver: HttpReceiver) -> None:
    channels: dict[str, Channel] = {"webhook:slack": WebhookChannel(http_receiver.url, "slack")}
    deliver(_opened(channels), channels, 1_767_225_700.0)
    [body] = http_receiver.bodies
    assert body["text"].startswith("[pricepipe] OPEN: binance_feed is silent")
    assert [block["type"] for block in body["blocks"]] == ["section", "section"]


def test_a_channel_that_is_down_keeps_its_notices_in_order_and_is_retried_with_backoff(
        http_receiver: HttpReceiver) -> None:
    channels: dict[str, Channel] = {"webhook:json": WebhookChannel(http_receiver.url)}
    now = 1_767_225_700.0
    state = _opened(channels, now)
    state.update([], {"feed_silence"}, now, channels)
    http_receiver.status = 503
    first = deliver(state, channels, now)
    assert (first.sent, len(first.failures)) == (0, 1), "one failure skips the channel for the rest of the tick"
    assert [(p.attempts, p.next_try) for p in state.pending] == [(1, now + retry_delay(1)), (0, 0.0)]
    http_receiver.status = 200
    assert deliver(state, channels, now + 1).sent == 0, "not due yet: the resolution waits behind the opening"
    assert deliver(state, channels, now + retry_delay(1)).sent == 2
    assert [body["event"] for body in http_receiver.bodies] == ["open", "resolve"]


def test_the_delays_double_up_to_ten_minutes() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 7, 20)] == [15.0, 30.0, 60.0, 600.0, 600.0]


def test_an_unreachable_webhook_fails_fast_and_leaves_the_notice_pending() -> None:
    channels: dict[str, Channel] = {"webhook:json": WebhookChannel(f"http://127.0.0.1:{free_port()}/hook",
                                                                   timeout_s=1.0)}
    state = _opened(channels)
    started = time.monotonic()
    delivery = deliver(state, channels, 1_767_225_700.0)
    assert time.monotonic() - started < 2
    assert "unreachable" in delivery.failures[0] and len(state.pending) == 1


def test_notices_of_a_removed_channel_or_older_than_a_day_are_dropped(http_receiver: HttpReceiver) -> None:
    state = _opened({"email": WebhookChannel(http_receiver.url)})
    assert deliver(state, {}, 1_767_225_700.0).dropped == 1
    channels: dict[str, Channel] = {"webhook:json": WebhookChannel(http_receiver.url)}
    state = _opened(channels)
    assert deliver(state, channels, 1_767_225_700.0 + MAX_AGE_S + 1).dropped == 1
    assert http_receiver.bodies == []


def test_a_tick_stops_sending_when_its_time_budget_is_spent() -> None:
    class Slow:
        name = "slow"
        calls = 0

        def send(self, notice: object) -> None:
            Slow.calls += 1

    channels: dict[str, Channel] = {"slow": Slow()}
    state = AlertState()
    state.update([FINDING, Finding(**{**FINDING.__dict__, "key": "silent:bitmex_feed"})], {"feed_silence"}, 0.0,
                 channels)
    ticks = iter([0.0, 0.0, 100.0, 100.0])
    delivery = deliver(state, channels, 0.0, budget_s=10.0, clock=lambda: next(ticks))
    assert (delivery.sent, Slow.calls, len(state.pending)) == (1, 1, 1)


def test_email_goes_over_starttls_with_the_password(smtp_receiver: SmtpReceiver) -> None:
    mail = SmtpChannel(smtp_receiver.host, smtp_receiver.port, "pricepipe@example.org", ["ops@example.org"],
                       user=SMTP_USER, password=SMTP_PASSWORD, ssl_context=smtp_receiver.client_context())
    channels: dict[str, Channel] = {"email": mail}
    assert deliver(_opened(channels), channels, 1_767_225_700.0).failures == []
    [received] = smtp_receiver.mails
    assert received["Subject"] == "[pricepipe] OPEN: binance_feed is silent"
    assert received["To"] == "ops@example.org" and received["X-Pricepipe-Incident"] == "silent:binance_feed"
    body = received.get_payload()
    assert "Since:    2026-01-01 00:00:00 UTC" in body and "http://127.0.0.1:3000/assets/binance_feed" in body
    assert smtp_receiver.logins == [SMTP_USER]


def test_a_wrong_smtp_password_is_a_channel_failure_that_does_not_print_the_password(
        smtp_receiver: SmtpReceiver) -> None:
    mail = SmtpChannel(smtp_receiver.host, smtp_receiver.port, "pricepipe@example.org", ["ops@example.org"],
                       user=SMTP_USER, password="wrong-pass-42", ssl_context=smtp_receiver.client_context())
    with pytest.raises(ChannelError) as raised:
        mail.send(_opened({"email": mail}).pending[0].notice)
    assert "wrong-pass-42" not in str(raised.value) and "wrong-pass-42" not in repr(mail)
    assert smtp_receiver.mails == []


def test_an_smtp_password_without_starttls_is_refused() -> None:
    with pytest.raises(ValueError, match="STARTTLS"):
        SmtpChannel("127.0.0.1", 25, "a@b", ["c@d"], user="u", password="p", starttls=False)


def test_the_settings_choose_the_channels(smtp_receiver: SmtpReceiver) -> None:
    assert configured_channels(Settings.from_env({})) == {}
    settings = Settings.from_env({"PRICEPIPE_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook",
                                  "PRICEPIPE_ALERT_WEBHOOK_FORMAT": "slack",
                                  "PRICEPIPE_ALERT_SMTP_HOST": smtp_receiver.host,
                                  "PRICEPIPE_ALERT_SMTP_PORT": str(smtp_receiver.port),
                                  "PRICEPIPE_ALERT_SMTP_CA_FILE": str(smtp_receiver.ca_file),
                                  "PRICEPIPE_ALERT_SMTP_USER": SMTP_USER, "PRICEPIPE_ALERT_SMTP_PASSWORD": SMTP_PASSWORD,
                                  "PRICEPIPE_ALERT_EMAIL_TO": "ops@example.org,oncall@example.org"})
    channels = configured_channels(settings)
    assert sorted(channels) == ["email", "webhook:slack"]
    state = AlertState()
    state.update([FINDING], {"feed_silence"}, 1_767_225_700.0, ["email"])
    assert deliver(state, channels, 1_767_225_700.0).failures == []
    assert smtp_receiver.mails[0]["To"] == "ops@example.org, oncall@example.org"
