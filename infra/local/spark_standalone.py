"""A Spark standalone master and worker, run from the jars of the installed pyspark.

The pyspark package is a Spark distribution of its own (``jars/``, ``bin/``, the launcher classes),
so the cluster needs no download: its master and worker are the same Spark, and the same version,
as the driver in pricepipe's runs. The worker finds the executors' classpath through
``SPARK_HOME``; ``SPARK_LOCAL_IP`` keeps each web UI on its node's own address.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from infra.local.server_types import Layout, Process, Server

MASTER_HOST, WORKER_HOST = "127.0.0.11", "127.0.0.12"
MASTER_PORT, MASTER_UI_PORT, WORKER_PORT, WORKER_UI_PORT = 7077, 8080, 7078, 8081
MASTER_URL = f"spark://{MASTER_HOST}:{MASTER_PORT}"
MASTER_CLASS, WORKER_CLASS = "org.apache.spark.deploy.master.Master", "org.apache.spark.deploy.worker.Worker"
# Memory the worker offers its executors: one executor of Spark's default 1 GiB heap.
WORKER_MEMORY, WORKER_CORES = "1g", 2


def spark_home() -> Path:
    """The installed pyspark's folder, which holds Spark's jars."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def master() -> Server:
    return Server(name="spark-master", kind="spark", host=MASTER_HOST, start_timeout_s=120,
                  processes=(Process("spark-master", MASTER_CLASS, 512,
                                     (MASTER_PORT, MASTER_UI_PORT),
                                     ("--host", MASTER_HOST, "--port", str(MASTER_PORT),
                                      "--webui-port", str(MASTER_UI_PORT))),),
                  client_ports=(MASTER_PORT, MASTER_UI_PORT),
                  endpoints=(MASTER_URL, f"UI http://{MASTER_HOST}:{MASTER_UI_PORT}"))


def worker() -> Server:
    return Server(name="spark-worker", kind="spark", host=WORKER_HOST, start_timeout_s=120,
                  processes=(Process("spark-worker", WORKER_CLASS, 256,
                                     (WORKER_PORT, WORKER_UI_PORT),
                                     ("--host", WORKER_HOST, "--port", str(WORKER_PORT),
                                      "--webui-port", str(WORKER_UI_PORT), "--cores", str(WORKER_CORES),
                                      "--memory", WORKER_MEMORY, MASTER_URL)),),
                  client_ports=(WORKER_UI_PORT,),
                  endpoints=(f"worker of {MASTER_URL}", f"UI http://{WORKER_HOST}:{WORKER_UI_PORT}"))


def java_args(server: Server, process: Process, layout: Layout, home: Path) -> list[str]:
    work = ["--work-dir", str(layout.data(server) / "work")] if process.main_class == WORKER_CLASS else []
    return [f"-Xms{process.heap_mb}m", f"-Xmx{process.heap_mb}m", "-cp", f"{home / 'conf'}:{home / 'jars'}/*",
            process.main_class, *work, *process.args]


def environment(server: Server, layout: Layout, home: Path) -> dict[str, str]:
    """Where the worker finds Spark to build its executors' command. Spark's launcher would otherwise
    look for the Scala version in a source tree's build folders, which a distribution has none of."""
    (core,) = (home / "jars").glob("spark-core_*.jar")
    scala = core.name.removeprefix("spark-core_").split("-", 1)[0]
    return {"SPARK_HOME": str(home), "SPARK_SCALA_VERSION": scala, "SPARK_LOCAL_IP": server.host,
            "SPARK_LOG_DIR": str(layout.logs(server))}


class Worker(TypedDict):
    """A worker in the master's JSON status (the fields pricepipe reads)."""

    host: str
    state: str
    cores: int
    memory: int


class Application(TypedDict):
    """An application in the master's JSON status (the fields pricepipe reads)."""

    id: str
    name: str
    state: str


class MasterStatus(TypedDict):
    """The master's JSON status (the fields pricepipe reads)."""

    url: str
    status: str
    workers: list[Worker]
    activeapps: list[Application]
    completedapps: list[Application]


def applications() -> MasterStatus:
    """The master's JSON status: its workers, and the applications running and completed."""
    import requests

    response = requests.get(f"http://{MASTER_HOST}:{MASTER_UI_PORT}/json/", timeout=5)
    response.raise_for_status()
    status: MasterStatus = response.json()
    return status


def ready(server: Server) -> bool:
    """The master is ALIVE; a worker counts once the master lists it ALIVE."""
    status = applications()
    if status.get("status") != "ALIVE":
        return False
    if server.processes[0].main_class == MASTER_CLASS:
        return True
    return any(w.get("host") == server.host and w.get("state") == "ALIVE" for w in status.get("workers", []))
