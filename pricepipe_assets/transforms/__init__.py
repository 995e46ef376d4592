"""Rollups and statistics computed from contract records, independent of Dagster."""
