"""The stream worker: the live tables written from Kafka as records arrive, observed by Dagster."""
