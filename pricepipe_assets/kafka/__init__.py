"""Kafka clients as plain classes: cluster settings, the publisher, offset-range batches."""
