"""What every venue's WebSocket client does with a frame: turn it into records, or into a dead letter.

A venue, or whatever stands between it and us, can send anything: invalid UTF-8, binary frames,
JSON nested past Python's recursion limit, numbers of thousands of digits, megabytes, a wrong type
in any field, or a well-formed record with absurd values. Like Kafka Streams'
``LogAndContinueExceptionHandler``, *any* failure to turn a frame into records makes the frame a
dead letter, with the reason, and the next frame is read: a list of the exceptions parsing is
expected to raise is always one short (a ``RecursionError`` from ``json``, a ``TypeError`` from
hashing a list where a name was due), and the one missing ends the feed, and ``pricepipe run``
with it. Only turning frames into records is guarded so: publishing, REST calls and the connection
keep their own failures, which say that Kafka or the network is in trouble, not the input.

Decisions about the transport, shared by the clients:

* Frames are read as bytes (``recv(decode=False)``), so a text frame with invalid UTF-8 is refused
  by the JSON parser like any malformed frame and kept as a dead letter. Decoding it in websockets
  would fail the connection (1007, as RFC 6455 asks) and lose the frame without a trace: the frame
  is refused either way, and this way costs no reconnect.
* A connection refuses frames above :data:`TRANSPORT_LIMIT_BYTES` (websockets' ``max_size``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pricepipe_assets.contract.record_values import RecordError, loads_json

T = TypeVar("T")

# websockets' own default (1 MiB) would make a frame just above it close the connection (1009): a
# reconnect costs a REST gap fill, or every order book's resync, and the frame is gone without a
# trace. Real frames are far smaller (a Binance kline is about 500 bytes), so a frame of up to
# 8 MiB is read and dead-lettered with its reason, as BitMEX's client does by default. Beyond, 1009
# is the right answer to a peer that sends without end: the close raises ``ConnectionClosedError``,
# which every client retries like a dropped connection, so the stream reconnects after its backoff
# and fills what it missed as after any drop.
TRANSPORT_LIMIT_BYTES = 8 * 1024 * 1024


def frame_json(frame: bytes | str) -> Any:
    """The JSON value of a frame, or :class:`RecordError` saying why it has none."""
    try:
        return loads_json(frame)
    except ValueError as error:  # json's errors, invalid UTF-8, too deep, a number too long for int
        raise RecordError(f"not valid JSON: {error}") from None


def refusal(error: Exception) -> str:
    """The dead-letter reason of any failure: a :class:`RecordError` already says it in words."""
    if isinstance(error, RecordError):
        return str(error)
    return f"could not be read: {type(error).__name__}: {str(error)[:200]}"


def json_bytes(value: Any, otherwise: bytes) -> bytes:
    """``value`` (input already decoded) as compact JSON for its dead letter, or ``otherwise`` when it
    cannot be encoded again (nested almost as deeply as Python allows): a refusal must not fail."""
    try:
        return json.dumps(value, separators=(",", ":")).encode()
    except Exception:  # any failure at all: see the module docstring
        return otherwise


def parse_or_refuse(parse: Callable[[], T], refuse: Callable[[str], object]) -> T | None:
    """What ``parse`` returns, or None once ``refuse`` was given the reason it failed, whatever the failure."""
    try:
        return parse()
    except Exception as error:  # any failure at all: see the module docstring
        refuse(refusal(error))
        return None
