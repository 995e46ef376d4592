"""Who a request is: the key of its ``X-API-Key`` header or of its session cookie.

The keys of ``pricepipe api-key`` are read from Cassandra whole (a handful of rows) once every
``KEYS_TTL_S`` seconds per worker, so a revoked key stops working within that time without a read
per request. A key not among those read makes the worker read them again, but not more often than
every ``MISS_REFRESH_S``, so a new key works within a second and unknown keys cost few reads. ``PRICEPIPE_API_KEY``, when set, is one more key with every scope and no rate
limit, as it always opened everything. When the keys cannot be read, a key that is not
``PRICEPIPE_API_KEY`` is refused with 503 rather than trusted from an old read.

A session (``POST /login``) is a random token in an HttpOnly cookie, stored as its hash with the
hash of its key (:mod:`pricepipe_assets.storage.api_keys`), so it works on every worker and ends
with its key. Sessions are looked up once per ``KEYS_TTL_S`` per worker as well.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import secrets
import time
from http.cookies import CookieError, SimpleCookie

from starlette.types import Scope

from api.cache import TtlCache
from api.store import AsyncStore
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage import api_keys
from pricepipe_assets.storage.api_keys import ApiKey

KEYS_TTL_S = 5.0
MISS_REFRESH_S = 1.0
HEADER = b"x-api-key"
COOKIE = "pricepipe_session"
# The name PRICEPIPE_API_KEY goes by (key names of the table are lower case, so never this).
SETTINGS_KEY = "PRICEPIPE_API_KEY"


def _cookie(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            try:
                morsel = SimpleCookie(value.decode("latin-1")).get(COOKIE)
            except CookieError:
                return None
            return morsel.value if morsel else None
    return None


class KeyRing:
    """The keys this worker accepts, and the sessions opened with them."""

    def __init__(self, settings: Settings, store: AsyncStore) -> None:
        self.store = store
        self.settings_key = (ApiKey(SETTINGS_KEY, api_keys.digest(settings.api_key), frozenset(api_keys.SCOPES), None)
                             if settings.api_key else None)
        self._keys: dict[bytes, ApiKey] = {}
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()
        self._sessions = TtlCache(KEYS_TTL_S)

    async def _by_hash(self, key_hash: bytes) -> ApiKey | None:
        if self.settings_key is not None and hmac.compare_digest(key_hash, self.settings_key.key_hash):
            return self.settings_key
        async with self._lock:
            age = time.monotonic() - self._read_at
            if age >= KEYS_TTL_S or (key_hash not in self._keys and age >= MISS_REFRESH_S):
                rows = await self.store.rows(api_keys.SELECT_KEYS, ())
                self._keys = {key.key_hash: key for key in map(api_keys.from_row, rows)}
                self._read_at = time.monotonic()
        # A dictionary lookup by the SHA-256 of a 256-bit key: its timing tells nothing about any key.
        return self._keys.get(key_hash)

    async def by_secret(self, secret: str) -> ApiKey | None:
        return await self._by_hash(api_keys.digest(secret))

    async def _by_session(self, token: str) -> ApiKey | None:
        token_hash = api_keys.digest(token)
        found = self._sessions.get(token_hash)
        if found is None:
            rows = await self.store.rows(api_keys.SELECT_SESSION, (token_hash,))
            key_hash = bytes(rows[0].key_hash) if rows else b""
            self._sessions.put(token_hash, key_hash)
        else:
            key_hash = found[0]
        return await self._by_hash(key_hash) if key_hash else None

    async def identify(self, scope: Scope) -> ApiKey | None:
        """The key of the request: its header when it has one (a script), else its session cookie (a browser)."""
        for name, value in scope["headers"]:
            if name == HEADER:
                return await self.by_secret(value.decode("latin-1"))
        token = _cookie(scope)
        return await self._by_session(token) if token else None

    async def open_session(self, key: ApiKey) -> str:
        """A new session of ``key``: the token for the cookie; only its hash is stored."""
        token = secrets.token_urlsafe(32)
        await self.store.write(api_keys.INSERT_SESSION, (api_keys.digest(token), key.key_hash, dt.datetime.now(dt.UTC)))
        return token

    async def close_session(self, scope: Scope) -> None:
        token = _cookie(scope)
        if token:
            token_hash = api_keys.digest(token)
            await self.store.write(api_keys.DELETE_SESSION, (token_hash,))
            self._sessions.put(token_hash, b"")
