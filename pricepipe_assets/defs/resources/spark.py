"""Spark for the analytics assets: a lazy session, so runs that never touch Spark start no JVM."""

from __future__ import annotations

from dagster_pyspark import LazyPySparkResource

from pricepipe_assets.settings import Settings

LOOPBACK = "127.0.0.1"


def spark_config(settings: Settings) -> dict[str, str]:
    """Session settings sized for a small machine; the master comes from ``PRICEPIPE_SPARK_MASTER``.

    No run opens a port to the network by itself: the driver's web UI (which would listen on every
    interface, without a login, for each run) is off, and a driver running in-process
    (``local[...]``) listens on loopback only. A driver with a cluster master keeps Spark's default
    address, because the executors on other machines must reach it."""
    config = {
        "spark.master": settings.spark_master,
        "spark.app.name": "pricepipe",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.hadoop.hadoop.user.name": settings.hdfs_user,
    }
    if settings.spark_master.startswith("local"):
        config |= {"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK}
    return config


def spark_resource(settings: Settings) -> LazyPySparkResource:
    return LazyPySparkResource(spark_config=spark_config(settings))
