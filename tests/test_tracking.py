"""MLflow tracking against a real sqlite store and real trial records."""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from coopt.backends.base import MapperOptions
from coopt.errors import CooptError
from coopt.study.front import front_hypervolume, pareto_front
from coopt.study.trial import evaluate_design
from coopt.workload.networks import Network, resnet18

OBJECTIVES = [("energy_uj", "minimize"), ("throughput_ips", "maximize")]
REFERENCE = [3000.0, 0.0]
SETTINGS = {"study": "s1", "n_trials": 8, "objectives": OBJECTIVES, "budgets": {"area_mm2": 3.0},
            "seed": 0, "long": "x" * 7000}
SHAPES = [(4, 4), (8, 8), (12, 14), (16, 16), (4, 16), (10, 12), (24, 24)]


@pytest.fixture(scope="module")
def records():
    net = Network("head", resnet18().layers[:2])
    recs = []
    # The fronts below were laid out on the built-in energy/area tables (the 3 mm^2 budget
    # cuts between those areas), so these records are made with them, whatever the default.
    saved = os.environ.get("COOPT_ENERGY")
    os.environ["COOPT_ENERGY"] = "builtin"
    try:
        for i, (r, c) in enumerate(SHAPES):
            p = {"pe_rows": r, "pe_cols": c}
            recs.append(evaluate_design(i, p, "eyeriss_like", p, None, net, MapperOptions(budget=200),
                                        {"area_mm2": 3.0}, OBJECTIVES))
    finally:
        if saved is None:
            os.environ.pop("COOPT_ENERGY")
        else:
            os.environ["COOPT_ENERGY"] = saved
    # what an unmappable design leaves: non-finite metrics that MLflow must not see
    bad = dataclasses.replace(recs[0], number=len(recs), feasible=False,
                              metrics={**recs[0].metrics, "latency_ms": math.inf, "edp_uj_ms": math.nan})
    return recs + [bad]


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tracker(name="s1", settings=SETTINGS, space_file=None):
    from coopt.tracking import StudyTracker
    return StudyTracker(None, name, settings, OBJECTIVES, REFERENCE, space_file=space_file)


def client():
    from mlflow.tracking import MlflowClient
    from coopt.tracking import default_tracking_uri
    return MlflowClient(default_tracking_uri())


def runs(filter_string, status=None):
    c = client()
    exp = c.get_experiment_by_name("coopt")
    out = c.search_runs([exp.experiment_id], filter_string, max_results=1000)
    return [r for r in out if status is None or r.info.status == status]


def children(study="s1"):
    return runs(f"tags.`coopt.study` = '{study}' and tags.`coopt.role` = 'trial'")


def read_artifact(run_id, path) -> bytes:
    return Path(client().download_artifacts(run_id, path)).read_bytes()


