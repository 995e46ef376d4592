"""An HTTP webhook channel: one POST of JSON per notice, the generic body or Slack's."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Literal

from pricepipe_assets.alerts.channels import ChannelError
from pricepipe_assets.alerts.incidents import Notice
from pricepipe_assets.alerts.messages import generic_json, slack_json

Format = Literal["json", "slack"]


class WebhookChannel:
    """POSTs each notice to ``url``; a short timeout, because a sensor tick waits for it."""

    def __init__(self, url: str, body_format: Format = "json", timeout_s: float = 5.0) -> None:
        self.url = url
        self.body_format = body_format
        self.timeout_s = timeout_s
        self.name = f"webhook:{body_format}"

    def send(self, notice: Notice) -> None:
        body = slack_json(notice) if self.body_format == "slack" else generic_json(notice)
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "pricepipe-alerts"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise ChannelError(f"{self.name} answered HTTP {error.code}") from None
        except (OSError, ValueError) as error:
            raise ChannelError(f"{self.name} unreachable: {error}") from None
