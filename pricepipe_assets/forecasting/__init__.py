"""Forecasting library: Spark features, models, conformal intervals, walk-forward evaluation, plots.

Nothing here imports Dagster, so the same code is used by the ``ml`` assets, the benchmark
script and the tests, and each part can be checked on its own.
"""
