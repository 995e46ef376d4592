"""Spark for the analytics assets: a lazy session, so runs that never touch Spark start no JVM."""

from __future__ import annotations

from dagster_pyspark import LazyPySparkResource

from pricepipe_assets.settings import Settings


def spark_config(settings: Settings) -> dict[str, str]:
    """Session settings sized for a small machine; the master comes from ``PRICEPIPE_SPARK_MASTER``."""
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "pricepipe",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.showConsoleProgress": "false",
        "spark.hadoop.hadoop.user.name": settings.hdfs_user,
    }


def spark_resource(settings: Settings) -> LazyPySparkResource:
    return LazyPySparkResource(spark_config=spark_config(settings))
