"""The alert channels' real receivers, for the tests of the channels and of the sensors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pricepipe_assets_tests.support.alert_receivers import HttpReceiver, SmtpReceiver, serve_http, serve_smtp


@pytest.fixture()
def http_receiver() -> Iterator[HttpReceiver]:
    yield from serve_http()


@pytest.fixture()
def smtp_receiver(tmp_path: Path) -> Iterator[SmtpReceiver]:
    yield from serve_smtp(tmp_path)
