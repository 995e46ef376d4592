"""pricepipe: crypto market data and forecasts as a Dagster asset graph (the Dagster code location)."""
