"""Binance REST klines: history for backfills and for the gaps a live stream leaves when it drops.

Binance answers at most 1,000 klines a call, so a range is read page by page, each page starting
just after the last open time received. The client yields only candles in the requested range in
strictly increasing open time, whatever the server sends, so a caller that publishes everything
it yields can never publish a candle twice. Rate limits (HTTP 429, and 418 once Binance bans an IP
for ignoring them) are waited out as long as ``Retry-After`` asks, a bounded number of times.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from pricepipe_assets.contract.record_values import RecordError, to_millis
from pricepipe_assets.contract.records import INTERVAL_MS, Candle
from pricepipe_assets.sources.binance.formats import candle_from_binance_row

if TYPE_CHECKING:
    from pricepipe_assets.kafka.publisher import Publisher

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.binance.com"
KLINES_PATH = "/api/v3/klines"
DEPTH_PATH = "/api/v3/depth"
# Levels per side of a depth snapshot: deep enough that the top of the book survives a burst of
# removals before the stream refills it (weight 50 at Binance; 5,000 would cost 250).
DEPTH_LIMIT = 1000
PAGE_LIMIT = 1000
# Dead letters of rows that never were on Kafka name the endpoint they came from instead of a topic.
SOURCE = "binance.rest.klines"
RATE_LIMIT_STATUSES = frozenset({429, 418})
# Binance's request weights reset every minute: the safe wait when it omits Retry-After.
FALLBACK_RETRY_AFTER_S = 60.0


class BinanceRestError(RuntimeError):
    """Binance refused or garbled a klines request; the message names the symbol and the URL."""


class BinanceRateLimitError(BinanceRestError):
    """Binance kept rate-limiting after the allowed retries, or asked for a longer wait than allowed."""


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill put on Kafka, for logs and materialization metadata."""

    symbol: str
    interval: str
    candles: int
    dead_letters: int
    last_open_time: int | None


def interval_ms(interval: str) -> int:
    """The length of a contract interval; other Binance intervals have no topic to go to."""
    try:
        return INTERVAL_MS[interval]
    except KeyError:
        raise ValueError(f"interval must be one of {', '.join(INTERVAL_MS)}, got {interval!r}") from None


