"""The data contract: topics, records and their value rules. No I/O, no Dagster."""
