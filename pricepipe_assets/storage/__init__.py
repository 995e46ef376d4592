"""Cassandra and the lake as plain classes: sessions, schema, clock, datasets, archive, models."""
