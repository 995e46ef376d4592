"""The Dagster resource of :class:`~pricepipe_assets.storage.lake.Lake`: the same settings as resource
config, so the lake's root shows in the UI."""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.storage.lake import Lake


# Unparametrized: a subscripted ConfigurableResource is a pydantic model class of its own at run time.
class LakeResource(Lake, dg.ConfigurableResource):  # type: ignore[type-arg]
    """A lake root: a local folder, or ``webhdfs://namenode:port/path``."""
