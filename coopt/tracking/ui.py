"""``coopt ui``: serve the MLflow UI over the study store, on localhost only, for as long as coopt ui runs.

The server is run with this interpreter (``sys.executable -m mlflow``) so that
it is the pinned MLflow of coopt's environment, whatever ``mlflow`` is on PATH.
It runs under a small watchdog (``python -m coopt.tracking.watchdog``) in a
process group of its own: the watchdog stops the whole group (uvicorn and
huey workers included) when ``coopt ui`` ends, however it ends — Ctrl-C,
SIGTERM, or SIGKILL (the watchdog gets a parent-death signal on Linux and
also polls its parent).  Next to it, in a thread of ``coopt ui`` itself (so it
ends with it, SIGKILL included), a small page server shows each study's front
with points that open their runs (``coopt.tracking.front_page``).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from coopt.errors import CooptError
from coopt.tracking.mlflow_tracker import artifact_root, filter_string, resolve_uri, sqlite_path
from coopt.tracking.studies import study_experiments

READY_TIMEOUT_S = 120


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


def check_port(port: int, host: str = "127.0.0.1", key: str = "--port") -> None:
    """Fail fast, in one line, on a port that is out of range or already taken."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise CooptError(f"invalid port {port}", key=key, expected="an integer from 1 to 65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except PermissionError:
            raise CooptError(f"port {port} needs privileges on {host}", key=key,
                             expected="a port above 1023") from None
        except OSError:
            raise CooptError(f"port {port} on {host} is already in use", key=key,
                             expected=f"a free port, e.g. {key} 5001" if key == "--port"
                             else f"a free port, or no {key} to get one") from None


def study_urls(tracking_uri: str | None, base: str, study: str | None = None) -> list[tuple[str, str]]:
    """(study, URL of its runs view) for one study or all of them."""
    from coopt.tracking.present import experiment_url

    found = study_experiments(tracking_uri)
    if study is not None:
        hit = [x for x in found if x[0] == study]
        if not hit:
            old = legacy_studies(tracking_uri)
            if study in old:
                raise CooptError(legacy_hint(study, old[study]), key="--study")
            known = ", ".join(s for s, _ in found) or "none yet"
            raise CooptError(f"no study '{study}' in the MLflow store", key="--study",
                             expected=f"one of: {known}")
        found = hit
    return [(s, experiment_url(base, eid)) for s, eid in found]


def legacy_studies(tracking_uri: str | None) -> dict[str, dict]:
    """Studies logged by coopt before one experiment per study (all in the experiment ``coopt``) and not
    logged again since: name -> {"trials": finished trial runs, "sampler": ..., "storage": ...}."""
    from coopt.tracking.mlflow_tracker import LEGACY_EXPERIMENT
    from mlflow.tracking import MlflowClient

    client = MlflowClient(resolve_uri(tracking_uri))
    exp = client.get_experiment_by_name(LEGACY_EXPERIMENT)
    if exp is None or exp.lifecycle_stage == "deleted":
        return {}
    current = {s for s, _ in study_experiments(tracking_uri)}
    out = {}
    for run in client.search_runs([exp.experiment_id], "tags.`coopt.role` = 'parent'", max_results=1000):
        name = run.data.tags.get("coopt.study")
        if name and name not in current:
            trials = client.search_runs([exp.experiment_id], filter_string(
                {"coopt.study": name, "coopt.role": "trial"}) + " and attributes.status = 'FINISHED'",
                max_results=1000)
            out[name] = {"trials": len(trials), "sampler": run.data.params.get("sampler", "tpe"),
                         "storage": run.data.params.get("storage", "None"),
                         "space_file": run.data.params.get("space_file", "SPACE.yaml")}
    return out


def legacy_hint(study: str, info: dict) -> str:
    """One line: where an old store keeps the study and the command that gives it an experiment of its own
    (a resume that asks for no new trial: the driver logs every trial not yet in the study's experiment)."""
    from coopt.study.storage import study_dir

    space = study_dir(study) / "search_space.yaml"
    shown = os.path.relpath(space) if space.is_file() else info.get("space_file", "SPACE.yaml")
    storage = " --storage URL" if info.get("storage") not in (None, "", "None") else ""
    return (f"study '{study}' was logged by an older coopt into the shared experiment 'coopt'; give it an "
            f"experiment of its own (no trial runs again): coopt search --study {study} --space {shown} "
            f"--sampler {info.get('sampler', 'tpe')} --trials {max(1, info['trials'])}{storage}, then coopt ui again")


