"""A throwaway PostgreSQL cluster from Debian's ``postgresql`` package, for the test suite and the benchmark.

``initdb`` in a fresh temporary directory, ``pg_ctl start`` on a free port of 127.0.0.1 only, trust authentication
for local connections (nothing else can reach it), removed on exit. PostgreSQL refuses to run as root: as root it
runs as the package's ``postgres`` user (``runuser``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

POSTGRES_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    pass


def postgres_bin_dir() -> Path:
    """The newest installed server's binaries (Debian puts them in /usr/lib/postgresql/<major>/bin)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not candidates:
        found = shutil.which("initdb")
        if found is None:
            raise PostgresUnavailable("PostgreSQL is not installed: apt-get install postgresql (scripts/install-test-tools.sh)")
        return Path(found).parent
    return candidates[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", POSTGRES_USER, "--", *command] if os.geteuid() == 0 else command


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a cluster; yield the SQLAlchemy URL of its ``postgres`` database; stop and delete it on exit."""
    bin_dir = postgres_bin_dir()
    home = Path(tempfile.mkdtemp(prefix="signalements-pg-"))
    data, log = home / "data", home / "server.log"
    if os.geteuid() == 0:
        shutil.chown(home, POSTGRES_USER, POSTGRES_USER)
    port = _free_port()

    def run(*command: str) -> None:
        result = subprocess.run(_as_server_user(list(command)), capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise PostgresUnavailable(f"{command[0]} failed: {result.stderr.strip()}\n{server_log[-2000:]}")

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", POSTGRES_USER, "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-sync")
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c max_connections=200"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        try:
            yield f"postgresql+psycopg://{POSTGRES_USER}@127.0.0.1:{port}/postgres"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def create_database(server_url: str, prefix: str = "signalements") -> str:
    """A new empty database on the server of ``server_url``; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