def test_import_does_not_load_mlflow():
    code = ("import sys, coopt, coopt.tracking, coopt.tracking.ui; coopt.tracking.default_tracking_uri(); "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parent_and_trial_runs(store, records):
    from coopt.tracking import default_tracking_uri
    import mlflow

    assert default_tracking_uri() == f"sqlite:///{store.resolve()}/mlruns/mlflow.db"
    space = store / "space.yaml"
    space.write_text("pe_rows: [4, 8, 16]\n")
    t = tracker(space_file=str(space))
    assert t.start() == set()
    assert (store / "mlruns" / "mlflow.db").is_file() and (store / "mlruns" / "artifacts").is_dir()
    exp = client().get_experiment_by_name("coopt")
    assert Path(exp.artifact_location) == store.resolve() / "mlruns" / "artifacts"
    for rec in records:
        t.log_trial(rec)
    t.finish()

    (parent,) = runs("tags.`coopt.role` = 'parent'")
    assert parent.info.run_name == "s1" and parent.info.status == "FINISHED"
    assert parent.data.tags["coopt.study"] == "s1"
    p = parent.data.params
    assert p["n_trials"] == "8" and p["seed"] == "0"
    assert yaml.safe_load(p["budgets"]) == {"area_mm2": 3.0}        # JSON is YAML
    assert len(p["long"]) == 6000
    assert read_artifact(parent.info.run_id, "search_space.yaml") == space.read_bytes()

    df = mlflow.search_runs(experiment_names=["coopt"], filter_string="tags.`coopt.role` = 'trial'")
    assert len(df) == len(records) and set(df["status"]) == {"FINISHED"}
    by_trial = {int(r.data.tags["coopt.trial"]): r for r in children()}
    assert sorted(by_trial) == [r.number for r in records]
    for rec in records:
        run = by_trial[rec.number]
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.run_name == f"trial-{rec.number}"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["coopt.role"] == "trial" and tags["coopt.study"] == "s1"
        assert tags["feasible"] == ("true" if rec.feasible else "false") and tags["pareto"] == "false"
        assert params["pe_rows"] == str(rec.params["pe_rows"]) and params["template"] == "eyeriss_like"
        assert params["network"] == "head" and params["dataflow"] == str(rec.dataflow)
        for k, v in rec.metrics.items():
            if math.isfinite(v):
                assert metrics[k] == pytest.approx(v)
            else:
                assert k not in metrics
        assert metrics["feasible"] == (1.0 if rec.feasible else 0.0)
        if "edp_uj_ms" in metrics:
            assert metrics["edp"] == metrics["edp_uj_ms"]
        assert metrics["violation_area_mm2"] == pytest.approx(rec.violations["area_mm2"])
        assert metrics["violation_unmapped_layers"] == 0.0
    rec = records[1]
    run_id = by_trial[rec.number].info.run_id
    assert yaml.safe_load(read_artifact(run_id, "arch.yaml")) == rec.arch_yaml
    rows = list(csv.DictReader(read_artifact(run_id, "layers.csv").decode().splitlines()))
    assert [r["name"] for r in rows] == [l.name for l in rec.layers]
    assert float(rows[0]["energy_pj"]) == pytest.approx(rec.layers[0].energy_pj)
    assert int(rows[0]["mappings_evaluated"]) == rec.layers[0].mappings_evaluated


def test_front_updates_tags_and_artifacts(store, records):
    t = tracker()
    t.start()
    for rec in records:
        t.log_trial(rec)
    calls = []
    set_tag = t.client.set_tag
    t.client.set_tag = lambda *a, **k: (calls.append(a), set_tag(*a, **k))[1]

    first, second = records[:3], records
    res1 = t.update_front(first, step=1)
    front1 = [r.number for r in pareto_front(first, OBJECTIVES)]
    assert res1["front"] == front1 and res1["front_size"] == len(front1)
    assert len(calls) == len(front1)                       # only the new members were re-tagged
    res2 = t.update_front(second, step=2)
    front2 = [r.number for r in pareto_front(second, OBJECTIVES)]
    assert front2 != front1 and res2["front"] == front2
    assert res2["hypervolume"] == pytest.approx(front_hypervolume(second, OBJECTIVES, REFERENCE))
    assert len(calls) == len(front1) + len(set(front1) ^ set(front2))
    t.update_front(second, step=3)
    assert len(calls) == len(front1) + len(set(front1) ^ set(front2))    # nothing changed, nothing touched

    tags = {int(r.data.tags["coopt.trial"]): r.data.tags["pareto"] for r in children()}
    assert {n for n, v in tags.items() if v == "true"} == set(front2)
    assert set(tags.values()) <= {"true", "false"}

    (parent,) = runs("tags.`coopt.role` = 'parent'")
    pid = parent.info.run_id
    hv = {m.step: m.value for m in client().get_metric_history(pid, "hypervolume")}
    assert hv[1] == pytest.approx(front_hypervolume(first, OBJECTIVES, REFERENCE))
    assert hv[2] == pytest.approx(front_hypervolume(second, OBJECTIVES, REFERENCE)) and hv[2] > 0
    sizes = {m.step: m.value for m in client().get_metric_history(pid, "front_size")}
    assert sizes == {1: len(front1), 2: len(front2), 3: len(front2)}
    assert parent.data.metrics["trials"] == len(second)
    assert parent.data.metrics["feasible_trials"] == sum(r.feasible for r in second)

    rows = list(csv.DictReader(read_artifact(pid, "pareto/front.csv").decode().splitlines()))
    assert [int(r["trial"]) for r in rows] == front2
    assert {"pe_rows", "pe_cols", "energy_uj", "throughput_ips", "area_mm2"} <= set(rows[0])
    png = read_artifact(pid, "pareto/front.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    html = read_artifact(pid, "pareto/front.html").decode()
    assert "plotly" in html and len(html) > 1_000_000              # plotly.js inlined: works offline
    assert f"trial {front2[0]}" in html and "pe_rows" in html     # hover text
    assert '<script src="http' not in html                          # nothing fetched from a CDN


def test_resume(store, records):
    from mlflow.entities import RunStatus

    t1 = tracker()
    t1.start()
    for rec in records[:3]:
        t1.log_trial(rec)
    # a trial run a killed process left RUNNING
    left = client().create_run(t1.experiment_id, run_name="trial-3", tags={
        "mlflow.parentRunId": t1.parent_id, "coopt.study": "s1", "coopt.role": "trial", "coopt.trial": "3"})
    assert left.info.status == "RUNNING"
    # another study in the same store is left alone
    other = tracker("s2")
    other.start()
    other.log_trial(records[0])

    t2 = tracker(settings={**SETTINGS, "n_trials": 50})            # changed settings do not break a resume
    assert t2.start() == {0, 1, 2}
    assert t2.parent_id == t1.parent_id
    assert client().get_run(left.info.run_id).info.status == RunStatus.to_string(RunStatus.KILLED)
    assert client().get_run(t2.parent_id).info.status == "RUNNING"
    assert len(runs("tags.`coopt.role` = 'parent'")) == 2

    t2.log_trial(records[0])                                       # already logged: no duplicate
    t2.log_trial(records[3])                                       # killed before: logged afresh
    t1.log_trial(records[4])
    t2.log_trial(records[4])                                       # logged by another tracker meanwhile
    finished = [int(r.data.tags["coopt.trial"]) for r in children() if r.info.status == "FINISHED"]
    assert sorted(finished) == [0, 1, 2, 3, 4]
    assert len(children()) == 6                                     # + the KILLED one
    assert tracker().start() == {0, 1, 2, 3, 4}
    t2.finish("FAILED")
    assert client().get_run(t2.parent_id).info.status == "FAILED"
    assert len(children("s2")) == 1


def test_ui_command_and_missing_store(store):
    from coopt.tracking import launch_ui
    from coopt.tracking.ui import ui_command

    cmd = ui_command(None, port=5123)
    assert cmd[:3] == [sys.executable, "-m", "mlflow"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5123"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{store.resolve()}/mlruns/mlflow.db"
    assert Path(cmd[cmd.index("--default-artifact-root") + 1]) == store.resolve() / "mlruns" / "artifacts"
    with pytest.raises(CooptError, match="no studies here yet.*mlflow.db"):
        launch_ui(None, port=5123)
    rel = ui_command("sqlite:///db/x.db", port=5000)                # a relative sqlite path, made absolute
    assert rel[rel.index("--backend-store-uri") + 1] == f"sqlite:///{store.resolve()}/db/x.db"
    assert Path(rel[rel.index("--default-artifact-root") + 1]) == store.resolve() / "db" / "artifacts"
    with pytest.raises(CooptError, match="run coopt search first"):
        launch_ui("sqlite:///db/x.db")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def test_ui_server_serves_the_store(store, records):
    """`coopt ui` serves the store; a SIGTERM stops the server and every process it started."""
    import os
    import signal
    import sys

    t = tracker()
    t.start()
    t.log_trial(records[1])
    t.update_front(records[:2], step=1)
    t.finish()
    port = free_port()
    log = open(store / "ui.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "coopt.cli", "ui", "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _ = get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                time.sleep(0.3)
        assert status == 200, (store / "ui.log").read_text()
        code, body = get(f"http://127.0.0.1:{port}/get-artifact?path=pareto/front.csv&run_uuid={t.parent_id}")
        assert code == 200 and body.startswith(b"trial,")
        proc.send_signal(signal.SIGTERM)                      # what `timeout` or a service manager sends
        proc.wait(30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                get(f"http://127.0.0.1:{port}/")
                time.sleep(0.3)
            except OSError:
                break
        else:
            raise AssertionError("the MLflow server outlived `coopt ui`")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
