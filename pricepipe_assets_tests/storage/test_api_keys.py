"""API keys in the real Cassandra: stored as a hash only, one per name, revoked by name."""

from __future__ import annotations

import hashlib

import pytest

from pricepipe_assets.defs.resources import CassandraResource
from pricepipe_assets.storage import api_keys
from pricepipe_assets.storage.api_keys import Rate


def test_the_table_holds_the_keys_hash_never_the_key(cassandra: CassandraResource) -> None:
    secret = api_keys.create(cassandra, "grafana", ["read", "stream"], Rate(5, 1))
    rows = list(cassandra.session().execute("SELECT * FROM api_keys"))
    assert len(rows) == 1
    assert bytes(rows[0].key_hash) == hashlib.sha256(secret.encode()).digest()
    assert all(secret not in str(value) for value in rows[0])
    assert secret.startswith("pp_") and len(secret) > 40


def test_listed_keys_carry_name_scopes_rate_and_creation(cassandra: CassandraResource) -> None:
    api_keys.create(cassandra, "zeta", ["forecasts"], Rate(600, 60))
    api_keys.create(cassandra, "alpha", ["read"])
    keys = api_keys.list_keys(cassandra)
    assert [(key.name, key.scopes, str(key.rate)) for key in keys] == [
        ("alpha", frozenset({"read"}), "10/s"), ("zeta", frozenset({"forecasts"}), "600/m")]
    assert all(key.created_at is not None and key.created_at.tzinfo is not None for key in keys)


def test_a_name_is_taken_once_until_revoked(cassandra: CassandraResource) -> None:
    first = api_keys.create(cassandra, "bot", ["read"])
    with pytest.raises(ValueError, match="exists already"):
        api_keys.create(cassandra, "bot", ["read"])
    assert api_keys.revoke(cassandra, "bot")
    assert not api_keys.revoke(cassandra, "bot")
    assert api_keys.create(cassandra, "bot", ["read"]) != first


@pytest.mark.parametrize(("name", "scopes", "problem"), [
    ("Upper", ["read"], "key name"), ("", ["read"], "key name"), ("ok", ["write"], "scopes"),
    ("ok", [], "scopes")])
def test_bad_names_and_scopes_are_refused_before_anything_is_stored(cassandra: CassandraResource, name: str,
                                                                    scopes: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        api_keys.create(cassandra, name, scopes)
    assert api_keys.list_keys(cassandra) == []


@pytest.mark.parametrize(("text", "rate"), [("10/s", Rate(10, 1)), (" 600 / m ", Rate(600, 60))])
def test_rates_read_as_requests_per_second_or_minute(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate
    assert Rate.parse(str(rate)) == rate


@pytest.mark.parametrize("text", ["10/h", "0/s", "ten/s", "10"])
def test_other_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="requests per second or minute"):
        Rate.parse(text)
