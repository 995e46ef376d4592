"""The channels the settings ask for: a webhook, email, both, or none (alerts then only reach the
Dagster UI and its logs)."""

from __future__ import annotations

import ssl

from pricepipe_assets.alerts.channels import Channel
from pricepipe_assets.alerts.smtp import SmtpChannel
from pricepipe_assets.alerts.webhook import WebhookChannel
from pricepipe_assets.settings import Settings, path_text


def configured_channels(settings: Settings) -> dict[str, Channel]:
    """Each configured channel by name, the name a queued notice records."""
    channels: dict[str, Channel] = {}
    if settings.alert_webhook_url:
        webhook = WebhookChannel(settings.alert_webhook_url, "slack" if settings.alert_webhook_format == "slack"
                                 else "json")
        channels[webhook.name] = webhook
    if settings.alert_smtp_host and settings.alert_email_to:
        context = ssl.create_default_context(cafile=path_text(settings.alert_smtp_ca_file) or None)
        mail = SmtpChannel(settings.alert_smtp_host, settings.alert_smtp_port, settings.alert_email_from,
                           settings.alert_email_to, user=settings.alert_smtp_user,
                           password=settings.alert_smtp_password, starttls=settings.alert_smtp_starttls,
                           ssl_context=context)
        channels[mail.name] = mail
    return channels


def ui_url(settings: Settings) -> str:
    """The Dagster UI's address for links: PRICEPIPE_DAGSTER_UI_URL, else where `pricepipe run` serves it."""
    return settings.dagster_ui_url or f"http://{settings.dagster_bind_host}:{settings.dagster_port}"
