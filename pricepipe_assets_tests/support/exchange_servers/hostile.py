"""Frames no venue should send but any peer can, for the local exchange servers to slip in between real
ones, and the check that each went to ``deadletter`` exactly once.

A frame is a ``str`` (a Text frame), ``bytes`` (a Binary frame) or :class:`TextBytes` (bytes sent as
a Text frame as they are, so it can hold invalid UTF-8, which a real server's encoder never writes
but the wire carries). Dead letters are matched to frames by SHA-256, which identifies a frame whose
letter keeps only its start.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.connection import Connection

# Deeper than Python's recursion limit (1,000), which json's parser counts against.
NESTED_ARRAY = "[" * 2000 + "]" * 2000
# Longer than the 4,300 digits Python turns into an int.
LONG_NUMBER = "9" * 5000
# A size that websockets' default max_size (1 MiB) would not read.
MEGABYTES = 1_200_000


@dataclass(frozen=True)
class TextBytes:
    """Bytes to send as a Text frame unchecked (see the module docstring)."""

    data: bytes


WireFrame = str | bytes | TextBytes


def random_binary(size: int = 512, seed: int = 26) -> bytes:
    """Random bytes (the same on every run), sent as a Binary frame."""
    return random.Random(seed).randbytes(size)


def invalid_utf8(frame: str, inside: str) -> TextBytes:
    """``frame`` as a Text frame with a byte UTF-8 never uses (0xFF) inside the first ``inside``."""
    assert inside.isascii() and inside in frame, f"{inside!r} is not in the frame"
    return TextBytes(frame.encode().replace(inside.encode(), inside[0].encode() + b"\xff" + inside[1:].encode(), 1))


def grown(frame: str, marker: str, size: int) -> str:
    """``frame`` grown to exactly ``size`` bytes by repeating the first character of ``marker``, a
    value the test put in one field."""
    extra = size - len(frame.encode())
    assert extra >= 0 and frame.count(marker) == 1
    return frame.replace(marker, marker[0] * extra + marker)


def wire_bytes(frame: WireFrame) -> bytes:
    return frame.data if isinstance(frame, TextBytes) else frame.encode() if isinstance(frame, str) else frame


async def send_frame(connection: Connection, frame: WireFrame) -> None:
    if isinstance(frame, TextBytes):
        await connection.send(frame.data, text=True)
    else:
        await connection.send(frame)


def assert_dead_lettered_once_each(letters: list[dict[str, Any]], reasons: Mapping[WireFrame, str],
                                   source: str) -> None:
    """``letters`` (values of ``deadletter``) are exactly one per frame of ``reasons``, from ``source``,
    each whole (size and SHA-256 of the frame) and with a reason containing the one given."""
    expected = {hashlib.sha256(wire_bytes(frame)).hexdigest(): (frame, reason) for frame, reason in reasons.items()}
    assert len(expected) == len(reasons), "two hostile frames are the same"
    assert sorted(letter["sha256"] for letter in letters) == sorted(expected), "a frame not dead-lettered once"
    for letter in letters:
        frame, reason = expected[letter["sha256"]]
        raw = wire_bytes(frame)
        assert letter["source_topic"] == source
        assert letter["size"] == len(raw) and raw.startswith(base64.b64decode(letter["raw"]))
        assert reason in letter["error"], f"{letter['error']!r} does not say {reason!r}"