def _wait_ready(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def launch_ui(tracking_uri: str | None = None, port: int = 5000, host: str = "127.0.0.1",
              study: str | None = None, front_port: int | None = None) -> int:
    """Run the UI in the foreground until Ctrl-C or SIGTERM; print the studies' URLs once it answers.

    ``front_port``: the port of the front pages (None: a free one)."""
    from coopt.tracking.front_page import FrontServer

    uri = resolve_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise CooptError(f"no studies here yet: run coopt search first (no MLflow store at {db})")
    if uri.startswith(("http://", "https://")):
        return _serve_fronts_of_server(uri, host, study, front_port)
    check_port(port, host)
    if front_port is not None:
        if front_port == port:
            raise CooptError(f"--front-port {front_port} is also --port", key="--front-port",
                             expected="another port than the MLflow UI's")
        check_port(front_port, host, key="--front-port")
    base = f"http://{host}:{port}"
    urls = study_urls(uri, base, study)
    old = {} if study is not None else legacy_studies(uri)
    front = FrontServer(uri, base, port=front_port or 0, host=host, study=study)
    if front.port == port:                                   # the free port picked is the one MLflow wants
        front.close()
        front = FrontServer(uri, base, port=0, host=host, study=study)
    cmd = [sys.executable, "-m", "coopt.tracking.watchdog", str(os.getpid()), "--", *ui_command(uri, port, host)]
    proc = subprocess.Popen(cmd, env=ui_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    tail = _drain(proc)
    try:
        if not _wait_ready(proc, base, READY_TIMEOUT_S):
            _stop(proc)
            time.sleep(0.2)
            last = next((l for l in reversed(tail) if "rror" in l), tail[-1] if tail else "")
            raise CooptError(f"the MLflow server did not start on {base}" + (f": {last.strip()}" if last else ""))
        _announce(f"{base}  (Ctrl-C to stop)", front, urls, uri, base)
        for name, info in old.items():
            print(f"  {legacy_hint(name, info)}", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        _stop(proc)
        return 0
    finally:
        front.close()
        signal.signal(signal.SIGTERM, previous)


def _announce(ui: str, front, urls, uri: str, base: str) -> None:
    """Start the front pages and print where everything is (once the MLflow UI answers): first the page
    to open, the study's front (or the list of studies), which links into MLflow."""
    from coopt.tracking.front_page import study_run
    from coopt.tracking.present import study_run_url

    front.start()
    print(f"front page: {front.url(urls[0][0]) if len(urls) == 1 else front.base}  "
          "(each point opens its trial in MLflow)", flush=True)
    print(f"MLflow UI: {ui}", flush=True)
    runs = dict(study_experiments(uri))
    for name, url in urls:
        print(f"  study {name}: {url}", flush=True)
        parent = study_run(front.client, runs[name]) if name in runs else None
        if parent is not None:
            print(f"    its front in MLflow: {study_run_url(base, runs[name], parent.info.run_id)}", flush=True)
        if len(urls) > 1:
            print(f"    front page: {front.url(name)}", flush=True)


def _serve_fronts_of_server(uri: str, host: str, study: str | None, front_port: int | None) -> int:
    """An MLflow tracking server already serves the UI: start no server of our own, only the front
    pages (reading that server), and print its URLs; until Ctrl-C or SIGTERM."""
    from coopt.tracking.front_page import FrontServer
    from coopt.tracking.mlflow_tracker import check_tracking_uri

    check_tracking_uri(uri)
    if front_port is not None:
        check_port(front_port, host, key="--front-port")
    base = uri.rstrip("/")
    urls = study_urls(uri, base, study)
    front = FrontServer(uri, base, port=front_port or 0, host=host, study=study)

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        _announce(f"{base}  (the tracking server's own; Ctrl-C stops the front pages)", front, urls, uri, base)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    finally:
        front.close()
        signal.signal(signal.SIGTERM, previous)


def _drain(proc: subprocess.Popen):
    """Read the server's log (kept out of the terminal) so its pipe never fills; keep its last lines."""
    import collections
    import threading

    tail = collections.deque(maxlen=50)

    def run():
        for line in iter(proc.stderr.readline, b""):
            tail.append(line.decode(errors="replace").rstrip())
    threading.Thread(target=run, daemon=True).start()
    return tail


def _stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue
