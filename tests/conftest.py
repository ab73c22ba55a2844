"""Fixtures shared by the storage and lease tests: a fresh PostgreSQL/MariaDB database, a gRPC storage proxy."""
from __future__ import annotations

import socket
import subprocess
import sys
import uuid

import pytest

PG = "postgresql://postgres@127.0.0.1:5432"
MARIADB = "mysql://root@127.0.0.1:3306"


@pytest.fixture(autouse=True)
def _estimator_choice_stays_in_its_test():
    """`--energy` sets COOPT_ENERGY in the process (so that worker processes follow it); a test that runs
    the CLI in process must not hand its estimator to the next test of the same worker."""
    import os
    saved = os.environ.get("COOPT_ENERGY")
    yield
    if saved is None:
        os.environ.pop("COOPT_ENERGY", None)
    else:
        os.environ["COOPT_ENERGY"] = saved


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pg_db():
    """A database of its own on the real PostgreSQL server, dropped afterwards."""
    import psycopg
    name = f"coopt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    yield f"{PG}/{name}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def mariadb_db():
    """A database of its own on the real MariaDB server, dropped afterwards."""
    import pymysql
    name = f"coopt_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    conn.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"{MARIADB}/{name}"
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


SERVE = ("import optuna, sys; from optuna.storages import run_grpc_proxy_server; "
         "run_grpc_proxy_server(optuna.storages.RDBStorage(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]))")


@pytest.fixture
def grpc_proxy(tmp_path):
    """Optuna's gRPC storage proxy on 127.0.0.1 fronting a sqlite file: (grpc:// URL, sqlite URL)."""
    port = free_port()
    backend = f"sqlite:///{tmp_path / 'proxied.db'}"
    server = subprocess.Popen([sys.executable, "-c", SERVE, backend, str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"grpc://127.0.0.1:{port}", backend
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
