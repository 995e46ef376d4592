"""How answers are encoded and kept: a closed day is final (strong ETag, 304, a year of
Cache-Control), the open day is read again on every request, and every answer is the JSON the
previous encoder wrote for the same data, numbers exact."""

from __future__ import annotations

import datetime as dt
import json
import math

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from api.answers import encode, if_none_match, strong_etag
from api.cache import ByteLru
from api.routes.candles import is_closed, minutes_in
from pricepipe_assets_tests.api.conftest import (
    CLOSED_DAY,
    LIVE_DAY,
    SYMBOL,
    TRADES_SYMBOL,
    Filled,
)

UTC = dt.UTC


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _day(day: dt.date) -> str:
    return f"/candles/{SYMBOL}?start={day}&end={day}"


def _assert_equal_to_source(body: bytes, source: pd.DataFrame) -> None:
    got = pd.DataFrame(json.loads(body)["candles"])
    assert got["open_time"].tolist() == [_iso(ms) for ms in source["open_time"]]
    for column in ("open", "high", "low", "close", "volume", "quote_volume", "trades"):
        assert got[column].tolist() == source[column].tolist(), column


def test_a_closed_day_is_final_with_a_strong_etag_a_long_cache_control_and_304(api_client: TestClient,
                                                                               filled: Filled) -> None:
    first = api_client.get(_day(CLOSED_DAY))
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    _assert_equal_to_source(first.content, filled.closed_candles)

    again = api_client.get(_day(CLOSED_DAY))
    assert (again.content, again.headers["etag"]) == (first.content, etag)
    for asked in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        unchanged = api_client.get(_day(CLOSED_DAY), headers={"If-None-Match": asked})
        assert unchanged.status_code == 304 and unchanged.content == b"", asked
        assert unchanged.headers["etag"] == etag
        assert unchanged.headers["cache-control"] == first.headers["cache-control"]
    assert api_client.get(_day(CLOSED_DAY), headers={"If-None-Match": '"other"'}).content == first.content


def test_the_open_day_is_no_store_and_read_again_on_every_request(api_client: TestClient, filled: Filled) -> None:
    for _ in range(3):  # the first read keeps its closed minutes; the later ones read only what follows
        response = api_client.get(_day(LIVE_DAY))
        assert response.headers["cache-control"] == "no-store" and "etag" not in response.headers
        _assert_equal_to_source(response.content, filled.live_candles)


def test_a_range_that_ended_but_misses_minutes_is_not_final(api_client: TestClient) -> None:
    # 2024-01-29 has no 1m candles in the keyspace: a backfill could still add them
    response = api_client.get(f"/candles/{SYMBOL}?start=2024-01-29T23:00&end=2024-01-30T01:00")
    assert response.headers["cache-control"] == "no-store"
    assert len(response.json()["candles"]) == 60


def test_closed_means_1m_ended_at_or_before_the_clock_with_every_minute_present() -> None:
    start, end = dt.datetime(2024, 1, 30, tzinfo=UTC), dt.datetime(2024, 1, 31, tzinfo=UTC)
    assert minutes_in(start, end) == 1440
    assert minutes_in(start + dt.timedelta(seconds=30), end) == 1439
    assert is_closed("1m", start, end, end, 1440)
    assert not is_closed("1m", start, end, end - dt.timedelta(milliseconds=1), 1440)  # its last minute is open
    assert not is_closed("1m", start, end, end + dt.timedelta(days=1), 1439)  # a minute is missing
    assert not is_closed("1h", start, end, end + dt.timedelta(days=1), 24)  # rollups are recomputed
    assert not is_closed("1m", start, end, None, 1440)


def test_closed_answers_are_bounded_by_bytes_least_recently_used_first() -> None:
    kept = ByteLru(max_bytes=100)
    kept.put("a", "A", 40)
    kept.put("b", "B", 40)
    assert kept.get("a") == "A"  # now "b" is the least recently used
    kept.put("c", "C", 40)
    assert (kept.get("a"), kept.get("b"), kept.get("c"), kept.size) == ("A", None, "C", 80)
    kept.put("huge", "H", 101)
    assert kept.get("huge") is None and kept.size == 80


def test_if_none_match_compares_tags_weakly_as_rfc_9110_says() -> None:
    tag = strong_etag(b"{}")
    assert tag == strong_etag(b"{}") != strong_etag(b"[]")
    assert if_none_match([(b"if-none-match", b"W/" + tag)], tag)
    assert not if_none_match([(b"if-none-match", b'"x"')], tag)
    assert not if_none_match([], tag)


def test_every_answer_is_the_bytes_the_previous_encoder_wrote_for_this_data(api_client: TestClient) -> None:
    for path in (_day(CLOSED_DAY), _day(LIVE_DAY), f"/candles/{SYMBOL}?interval=1h&start=2024-01-02&end=2024-01-03",
                 f"/{TRADES_SYMBOL}/price", f"/{SYMBOL}/price", "/transactions/6-hours", "/volume/6-hours",
                 "/total/12-hours", "/trades/hour/3", f"/{TRADES_SYMBOL}/trades/5", "/symbols",
                 f"/predictions/{SYMBOL}", f"/forecast/{SYMBOL}", f"/moving-average/{SYMBOL}?window=7"):
        body = api_client.get(path).content
        assert body == json.dumps(json.loads(body), separators=(",", ":")).encode(), path


@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False,
                    allow_infinity=False) | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                    max_leaves=20))
def test_the_encoder_reads_back_as_the_same_values_with_every_float_exact(answer: object) -> None:
    decoded = json.loads(encode(answer))
    assert decoded == answer
    assert _floats(decoded) == _floats(answer)


def _floats(value: object) -> list[tuple[float, bool]]:
    """Every float with its sign, in order: 0.0 and -0.0 compare equal but must not be confused."""
    if isinstance(value, float):
        return [(value, math.copysign(1.0, value) < 0)]
    if isinstance(value, list):
        return [f for item in value for f in _floats(item)]
    if isinstance(value, dict):
        return [f for item in value.values() for f in _floats(item)]
    return []
