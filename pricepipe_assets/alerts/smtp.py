"""An email channel over SMTP: STARTTLS before the password is sent, a short timeout so a tick
never hangs on a mail server. (Named ``smtp`` so it never shadows the standard ``email`` package.)"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

from pricepipe_assets.alerts.channels import ChannelError
from pricepipe_assets.alerts.incidents import Notice
from pricepipe_assets.alerts.messages import subject, text


class SmtpChannel:
    """Sends each notice as a plain-text email from ``sender`` to ``recipients``."""

    name = "email"

    def __init__(self, host: str, port: int, sender: str, recipients: Sequence[str], *, user: str = "",
                 password: str = "", starttls: bool = True, ssl_context: ssl.SSLContext | None = None,
                 timeout_s: float = 5.0) -> None:
        if password and not starttls:
            raise ValueError("an SMTP password needs STARTTLS: it would cross the network unencrypted")
        self.host, self.port, self.sender, self.recipients = host, port, sender, tuple(recipients)
        self.user, self._password, self.starttls = user, password, starttls
        self.ssl_context = ssl_context
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"SmtpChannel({self.host}:{self.port}, user={self.user!r}, password={'***' if self._password else ''})"

    def message(self, notice: Notice) -> EmailMessage:
        mail = EmailMessage()
        mail["Subject"] = subject(notice)
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["X-Pricepipe-Incident"] = notice.finding.key
        mail.set_content(text(notice))
        return mail

    def send(self, notice: Notice) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as client:
                client.ehlo()
                if self.starttls:
                    client.starttls(context=self.ssl_context or ssl.create_default_context())
                    client.ehlo()
                if self.user:
                    client.login(self.user, self._password)
                client.send_message(self.message(notice))
        except (OSError, smtplib.SMTPException) as error:
            raise ChannelError(f"email via {self.host}:{self.port} failed: {error}") from None
