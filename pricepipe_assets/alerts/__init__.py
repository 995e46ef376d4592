"""Alerts: incidents opened and resolved once each, and the channels that tell a person about them.

Plain code, no Dagster: the sensors of ``defs/alerts.py`` detect problems and keep this package's
state in their cursors, so the rules and the delivery are testable without a daemon.
"""
