"""The Dagster resource of :class:`~pricepipe_assets.forecasting.rules.ModelRules`: the same rules as
resource config, so the UI shows what a model must beat to be served."""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.forecasting.rules import ModelRules


# Unparametrized: a subscripted ConfigurableResource is a pydantic model class of its own at run time.
class ModelRulesResource(ModelRules, dg.ConfigurableResource):  # type: ignore[type-arg]
    """The margin a model may trail the naive forecast by, and the daily model's minimum history."""
