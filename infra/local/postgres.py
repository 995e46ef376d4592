"""PostgreSQL from Debian's package, holding the Dagster instance the cluster's Dagster processes share.

PostgreSQL refuses to run as root, so when the launcher is root the server runs as Debian's
``postgres`` user, with its data in that user's home (the launcher's own state is usually under
``/root``, which other users cannot enter). It listens on TCP only (no Unix socket to clash with a
system server) and its only role signs in with a password, scram-sha-256.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TypedDict

from infra.local.server_types import InfraError, Layout, Process, Server, log_tail

HOST, PORT = "127.0.0.11", 5432
USER = PASSWORD = DATABASE = "dagster"
SYSTEM_USER = "postgres"
URL = f"postgresql://{USER}:{PASSWORD}@{HOST}:{PORT}/{DATABASE}"


def bin_dir() -> Path:
    """The newest installed server's programs (Debian keeps them per major version)."""
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if installed:
        return installed[-1].parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).resolve().parent
    raise InfraError("the local cluster's PostgreSQL needs the server programs (initdb, postgres): "
                     "apt-get install postgresql")


def server() -> Server:
    return Server(name="postgres", kind="postgres", host=HOST, start_timeout_s=60, client_ports=(PORT,),
                  processes=(Process("postgres", "postgres", 0, (PORT,)),), endpoints=(URL,),
                  run_as=SYSTEM_USER)


def command(server: Server, layout: Layout, programs: Path) -> list[str]:
    return [str(programs / "postgres"), "-D", str(layout.data(server)), "-c", f"listen_addresses={server.host}",
            "-p", str(PORT), "-c", "unix_socket_directories=", "-c", "max_connections=200"]


class Owner(TypedDict, total=False):
    """Popen's keyword arguments that choose the user a program runs as."""

    user: str
    group: str
    extra_groups: list[str]


def as_owner(server: Server) -> Owner:
    """Popen's arguments that start a program as the server's own user, when the launcher is root."""
    if server.run_as and os.geteuid() == 0:
        return {"user": server.run_as, "group": server.run_as, "extra_groups": []}
    return {}


def prepare(server: Server, layout: Layout, programs: Path) -> None:
    """The first time only: a database cluster whose superuser is ``dagster``, with the ``dagster`` database."""
    data = layout.data(server)
    if (data / "PG_VERSION").exists():
        return
    owner = as_owner(server)
    if owner:
        account = pwd.getpwnam(server.run_as)
        for folder in (data, *data.parents):
            if folder == Path(account.pw_dir):
                break
            os.chown(folder, account.pw_uid, account.pw_gid)
    log = layout.logs(server) / "initdb.out"
    with tempfile.NamedTemporaryFile("w", suffix=".pw") as password:
        password.write(PASSWORD)
        password.flush()
        os.chmod(password.name, 0o644)
        steps = [([str(programs / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={password.name}",
                   "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-instructions"], None),
                 ([str(programs / "postgres"), "--single", "-D", str(data), "postgres"],
                  f"CREATE DATABASE {DATABASE};\n")]
        with log.open("w") as out:
            for argv, script in steps:
                result = subprocess.run(argv, input=script, text=True, stdout=out, stderr=subprocess.STDOUT,
                                        cwd=data, timeout=120, **owner)
                if result.returncode != 0:
                    shutil.rmtree(data, ignore_errors=True)
                    raise InfraError(f"postgres: {Path(argv[0]).name} failed (exit {result.returncode}); "
                                     f"last lines of {log}:\n{log_tail(log)}")


def ready(server: Server) -> bool:
    """A SQL round trip as pricepipe's Dagster instance would make it."""
    import psycopg2

    connection = psycopg2.connect(host=server.host, port=PORT, user=USER, password=PASSWORD, dbname=DATABASE,
                                  connect_timeout=3)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            row: object = cursor.fetchone()
            return row == (1,)
    finally:
        connection.close()
