"""API keys and the browser sessions opened with them: the rows of ``api_keys`` and ``api_sessions``.

A key is shown once, when it is made, and only its SHA-256 is stored: the table (and any backup
of it) lets nobody in. A key is random and long enough (256 bits) that a plain hash is as strong
as a slow one would be; the API finds a key by its hash, so how long a lookup takes says nothing
about any key. A browser session (``POST /login``) is stored the same way, by the hash of its
token, and names the hash of its key, so revoking the key (or replacing it under the same name)
ends its sessions too.

Every CQL statement on these tables is here; the API runs them through its own async session, the
``pricepipe api-key`` command through :class:`~pricepipe_assets.storage.cassandra.CassandraCluster`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pricepipe_assets.storage.cassandra import CassandraCluster

READ, FORECASTS, STREAM = "read", "forecasts", "stream"
SCOPES = (READ, FORECASTS, STREAM)
# What a key may be called: it appears in logs and on the command line, and never clashes with the
# name the API gives PRICEPIPE_API_KEY (upper case).
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
PERIODS = {"s": 1, "m": 60}
KEY_PREFIX = "pp_"
# A browser session lasts a working day; its row expires with its cookie.
SESSION_TTL_S = 12 * 3600

INSERT_KEY = ("INSERT INTO api_keys (name, key_hash, scopes, rate_limit, rate_period_s, created_at) "
              "VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS")
SELECT_KEYS = "SELECT name, key_hash, scopes, rate_limit, rate_period_s, created_at FROM api_keys"
DELETE_KEY = "DELETE FROM api_keys WHERE name = ? IF EXISTS"
INSERT_SESSION = f"INSERT INTO api_sessions (token_hash, key_hash, created_at) VALUES (?, ?, ?) USING TTL {SESSION_TTL_S}"
SELECT_SESSION = "SELECT key_hash FROM api_sessions WHERE token_hash = ?"
DELETE_SESSION = "DELETE FROM api_sessions WHERE token_hash = ?"


@dataclass(frozen=True)
class Rate:
    """At most ``limit`` requests per ``period_s`` seconds, with bursts of up to ``limit``."""

    limit: int
    period_s: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``10/s`` or ``600/m``: the form people write on the command line."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*([sm])\s*", text)
        if match is None or int(match[1]) < 1:
            raise ValueError(f"a rate is requests per second or minute, e.g. 10/s or 600/m; got {text!r}")
        return cls(int(match[1]), PERIODS[match[2]])

    def __str__(self) -> str:
        return f"{self.limit}/{'s' if self.period_s == 1 else 'm'}"


DEFAULT_RATE = Rate(10, 1)


@dataclass(frozen=True)
class ApiKey:
    name: str
    key_hash: bytes
    scopes: frozenset[str]
    rate: Rate | None  # None: no limit (PRICEPIPE_API_KEY)
    created_at: dt.datetime | None = None


def digest(secret: str) -> bytes:
    """The SHA-256 of a key or session token: what is stored and looked up instead of it."""
    return hashlib.sha256(secret.encode()).digest()


def new_secret() -> str:
    """256 random bits, URL-safe, with a prefix that lets secret scanners recognise a leaked key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(scope.strip() for scope in scopes if scope.strip())
    unknown = sorted(wanted - set(SCOPES))
    if unknown or not wanted:
        raise ValueError(f"scopes are some of {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}")
    return wanted


def from_row(row: Any) -> ApiKey:
    """A key of ``SELECT_KEYS``, from either driver session (named rows)."""
    rate = Rate(row.rate_limit, row.rate_period_s) if row.rate_limit else None
    created = row.created_at.replace(tzinfo=dt.UTC) if row.created_at else None
    return ApiKey(row.name, bytes(row.key_hash), frozenset(row.scopes or ()), rate, created)


def create(cassandra: CassandraCluster, name: str, scopes: Iterable[str], rate: Rate = DEFAULT_RATE) -> str:
    """Store a new key under ``name`` and return it: the only time it is ever seen."""
    if not NAME.fullmatch(name):
        raise ValueError(f"a key name is 1-64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit; got {name!r}")
    wanted = check_scopes(scopes)
    secret = new_secret()
    row = cassandra.session().execute(cassandra.prepare(INSERT_KEY), (
        name, digest(secret), set(wanted), rate.limit, rate.period_s, dt.datetime.now(dt.UTC))).one()
    if not row[0]:
        raise ValueError(f"an API key named {name!r} exists already; revoke it first")
    return secret


def list_keys(cassandra: CassandraCluster) -> list[ApiKey]:
    return sorted((from_row(row) for row in cassandra.session().execute(cassandra.prepare(SELECT_KEYS))),
                  key=lambda key: key.name)


def revoke(cassandra: CassandraCluster, name: str) -> bool:
    """Delete the key; whether it existed. The API stops taking it (and its sessions) within seconds."""
    return bool(cassandra.session().execute(cassandra.prepare(DELETE_KEY), (name,)).one()[0])
