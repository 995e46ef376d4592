"""Model versions in the lake: every training keeps its own file, and the newest is the latest."""

from __future__ import annotations

import datetime as dt

from pricepipe_assets.defs.resources import LakeResource
from pricepipe_assets.storage import model_store


def _stored(version: str) -> model_store.StoredModel:
    return model_store.StoredModel("minute_model", "BTCUSDT", version, {"weights": version}, {}, False, {})


def test_two_trainings_in_the_same_second_keep_two_versions_and_the_later_is_latest(
        local_lake: LakeResource) -> None:
    second = dt.datetime(2026, 12, 3, 1, 39, 28, tzinfo=dt.UTC)
    first, then = (model_store.new_version(second + dt.timedelta(microseconds=us)) for us in (1000, 900_000))
    model_store.save(local_lake, _stored(first))
    model_store.save(local_lake, _stored(then))

    assert model_store.versions(local_lake, "minute_model", "BTCUSDT") == [first, then]
    latest = model_store.load_latest(local_lake, "minute_model", "BTCUSDT")
    assert latest is not None and latest.model == {"weights": then}
