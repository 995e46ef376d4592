"""Answers as bytes: encoded once, then sent as they are.

An answer that is served many times (a cache hit, a closed day) should cost a dictionary lookup
and two ASGI messages, not a new ``Response`` object, a header object and another encoding; so
every endpoint answer is an :class:`Encoded` body with its raw header pairs, and cache hits are
sent straight from it.

orjson writes what ``json.dumps(answer, separators=(",", ":"))`` wrote for the same answer, with
two differences of spelling only: an exponent has no zero padding and numbers below 1e-4 may be
written without one (``1e-7``, ``0.00001``, where ``json`` wrote ``1e-07``, ``1e-05``), and text
outside ASCII is UTF-8 rather than ``\\u`` escapes. Floats are the shortest text that reads back
as the same double either way, so every client parses the same numbers; NaN and infinity never
reach the encoder (``api.params.finite`` answers them as null).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Send

JSON = (b"content-type", b"application/json")
NO_STORE = (b"cache-control", b"no-store")


def encode(answer: Any) -> bytes:
    return orjson.dumps(answer)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A body and every header that goes with it, ready to send."""

    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def json(cls, body: bytes, *headers: tuple[bytes, bytes]) -> Encoded:
        return cls(body, (JSON, (b"content-length", str(len(body)).encode()), *headers))


def strong_etag(body: bytes) -> bytes:
    """An ETag from the body itself, so every worker and every restart gives the same answer the same tag."""
    return b'"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'


def if_none_match(headers: list[tuple[bytes, bytes]], etag: bytes) -> bool:
    """Whether the request's ``If-None-Match`` names ``etag`` (or ``*``): then 304 is the whole answer.

    RFC 9110 compares weakly here, so a client's ``W/"..."`` of the same tag matches too.
    """
    for name, value in headers:
        if name == b"if-none-match":
            return any(tag.strip().removeprefix(b"W/") in (etag, b"*") for tag in value.split(b","))
    return False


async def respond(send: Send, status: int, headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]],
                  body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