def next_open_time(open_time: int, interval: str) -> int:
    """The first interval boundary after ``open_time``: where a resume after a stored candle starts."""
    step = interval_ms(interval)
    return (open_time // step + 1) * step


def _open_time(row: Any) -> int | None:
    """A row's open time, or None when the row is too broken to tell (its parser will say why)."""
    try:
        return to_millis(row[0], "open_time")
    except (RecordError, LookupError, TypeError):
        return None


def _parse_row(row: Any, symbol: str, interval: str) -> Candle:
    if not isinstance(row, list):
        raise RecordError(f"a kline row must be a JSON array, got {type(row).__name__}")
    return candle_from_binance_row(row, symbol, interval)


def _error_detail(response: requests.Response) -> str:
    """Binance's ``{"code", "msg"}`` error body as text, or the start of whatever else came back."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "msg" in body:
        return f"{body['msg']} (code {body.get('code')})"
    return response.text[:200]


def _retry_after_s(response: requests.Response) -> float:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return FALLBACK_RETRY_AFTER_S


class BinanceRestClient:
    """Pages through Binance's klines endpoint.

    ``sleep`` is how a rate limit is waited out (tests pass a recorder instead of waiting);
    ``max_retries`` bounds how often in a row, and a ``Retry-After`` above ``max_retry_after_s``
    (a ban can last days) is an error at once rather than a silent stall.
    """

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, session: requests.Session | None = None,
                 timeout_s: float = 10.0, max_retries: int = 5, max_retry_after_s: float = 300.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session or requests.Session()
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._max_retry_after_s = max_retry_after_s
        self._sleep = sleep

    @property
    def url(self) -> str:
        return self.base_url + KLINES_PATH

    def candles(self, symbol: str, interval: str, start_ms: int, end_ms: int, *, after_open_time: int | None = None,
                publisher: Publisher | None = None) -> Iterator[Candle]:
        """Candles with ``start_ms <= open_time <= end_ms`` in order, each exactly once.

        ``after_open_time`` is the last candle the caller already has: reading resumes at the next
        interval boundary. With a ``publisher``, every candle is published before it is yielded
        and a malformed row is dead-lettered with its reason, so one bad row costs one candle, not
        the range; without one, a malformed row is an error.
        """
        if after_open_time is not None:
            start_ms = max(start_ms, next_open_time(after_open_time, interval))
        previous = start_ms - 1
        for url, rows in self._pages(symbol, interval, start_ms, end_ms):
            for row in rows:
                open_time = _open_time(row)
                if open_time is not None and not previous < open_time <= end_ms:
                    log.warning("%s %s: skipped kline %s outside the range still expected (%s)", symbol, interval,
                                open_time, url)
                    continue
                candle = self._accept(row, symbol, interval, url, publisher)
                if candle is not None:
                    previous = candle.open_time
                    yield candle

    def _accept(self, row: Any, symbol: str, interval: str, url: str, publisher: Publisher | None) -> Candle | None:
        if publisher is not None:
            raw = json.dumps(row, separators=(",", ":"))
            return publisher.offer(SOURCE, raw, lambda: _parse_row(row, symbol, interval))
        try:
            return _parse_row(row, symbol, interval)
        except RecordError as error:
            raise BinanceRestError(f"malformed {interval} kline for {symbol} from {url}: {error}") from None

    def _pages(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> Iterator[tuple[str, list[Any]]]:
        """``(url, rows)`` per call until the range is read, a page comes back empty or short."""
        interval_ms(interval)  # an interval without a topic is refused before Binance is asked
        cursor = start_ms
        while cursor <= end_ms:
            url, rows = self._get(symbol, {"symbol": symbol, "interval": interval, "startTime": cursor,
                                           "endTime": end_ms, "limit": PAGE_LIMIT})
            if not rows:
                return
            yield url, rows
            if len(rows) < PAGE_LIMIT:
                return
            cursor = self._after_page(rows, cursor, symbol, url)

    @staticmethod
    def _after_page(rows: Sequence[Any], cursor: int, symbol: str, url: str) -> int:
        """Where the next page starts; a page that does not move forward would loop for ever."""
        last = max((t for t in map(_open_time, rows) if t is not None), default=None)
        if last is None or last < cursor:
            raise BinanceRestError(f"klines page for {symbol} does not advance past open time {cursor}: {url}")
        return last + 1

    def _get(self, symbol: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
        """One page of rows, after waiting out as many rate limits as allowed."""
        retries = 0
        while True:
            response = self._send(symbol, params)
            if response.status_code not in RATE_LIMIT_STATUSES:
                return response.url, self._rows(response, symbol)
            self._wait_out(response, symbol, retries)
            retries += 1

    def depth(self, symbol: str, limit: int = DEPTH_LIMIT) -> Any:
        """The decoded answer of ``GET /api/v3/depth`` (an order book snapshot), rate limits waited out."""
        retries = 0
        while True:
            response = self._send(symbol, {"symbol": symbol, "limit": limit}, DEPTH_PATH)
            if response.status_code not in RATE_LIMIT_STATUSES:
                break
            self._wait_out(response, symbol, retries)
            retries += 1
        if response.status_code >= 400:
            raise BinanceRestError(f"Binance refused a depth snapshot of {symbol}: HTTP {response.status_code} "
                                   f"{_error_detail(response)}: {response.url}")
        try:
            return response.json()
        except ValueError:
            raise BinanceRestError(f"depth snapshot of {symbol} is not JSON: {response.text[:200]!r}") from None

    def _send(self, symbol: str, params: dict[str, Any], path: str = KLINES_PATH) -> requests.Response:
        url = self.base_url + path
        try:
            return self._session.get(url, params=params, timeout=self._timeout_s)
        except requests.RequestException as error:
            raise BinanceRestError(f"request for {symbol} to {url} failed: {error}") from None

    def _wait_out(self, response: requests.Response, symbol: str, retries: int) -> None:
        status, url = response.status_code, response.url
        if retries >= self._max_retries:
            raise BinanceRateLimitError(f"Binance still rate-limits klines for {symbol} after {retries} retries "
                                        f"(HTTP {status}: {_error_detail(response)}): {url}")
        delay = _retry_after_s(response)
        if delay > self._max_retry_after_s:
            raise BinanceRateLimitError(f"Binance asks to wait {delay:.0f} s before more klines for {symbol} "
                                        f"(HTTP {status}), longer than the {self._max_retry_after_s:.0f} s allowed: "
                                        f"{url}")
        log.warning("%s: HTTP %s from Binance, retrying in %.1f s (%s)", symbol, status, delay, url)
        self._sleep(delay)

    @staticmethod
    def _rows(response: requests.Response, symbol: str) -> list[Any]:
        if response.status_code >= 400:
            raise BinanceRestError(f"Binance refused klines for {symbol}: HTTP {response.status_code} "
                                   f"{_error_detail(response)}: {response.url}")
        try:
            rows = response.json()
        except ValueError:
            raise BinanceRestError(f"klines for {symbol} are not JSON: {response.text[:200]!r} "
                                   f"({response.url})") from None
        if not isinstance(rows, list):
            raise BinanceRestError(f"klines for {symbol} must be a JSON array, got {str(rows)[:200]} ({response.url})")
        return rows


def backfill(client: BinanceRestClient, publisher: Publisher, symbol: str, interval: str, start_ms: int, end_ms: int,
             *, after_open_time: int | None = None) -> BackfillResult:
    """Publish a range's candles and return only once Kafka confirmed them all.

    Pass the last stored candle's open time as ``after_open_time`` to resume without doubles.
    """
    dead_before = publisher.dead_letters
    count, last = 0, None
    for candle in client.candles(symbol, interval, start_ms, end_ms, after_open_time=after_open_time,
                                 publisher=publisher):
        count, last = count + 1, candle.open_time
    publisher.flush()
    return BackfillResult(symbol, interval, count, publisher.dead_letters - dead_before, last)
