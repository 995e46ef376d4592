"""``pricepipe api-key`` as a user runs it: create prints the key once, list never shows it, revoke deletes it."""

from __future__ import annotations

import pytest

from pricepipe_assets.cli.main import main
from pricepipe_assets.defs.resources import CassandraResource
from pricepipe_assets.storage import api_keys


@pytest.fixture
def keyspace(cassandra: CassandraResource, monkeypatch: pytest.MonkeyPatch) -> CassandraResource:
    monkeypatch.setenv("PRICEPIPE_KEYSPACE", cassandra.keyspace)
    monkeypatch.delenv("PRICEPIPE_API_KEY", raising=False)
    monkeypatch.delenv("PRICEPIPE_API_AUTH", raising=False)
    return cassandra


def test_create_prints_the_key_once_and_list_never_shows_it(keyspace: CassandraResource,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api-key", "create", "grafana", "--scopes", "read,stream", "--rate", "20/m"]) == 0
    created = capsys.readouterr().out
    secret = created.splitlines()[0]
    assert secret.startswith("pp_") and "PRICEPIPE_API_AUTH=true" in created
    assert main(["api-key", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == ["name", "scopes", "rate", "created"]
    assert listed[1].split()[:3] == ["grafana", "read,stream", "20/m"]
    assert secret not in "\n".join(listed) and api_keys.digest(secret).hex() not in "\n".join(listed)


def test_revoke_deletes_the_key_and_an_unknown_name_fails(keyspace: CassandraResource,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api-key", "create", "bot", "--scopes", "forecasts"]) == 0
    assert main(["api-key", "revoke", "bot"]) == 0
    assert api_keys.list_keys(keyspace) == []
    assert main(["api-key", "revoke", "bot"]) == 1
    assert "no key named 'bot'" in capsys.readouterr().out


def test_unknown_scopes_and_rates_are_refused(keyspace: CassandraResource, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api-key", "create", "bot", "--scopes", "admin"]) == 1
    assert "scopes are some of read, forecasts, stream" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["api-key", "create", "bot", "--scopes", "read", "--rate", "5/h"])
    assert api_keys.list_keys(keyspace) == []
