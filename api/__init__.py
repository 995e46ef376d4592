"""pricepipe's HTTP API (Starlette): prices, statistics and forecasts read from Cassandra."""
