"""``coopt ui``: serve the MLflow UI over the study store, on localhost only.

The server is run with this interpreter (``sys.executable -m mlflow``) so that
it is the pinned MLflow of coopt's environment, whatever ``mlflow`` is on PATH.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from coopt.errors import CooptError
from coopt.tracking.mlflow_tracker import artifact_root, resolve_uri, sqlite_path


def ui_command(tracking_uri: str | None, port: int = 5000, host: str = "127.0.0.1") -> list[str]:
    """The ``mlflow server`` command line for the store (artifacts served from ``mlruns/artifacts``)."""
    uri = resolve_uri(tracking_uri)
    return [sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", uri,
            "--default-artifact-root", str(artifact_root(uri)),
            "--host", host, "--port", str(int(port)),
            "--workers", "1"]


def ui_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return env


def launch_ui(tracking_uri: str | None = None, port: int = 5000, host: str = "127.0.0.1") -> int:
    """Run the UI in the foreground until Ctrl-C; return its exit code."""
    uri = resolve_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise CooptError(f"no studies here yet: run coopt search first (no MLflow store at {db})")
    print(f"MLflow UI: http://{host}:{port}  (Ctrl-C to stop)", flush=True)
    # Its own process group: the server forks a uvicorn worker that must stop with it,
    # whether we get Ctrl-C or a SIGTERM.
    proc = subprocess.Popen(ui_command(uri, port, host), env=ui_env(), start_new_session=True)

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop_group(proc)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue
