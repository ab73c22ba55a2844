"""Study names, storage URLs, the run lock / database lease, reading without creating, hypervolumes.

The database tests use the real PostgreSQL server at 127.0.0.1:5432 with a
database of their own (created and dropped here).
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import free_port

from coopt.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "search_spaces" / "tiny.yaml")


# -- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../../escape", "a/b", ".hidden", "-x", "sp ace", "", "é"])
def test_bad_study_names_exit_2_and_write_nothing(bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for argv in (["search", "--space", TINY, "--trials", "1", f"--study={bad}"],
                 ["pareto", f"--study={bad}"], ["export", f"--study={bad}", "--pareto", "--out", "x"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--study" in err[0] and "letters, digits" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_good_study_names_pass():
    from coopt.study.storage import check_study_name
    for good in ("edge", "edge-2", "a_b.c", "0x"):
        assert check_study_name(good) == good


# -- storage URLs -----------------------------------------------------------------------------
def test_urls_as_users_write_them():
    from coopt.study.storage import StorageError, normalize_url
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    if importlib.util.find_spec("psycopg2"):          # an explicit driver is kept when it is there
        assert normalize_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    else:
        with pytest.raises(StorageError, match="needs the psycopg2 package"):
            normalize_url("postgresql+psycopg2://u@h/db")
    assert normalize_url("mysql://root@127.0.0.1/db") == "mysql+pymysql://root@127.0.0.1/db"
    assert normalize_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    with pytest.raises(StorageError, match="unknown storage scheme redis://"):
        normalize_url("redis://127.0.0.1:6379")
    with pytest.raises(StorageError, match=r"needs the mysqldb package.*pip install mysqlclient"):
        normalize_url("mysql+mysqldb://root@h/db")


@pytest.mark.parametrize("url, words", [
    ("redis://127.0.0.1:6379/0", "unknown storage scheme redis://"),
    ("postgresql://postgres@127.0.0.1:1/nodb", "cannot open storage postgresql://"),
    ("grpc://127.0.0.1:1", "no Optuna gRPC storage proxy answers"),
])
def test_bad_storage_is_one_line_exit_2(url, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", TINY, "--trials", "1", "--study", "s", "--storage", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "Traceback" not in err[0]


def test_reading_never_creates_storage(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "nothing.db"
    assert main(["pareto", "--study", "s", "--storage", f"sqlite:///{db}"]) == 2
    assert "no study storage at" in capsys.readouterr().err
    assert main(["pareto", "--study", "s"]) == 2
    assert "no study 's'" in capsys.readouterr().err
    assert main(["export", "--study", "s", "--pareto", "--out", "o", "--storage", f"journal:{tmp_path}/j.journal"]) == 2
    assert list(tmp_path.iterdir()) == []


# -- hypervolume against an independent count -------------------------------------------------
def _brute_hv(points: np.ndarray, ref: np.ndarray) -> int:
    """Unit cells of the integer grid between the origin-side points and ref that some point dominates."""
    lo = points.min(axis=0)
    cells = itertools.product(*[range(int(a), int(b)) for a, b in zip(lo, ref)])
    return sum(1 for c in cells if np.any(np.all(points <= np.array(c), axis=1)))


@pytest.mark.parametrize("dim, n", [(2, 7), (3, 6), (3, 12)])
def test_hypervolume_matches_a_brute_force_count(dim, n):
    from coopt.study.front import hypervolume
    rng = np.random.default_rng(dim * 100 + n)
    for _ in range(5):
        pts = rng.integers(0, 9, size=(n, dim)).astype(float)
        ref = np.full(dim, 10.0)
        assert hypervolume(pts, ["minimize"] * dim, list(ref)) == _brute_hv(pts, ref)
        # maximising an objective mirrors it: same volume
        flipped = pts.copy()
        flipped[:, 0] = -flipped[:, 0]
        assert hypervolume(flipped, ["maximize"] + ["minimize"] * (dim - 1), [-10.0] + [10.0] * (dim - 1)) == \
            _brute_hv(pts, ref)


# -- the run lock and the database lease ------------------------------------------------------
HOLD = """
import sys, time
from pathlib import Path
from coopt.study.lock import StudyLock
url = sys.argv[3] if len(sys.argv) > 3 else None
with StudyLock(sys.argv[1], Path(sys.argv[2]), url):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(name, sdir, url=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", HOLD, name, str(sdir)] + ([url] if url else [])
    p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_run_of_a_study_exits_2_naming_the_holder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sdir = tmp_path / "mlruns" / "studies" / "busy"
    p = _holder("busy", sdir)
    try:
        assert main(["search", "--space", TINY, "--trials", "1", "--study", "busy"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pid {p.pid} on {socket.gethostname()} since" in err[0]
        assert not (sdir / "optuna.journal").exists()           # it touched nothing
    finally:
        p.kill()
        p.wait()
    from coopt.study.lock import StudyLock
    with StudyLock("busy", sdir):                                # a dead holder's lock is free
        pass


# -- a study on PostgreSQL, killed and resumed; read from another folder ---------------------
def _pg_study(url, name):
    import optuna

    from coopt.study.storage import open_storage
    return optuna.load_study(study_name=name, storage=open_storage(url, Path("."), create=False))


@pytest.mark.db
@pytest.mark.slow
def test_postgres_study_killed_and_resumed(pg_db, tmp_path, monkeypatch, capsys):
    from optuna.trial import TrialState
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.chdir(run_dir)
    cmd = [sys.executable, "-m", "coopt.cli", "search", "--space", TINY, "--trials", "40", "--workers", "2",
           "--sampler", "random", "--study", "pg", "--storage", pg_db]
    err = tmp_path / "search.err"

    def start():
        with open(err, "w") as f:
            return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f, start_new_session=True,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})

    def complete():
        """COMPLETE trials so far, through a storage opened and closed per poll (an engine left open per
        poll would hold a connection each: under load that reached PostgreSQL's 100-client limit)."""
        import optuna

        from coopt.study.storage import open_storage
        try:
            storage = open_storage(pg_db, Path("."), create=False)
        except Exception:                                   # not created yet
            return 0
        try:
            return sum(t.state == TrialState.COMPLETE
                       for t in optuna.load_study(study_name="pg", storage=storage).get_trials())
        except Exception:                                   # not created yet
            return 0
        finally:
            storage.engine.dispose()

    for attempt in (1, 2):
        proc = start()
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and complete() < 3:
            time.sleep(0.5)
        if proc.poll() is None or complete() >= 3 or attempt == 2:
            break
        # The search ended on its own before 3 trials: seen twice in CI (2 cores, two test workers, other
        # PostgreSQL tests running); say why in the warnings summary and start it once more.
        warnings.warn(f"coopt search on PostgreSQL ended early (exit {proc.returncode}): "
                      f"{err.read_text()[-1500:]}", stacklevel=1)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert complete() >= 3, f"exit {proc.returncode}; the search's stderr: {err.read_text()[-3000:]}"
    before = _pg_study(pg_db, "pg").get_trials()
    assert 3 <= sum(t.state == TrialState.COMPLETE for t in before) < 40
    assert main(["search", "--space", TINY, "--trials", "12", "--workers", "2", "--sampler", "random",
                 "--study", "pg", "--storage", pg_db, "--resume"]) == 0
    study = _pg_study(pg_db, "pg")
    states = [t.state for t in study.get_trials()]
    assert TrialState.RUNNING not in states                                    # nothing left RUNNING
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(complete) == max(12, sum(t.state == TrialState.COMPLETE for t in before))
    kept = {t.number for t in before if t.state == TrialState.COMPLETE}
    assert kept <= {t.number for t in complete}                                # nothing lost
    for t in study.get_trials():                                               # killed designs re-run
        if "coopt.rerun_of" in t.user_attrs:
            assert study.trials[t.user_attrs["coopt.rerun_of"]].params == t.params
    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{run_dir / 'mlruns' / 'mlflow.db'}")
    runs = [r for exp in mlflow.search_experiments() for r in
            mlflow.search_runs([exp.experiment_id], output_format="list")]
    logged = [int(r.data.tags["coopt.trial"]) for r in runs if r.data.tags.get("coopt.study") == "pg"
              and r.data.tags.get("coopt.role") == "trial" and r.info.status == "FINISHED"]
    assert sorted(logged) == sorted(t.number for t in complete)                # nothing twice
    assert all(r.info.status != "RUNNING" for r in runs)
    # the read side from a folder that has no copy of the study: the storage alone answers
    capsys.readouterr()
    assert main(["pareto", "--study", "pg", "--json"]) == 0
    here = json.loads(capsys.readouterr().out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["pareto", "--study", "pg", "--json", "--storage", pg_db]) == 0
    assert json.loads(capsys.readouterr().out) == here
    first = here[0]["trial"]
    assert main(["export", "--study", "pg", "--trial", str(first), "--out", "x", "--storage", pg_db]) == 0
    summary = json.loads((elsewhere / "x" / f"trial-{first}" / "summary.json").read_text())
    assert summary["trial"] == first and summary["params"] == here[0]["params"]
    assert summary["metrics"]["energy_uj"] == pytest.approx(here[0]["metrics"]["energy_uj"])
    assert not (elsewhere / "mlruns").exists()                                 # reading created nothing


# -- an MLflow tracking server on a PostgreSQL backend ----------------------------------------
@pytest.mark.db
@pytest.mark.slow
def test_search_pareto_export_against_an_mlflow_server(pg_db, tmp_path, monkeypatch, capsys):
    import urllib.request
    port = free_port()
    backend = pg_db.replace("postgresql://", "postgresql+psycopg://")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", backend, "--artifacts-destination", str(tmp_path / "art"),
                               "--workers", "1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline and server.poll() is None, "mlflow server did not start"
            time.sleep(0.5)
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)
        assert main(["search", "--space", TINY, "--trials", "3", "--workers", "1", "--sampler", "random",
                     "--study", "srv", "--tracking-uri", uri]) == 0
        assert not (work / "mlruns" / "mlflow.db").exists()                   # the server holds the runs
        from mlflow.tracking import MlflowClient
        client = MlflowClient(uri)
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
                if r.data.tags.get("coopt.study") == "srv"]
        trials = sorted(int(r.data.tags["coopt.trial"]) for r in runs if r.data.tags.get("coopt.role") == "trial")
        assert trials == [0, 1, 2] and all(r.info.status == "FINISHED" for r in runs)
        parent = [r for r in runs if r.data.tags.get("coopt.role") == "parent"][0]
        front_csv = client.download_artifacts(parent.info.run_id, "pareto/front.csv", str(tmp_path))
        listed = sorted(int(line.split(",")[0]) for line in Path(front_csv).read_text().splitlines()[1:])
        capsys.readouterr()
        assert main(["pareto", "--study", "srv", "--json", "--tracking-uri", uri]) == 0
        shown = sorted(d["trial"] for d in json.loads(capsys.readouterr().out))
        assert shown == listed and shown
        assert main(["export", "--study", "srv", "--pareto", "--out", "exp", "--tracking-uri", uri]) == 0
        assert sorted(p.name for p in (work / "exp").glob("trial-*")) == sorted(f"trial-{n}" for n in shown)
        assert (work / "exp" / "index.csv").is_file()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.db
def test_mysql_url_as_users_write_it(mariadb_db, tmp_path, monkeypatch, capsys):
    """mysql:// on the MariaDB server (PyMySQL): a study runs, holds the lease, and reads back."""
    import sqlalchemy as sa
    monkeypatch.chdir(tmp_path)
    url = mariadb_db
    assert main(["search", "--space", TINY, "--trials", "2", "--workers", "1", "--sampler", "random",
                 "--study", "my", "--storage", url]) == 0
    study = _pg_study(url, "my")
    assert sum(t.state.name == "COMPLETE" for t in study.get_trials()) == 2
    from coopt.study.db_lease import LEASE_TABLE
    from coopt.study.storage import normalize_url
    engine = sa.create_engine(normalize_url(url))
    with engine.connect() as c:
        assert c.execute(sa.text(f"SELECT COUNT(*) FROM {LEASE_TABLE}")).scalar() == 0   # the lease was released
    engine.dispose()
    capsys.readouterr()
    assert main(["pareto", "--study", "my", "--storage", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)


# -- real runs at the same time ---------------------------------------------------------------
@pytest.mark.slow
def test_same_study_twice_and_two_studies_on_a_fresh_store(tmp_path, monkeypatch, capsys):
    """Two studies started together on a fresh ./mlruns both finish (the MLflow schema is created once);
    a second run of a running study exits 2 naming it, and fails none of its trials."""
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(name, trials):
        return subprocess.Popen([sys.executable, "-m", "coopt.cli", "search", "--space", TINY, "--trials", str(trials),
                                 "--workers", "1", "--sampler", "random", "--study", name], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    a, b = start("a", 4), start("b", 1)
    lock = tmp_path / "mlruns" / "studies" / "a" / "run.lock"
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.is_file() and lock.read_text()):
        time.sleep(0.2)
    assert main(["search", "--space", TINY, "--trials", "4", "--workers", "1", "--sampler", "random",
                 "--study", "a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pid {a.pid} on {socket.gethostname()}" in err[0]
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0, a.stderr.read() + b.stderr.read()
    import optuna
    from coopt.study.storage import open_storage
    for name, n in (("a", 4), ("b", 1)):
        study = optuna.load_study(study_name=name, storage=open_storage(None, tmp_path / "mlruns" / "studies" / name,
                                                                      create=False))
        assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * n


@pytest.mark.slow
def test_grpc_storage_proxy(grpc_proxy, tmp_path, monkeypatch):
    """grpc://HOST:PORT through Optuna's gRPC storage proxy (serving a sqlite storage)."""
    monkeypatch.chdir(tmp_path)
    url, backend = grpc_proxy
    assert main(["search", "--space", TINY, "--trials", "2", "--workers", "1", "--sampler", "random",
                 "--study", "g", "--storage", url]) == 0
    import optuna
    study = optuna.load_study(study_name="g", storage=backend)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 2
    # the run's lease is left released (one companion study), and the next run takes it without waiting
    assert sorted(optuna.get_all_study_names(backend)) == ["coopt-lease.g@0", "g"]
    assert optuna.load_study(study_name="coopt-lease.g@0", storage=backend).user_attrs["coopt.lease"]["released"]


# -- coopt ui --storage: the study's settings record names the MLflow store -------------------
@pytest.mark.slow
def test_ui_finds_the_tracking_store_in_the_storage(tmp_path, monkeypatch, capsys):
    import urllib.request
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.chdir(runs)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'track' / 'mlflow.db'}"
    assert main(["search", "--space", TINY, "--trials", "1", "--workers", "1", "--sampler", "random",
                 "--study", "u", "--storage", storage, "--tracking-uri", tracking]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    # reading creates nothing: a wrong --storage, or --storage without --study, is one line, exit 2
    assert main(["ui", "--study", "u", "--storage", f"sqlite:///{tmp_path / 'nope.db'}"]) == 2
    assert main(["ui", "--storage", storage]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no study storage" in err[0] and "--study NAME" in err[1]
    assert not (tmp_path / "nope.db").exists() and not (elsewhere / "mlruns").exists()
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "coopt.cli", "ui", "--study", "u", "--storage", storage,
                           "--port", str(port)], cwd=elsewhere, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    try:
        lines = [ui.stdout.readline() for _ in range(3)]        # MLflow, front pages, the study
        assert lines[2].strip().startswith(f"study u: http://127.0.0.1:{port}/#/experiments/"), lines
        experiment = lines[2].split("/experiments/")[1].split("/")[0].split("?")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get?"
                                    f"experiment_id={experiment}", timeout=30) as r:
            exp = json.loads(r.read())["experiment"]
        assert exp["name"] == "coopt/u"                          # the store named in the settings record
        assert not (elsewhere / "mlruns").exists()
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)
