"""MLflow tracking against a real sqlite store and real trial records."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from coopt.backends.base import MapperOptions
from coopt.errors import CooptError
from coopt.study.trial import evaluate_design
from coopt.workload.networks import Network, resnet18

OBJECTIVES = [("energy_uj", "minimize"), ("throughput_ips", "maximize")]
REFERENCE = [3000.0, 0.0]
SETTINGS = {"study": "s1", "n_trials": 8, "objectives": OBJECTIVES, "budgets": {"area_mm2": 3.0},
            "seed": 0, "long": "x" * 7000}
SHAPES = [(4, 4), (8, 8), (12, 14), (16, 16), (4, 16), (10, 12), (24, 24)]
T0 = 1_700_000_000.0                  # evaluation wall-clock times given to the first records


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
            rec = evaluate_design(i, p, "eyeriss_like", p, None, net, MapperOptions(budget=200),
                                  {"area_mm2": 3.0}, OBJECTIVES)
            if i < 4:                 # records from before started_at/finished_at existed keep None
                rec = dataclasses.replace(rec, started_at=T0 + 100 * i, finished_at=T0 + 100 * i + 14.25)
            recs.append(rec)
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


def runs(filter_string, status=None, study="s1"):
    c = client()
    exp = c.get_experiment_by_name(f"coopt/{study}")
    out = c.search_runs([exp.experiment_id], filter_string, max_results=1000)
    return [r for r in out if status is None or r.info.status == status]


def children(study="s1"):
    return runs(f"tags.`coopt.study` = '{study}' and tags.`coopt.role` = 'trial'", study=study)


def read_artifact(run_id, path) -> bytes:
    return Path(client().download_artifacts(run_id, path)).read_bytes()


def test_import_does_not_load_mlflow():
    code = ("import sys, coopt, coopt.tracking, coopt.tracking.ui; coopt.tracking.default_tracking_uri(); "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def test_parent_and_trial_runs(store, records):
    from coopt.tracking import default_tracking_uri
    import mlflow

    assert default_tracking_uri() == f"sqlite:///{store.resolve()}/mlruns/mlflow.db"
    space = store / "space.yaml"
    space.write_text("parameters: {pe_rows: {type: int, low: 4, high: 24}, pe_cols: {type: int, low: 4, high: 24}}\n")
    t = tracker(space_file=str(space))
    assert t.start() == set()
    assert (store / "mlruns" / "mlflow.db").is_file() and (store / "mlruns" / "artifacts").is_dir()
    exp = client().get_experiment_by_name("coopt/s1")                      # one experiment per study
    assert Path(exp.artifact_location).parent == store.resolve() / "mlruns" / "artifacts"
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"   # MLflow 3: the runs view
    for rec in records:
        t.log_trial(rec)
    t.finish()

    (parent,) = runs("tags.`coopt.role` = 'parent'")
    assert parent.info.run_name == "s1" and parent.info.status == "FINISHED"
    assert parent.data.tags["coopt.study"] == "s1"
    desc = client().get_experiment(exp.experiment_id).tags["mlflow.note.content"]
    assert f"#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}" in desc and "area (mm²) ≤ 3" in desc
    view = json.loads(exp.tags["mlflow.sharedViewState.coopt-trials"])
    assert view["searchFilter"] == "tags.`coopt.role` = 'trial'" and view["runsHiddenMode"] == "SHOW_ALL"
    assert view["selectedColumns"][:2] == ["metrics.`energy_uj`", "metrics.`throughput_ips`"]
    assert {"params.`pe_rows`", "params.`pe_cols`", "metrics.`headroom_area_mm2`"} <= set(view["selectedColumns"])
    p = parent.data.params
    assert p["n_trials"] == "8" and p["seed"] == "0"
    assert yaml.safe_load(p["budgets"]) == {"area_mm2": 3.0}        # JSON is YAML
    assert len(p["long"]) == 6000
    assert read_artifact(parent.info.run_id, "search_space.yaml") == space.read_bytes()

    df = mlflow.search_runs(experiment_names=["coopt/s1"], filter_string="tags.`coopt.role` = 'trial'")
    assert len(df) == len(records) and set(df["status"]) == {"FINISHED"}
    by_trial = {int(r.data.tags["coopt.trial"]): r for r in children()}
    assert sorted(by_trial) == [r.number for r in records]
    for rec in records:
        run = by_trial[rec.number]
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        rows, cols = rec.params["pe_rows"], rec.params["pe_cols"]
        assert run.info.run_name == f"t{rec.number:03d} {rows}x{cols}"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["coopt.role"] == "trial" and tags["coopt.study"] == "s1"
        assert tags["feasible"] == ("true" if rec.feasible else "false") and tags["pareto"] == "false"
        assert params["pe_rows"] == str(rows) and params["template"] == "eyeriss_like"
        assert params["network"] == "head" and params["dataflow"] == str(rec.dataflow)
        unmapped = rec.metrics["area_mm2"] > 3.0 or bool(rec.violations.get("unmapped_layers"))
        precise = {"energy_uj", "throughput_ips", "area_mm2", "power_mw"}  # what orders a front: 7 digits
        for k, v in rec.metrics.items():
            if unmapped and k not in ("area_mm2", "onchip_kib", "macs", "mac_instances"):
                assert k not in metrics, k                                # placeholders are never metrics
            elif math.isfinite(v):
                exact = float(v).is_integer() and abs(v) >= 1000           # counts (cycles, MACs) stay exact
                assert metrics[k] == (v if exact else sig(v, 7 if k in precise else 4)), k   # others: 4 digits
            else:
                assert k not in metrics
        if unmapped:
            assert "energy_uj" not in metrics and "throughput_ips" not in metrics and tags["not_mapped"]
        assert metrics["feasible"] == (1.0 if rec.feasible else 0.0)
        assert "edp" not in metrics and not any(k.startswith("violation_") for k in metrics)
        assert metrics["headroom_area_mm2"] == sig(3.0 - rec.metrics["area_mm2"])   # > 0: room left
        assert (metrics["headroom_area_mm2"] > 0) == (rec.metrics["area_mm2"] < 3.0)
        # over the area budget: not mapped (no mapping changes area), every layer says so
        assert metrics["unmapped_layers"] == (len(rec.layers) if rec.metrics["area_mm2"] > 3.0 else 0.0)
        if rec.started_at is not None:                                  # the run is timed as the evaluation
            assert run.info.start_time == int(rec.started_at * 1000)
            assert run.info.end_time == int(rec.finished_at * 1000)
            assert metrics["eval_s"] == 14.25
        else:
            assert run.info.end_time - run.info.start_time == pytest.approx(rec.seconds * 1000, abs=2)
    rec = records[1]
    run_id = by_trial[rec.number].info.run_id
    assert yaml.safe_load(read_artifact(run_id, "arch.yaml")) == rec.arch_yaml
    rows = list(csv.DictReader(read_artifact(run_id, "layers.csv").decode().splitlines()))
    assert [r["name"] for r in rows] == [l.name for l in rec.layers]
    assert float(rows[0]["energy_pj"]) == pytest.approx(rec.layers[0].energy_pj)
    assert int(rows[0]["mappings_evaluated"]) == rec.layers[0].mappings_evaluated
    # tables MLflow renders (log_table): per layer, and energy/area per component summing to the totals
    layers = json.loads(read_artifact(run_id, "tables/layers.json"))
    assert [r[0] for r in layers["data"]] == [l.name for l in rec.layers]
    parts = json.loads(read_artifact(run_id, "tables/breakdown.json"))
    cols = parts["columns"]
    comp = [dict(zip(cols, r)) for r in parts["data"]]
    assert comp[0]["component"] == "DRAM" and comp[-1]["component"] == "mac"
    assert sum(c["energy_uj"] for c in comp) == pytest.approx(rec.metrics["energy_uj"], rel=2e-3)
    assert sum(c["area_mm2"] for c in comp) == pytest.approx(rec.metrics["area_mm2"], rel=2e-3)
    assert sum(c["energy_pct"] for c in comp) == pytest.approx(100, abs=0.5)


def brute_force_hypervolume(points, reference) -> float:
    """2-D hypervolume (energy minimised, throughput maximised) as a union of grid cells: no shared code."""
    rx, ry = reference
    pts = [(x, y) for x, y in points if x < rx and y > ry]
    xs = sorted({x for x, _ in pts} | {rx})
    ys = sorted({y for _, y in pts} | {ry})
    area = 0.0
    for x0, x1 in zip(xs, xs[1:]):
        for y0, y1 in zip(ys, ys[1:]):
            if any(px <= x0 and py >= y1 for px, py in pts):          # the cell lies in some point's box
                area += (x1 - x0) * (y1 - y0)
    return area


def brute_force_front(recs) -> set[int]:
    """Feasible records nothing beats; of records with the same energy and throughput only the one with the
    least area (then power, then trial number) counts."""
    feas = [r for r in recs if r.feasible]
    e = lambda r: r.metrics["energy_uj"]                                  # noqa: E731
    t = lambda r: r.metrics["throughput_ips"]                             # noqa: E731
    rank = lambda r: (r.metrics["area_mm2"], r.metrics["power_mw"], r.number)   # noqa: E731
    return {r.number for r in feas
            if not any(e(o) <= e(r) and t(o) >= t(r) and (e(o) < e(r) or t(o) > t(r)) for o in feas)
            and not any(e(o) == e(r) and t(o) == t(r) and rank(o) < rank(r) for o in feas)}


def test_ties_are_one_front_entry(records):
    """Designs with identical objectives (extra PE columns that buy nothing) are one entry: the least area."""
    from coopt.study.front import front_equivalents, pareto_front

    key = lambda r: (r.metrics["energy_uj"], r.metrics["throughput_ips"])    # noqa: E731
    tied = [r for r in records if r.feasible and any(o is not r and o.feasible and key(o) == key(r) for o in records)]
    assert tied, "the records hold designs with identical objectives"
    front = pareto_front(records, OBJECTIVES)
    assert {r.number for r in front} == brute_force_front(records)
    same = front_equivalents(records, OBJECTIVES)
    for r in front:
        twins = [o.number for o in records if o.feasible and o is not r and
                 (o.metrics["energy_uj"], o.metrics["throughput_ips"]) == (r.metrics["energy_uj"],
                                                                         r.metrics["throughput_ips"])]
        assert same[r.number] == sorted(twins)
        assert all(o.metrics["area_mm2"] >= r.metrics["area_mm2"] for o in records if o.number in twins)


def test_front_updates_tags_and_artifacts(store, records):
    t = tracker()
    t.start()
    for rec in records:
        t.log_trial(rec)
    calls, drawn = [], []
    set_tag, log_artifacts = t.client.set_tag, t.client.log_artifacts
    t.client.set_tag = lambda *a, **k: (calls.append(a), set_tag(*a, **k))[1]
    t.client.log_artifacts = lambda *a, **k: (drawn.append(a), log_artifacts(*a, **k))[1]
    retags = lambda: [c for c in calls if c[1] == "pareto"]             # noqa: E731

    first, second = records[:1], records          # (records 4 and 5 tie with 0 and 1: the front of [:3] stays)
    res1 = t.update_front(first, step=1)
    front1 = res1["front"]
    assert set(front1) == brute_force_front(first) and res1["front_size"] == len(front1)
    assert len(retags()) == len(front1)                                  # only the new members were re-tagged
    res2 = t.update_front(second, step=2)
    front2 = res2["front"]
    assert set(front2) == brute_force_front(second) and front2 != front1
    pts = [(r.metrics["energy_uj"], r.metrics["throughput_ips"]) for r in second if r.number in front2]
    assert res2["hypervolume"] == pytest.approx(brute_force_hypervolume(pts, REFERENCE), rel=1e-9)
    assert len(retags()) == len(front1) + len(set(front1) ^ set(front2))
    assert len(drawn) == 2                                               # plots drawn once per front
    t.update_front(second, step=3)
    assert len(retags()) == len(front1) + len(set(front1) ^ set(front2))    # nothing changed, nothing touched
    assert len(drawn) == 2                                               # not redrawn on a timer

    tags = {int(r.data.tags["coopt.trial"]): r.data.tags["pareto"] for r in children()}
    assert {n for n, v in tags.items() if v == "true"} == set(front2)
    assert set(tags.values()) <= {"true", "false"}

    (parent,) = runs("tags.`coopt.role` = 'parent'")
    pid = parent.info.run_id
    hv = {m.step: m.value for m in client().get_metric_history(pid, "hypervolume")}
    pts1 = [(r.metrics["energy_uj"], r.metrics["throughput_ips"]) for r in first if r.number in front1]
    assert hv[1] == pytest.approx(brute_force_hypervolume(pts1, REFERENCE), rel=1e-6)    # 7 digits shown
    assert hv[2] == pytest.approx(brute_force_hypervolume(pts, REFERENCE), rel=1e-6) and hv[2] >= hv[1] > 0
    assert hv[2] == float(f"{hv[2]:.7g}")                                                  # not 714173.6978536327
    sizes = {m.step: m.value for m in client().get_metric_history(pid, "front_size")}
    assert sizes == {1: len(front1), 2: len(front2), 3: len(front2)}
    assert parent.data.metrics["trials"] == len(second)
    assert parent.data.metrics["feasible_trials"] == sum(r.feasible for r in second)

    # the study run's description lists the front, each trial linked to its run
    note = parent.data.tags["mlflow.note.content"]
    exp_id = t.experiment_id
    run_ids = {int(r.data.tags["coopt.trial"]): r.info.run_id for r in children()}
    for n, rid in run_ids.items():
        assert (f"(#/experiments/{exp_id}/runs/{rid}?workflowType=machine_learning)" in note) == (n in front2), n
    assert f"{len(second)} trials, {sum(r.feasible for r in second)} feasible" in note
    assert f"**{len(front2)} designs on the front**" in note
    assert "the front page that `coopt ui` prints first" in note               # where the clickable plot is
    assert "PORT" not in note                                                    # no placeholder in text
    shown_hv = note.split("(hypervolume ", 1)[1].split(")")[0]                  # for people: 4 digits, commas
    assert float(shown_hv.replace(",", "")) == pytest.approx(hv[2], rel=1e-3) and len(shown_hv.strip("0,.")) <= 6

    rows = list(csv.DictReader(read_artifact(pid, "pareto/front.csv").decode().splitlines()))
    assert [int(r["trial"]) for r in rows] == front2
    assert {"pe_rows", "pe_cols", "energy_uj", "throughput_ips", "area_mm2"} <= set(rows[0])
    png = read_artifact(pid, "pareto/front.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    html = read_artifact(pid, "pareto/front.html").decode()
    assert len(html) < 200_000 and "cdn.plot.ly" in html               # plotly.js from the CDN, not inlined
    assert f"t{front2[0]:03d}" in html and "pe_rows" in html           # hover text


def test_resume(store, records):
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
    assert client().get_run(left.info.run_id).info.lifecycle_stage == "deleted"   # half-logged: replaced
    assert client().get_run(t2.parent_id).info.status == "RUNNING"
    assert len(runs("tags.`coopt.role` = 'parent'")) == 1                 # one study run per experiment
    assert len(runs("tags.`coopt.role` = 'parent'", study="s2")) == 1

    t2.log_trial(records[0])                                       # already logged: no duplicate
    t2.log_trial(records[3])                                       # killed before: logged afresh
    t1.log_trial(records[4])
    t2.log_trial(records[4])                                       # logged by another tracker meanwhile
    finished = [int(r.data.tags["coopt.trial"]) for r in children() if r.info.status == "FINISHED"]
    assert sorted(finished) == [0, 1, 2, 3, 4]
    assert len(children()) == 5                                     # one run per trial (issue 20)
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


def test_ui_port_checks(store, records, capsys):
    """A busy or invalid port fails at once, in one line, exit 2 (no server started)."""
    from coopt.cli import main

    t = tracker()
    t.start()
    t.finish()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert err == f"coopt ui: error: --port: port {port} on 127.0.0.1 is already in use " \
                      f"(expected a free port, e.g. --port 5001)\n"
    for bad in ("99999", "0"):
        assert main(["ui", "--port", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--port: {bad} is out of range" in err
    assert main(["ui", "--port", str(free_port()), "--study", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no study 'nope' in the MLflow store" in err and "(expected one of: s1)" in err


def _health(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/health")[0] == 200
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_ui_server_serves_the_store(store, records, how):
    """`coopt ui` prints the study's URL once the server answers; the server never outlives it,
    whether it gets a SIGTERM or a SIGKILL (then the watchdog's parent-death signal stops it)."""
    import os
    import signal

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
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and "front page:" not in (store / "ui.log").read_text():
            time.sleep(0.3)
        out = (store / "ui.log").read_text()
        url = (f"http://127.0.0.1:{port}/#/experiments/{t.experiment_id}/runs?viewStateShareKey=coopt-trials"
               "&workflowType=machine_learning")                  # MLflow's classic mode, not GenAI
        assert f"study s1: {url}" in out, out
        assert _health(port)                                  # printed only once the server answers
        code, body = get(f"http://127.0.0.1:{port}/get-artifact?path=pareto/front.csv&run_uuid={t.parent_id}")
        assert code == 200 and body.startswith(b"trial,")
        front = out.split("front page: ", 1)[1].split()[0]
        assert front.startswith("http://127.0.0.1:") and front.endswith("/study/s1")
        code, page = get(front)
        assert code == 200 and f"/#/experiments/{t.experiment_id}/runs/{t.trial_runs[1]}".encode() in page
        proc.send_signal(getattr(signal, how))                # what `timeout`, a service manager or kill -9 sends
        proc.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _health(port):
            time.sleep(0.3)
        assert not _health(port), f"the MLflow server outlived `coopt ui` ({how})"
        with pytest.raises(OSError):                          # the front pages ended with coopt ui
            get(front)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()


class _Links(HTMLParser):
    """The page's links: (class, href, data-trial) of the plot's points; hrefs of the front table."""

    def __init__(self):
        super().__init__()
        self.points, self.table, self._in_table = [], [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "front-table":
            self._in_table = True
        elif tag == "a" and "trial" in (a.get("class") or "").split():
            self.points.append((a["class"].split(), a["href"], int(a["data-trial"])))
        elif tag == "a" and self._in_table:
            self.table.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False


def front_links(html_text: str) -> _Links:
    parser = _Links()
    parser.feed(html_text)
    return parser


def test_front_page_links_each_point_to_its_run(store, records):
    """The front page's plot: every logged trial a point; the front's points (and table rows) link to exactly
    the runs of the front computed here by brute force; it follows the study (version changes)."""
    from coopt.tracking.front_page import FrontServer

    t = tracker()
    t.start()
    for rec in records[:5]:
        t.log_trial(rec)
    t.update_front(records[:5], step=5)
    base = "http://127.0.0.1:5999"
    server = FrontServer(t.tracking_uri, base).start()
    try:
        assert server.base.startswith("http://127.0.0.1:") and server.port != 5999
        with urllib.request.urlopen(server.base + "/", timeout=10) as r:        # one study: / is its page
            assert r.url == server.url("s1")
            page = r.read().decode()
        links = front_links(page)
        run_of = {int(r.data.tags["coopt.trial"]): r.info.run_id for r in children()}
        expected = brute_force_front(records[:5])
        unmapped = {r.number for r in records[:5] if r.metrics["area_mm2"] > 3.0}     # over the area budget
        assert unmapped and {n for _, _, n in links.points} == set(range(5)) - unmapped   # placeholders not drawn
        assert f"not drawn): {len(unmapped)}" in page                               # but counted
        front = {n: href for cls, href, n in links.points if "front" in cls}
        assert set(front) == expected
        for n, href in front.items():
            assert href == f"{base}/#/experiments/{t.experiment_id}/runs/{run_of[n]}?workflowType=machine_learning"
        assert sorted(links.table) == sorted(front.values())
        assert f"{len(expected)} designs on the front" in page
        assert "<td>t004</td>" in page                    # 4x16 ties with 4x4 (t000): listed as its equivalent
        version = get(server.url("s1") + "/version")[1].decode()
        assert f'const version = "{version}"' in page
        for rec in records[5:]:                                                   # the study moves on
            t.log_trial(rec)
        t.update_front(records, step=len(records))
        assert get(server.url("s1") + "/version")[1].decode() != version
        links = front_links(get(server.url("s1"))[1].decode())
        assert {n for cls, _, n in links.points if "front" in cls} == brute_force_front(records)
        with pytest.raises(urllib.error.HTTPError, match="404"):
            get(server.base + "/study/nope")
    finally:
        server.close()
    with pytest.raises(OSError):
        get(server.base + "/")


def test_front_page_polls_read_the_trial_runs_only_when_the_study_changed(store, records):
    """Open pages poll every 3 s: a poll reads the study run alone; all trial runs are read again only
    after a trial is logged or the front moves (counted on the real MLflow client's searches)."""
    from coopt.tracking.front_page import FrontServer

    t = tracker()
    t.start()
    for rec in records[:4]:
        t.log_trial(rec)
    t.update_front(records[:4], step=4)
    server = FrontServer(t.tracking_uri, "http://127.0.0.1:5999").start()
    searches = []
    search_runs = server.client.search_runs

    def counted(experiment_ids, filter_string="", *args, **kw):
        searches.append("trial" if "'trial'" in filter_string else "other")
        return search_runs(experiment_ids, filter_string, *args, **kw)
    server.client.search_runs = counted
    try:
        page = get(server.url("s1"))[1].decode()
        assert searches.count("trial") == 1 and "4 trials" in page
        version = get(server.url("s1") + "/version")[1].decode()
        for _ in range(5):
            assert get(server.url("s1") + "/version")[1].decode() == version
        get(server.url("s1"))
        assert searches.count("trial") == 1                       # nothing changed: no trial run read again
        t.log_trial(records[4])
        t.update_front(records[:5], step=5)
        assert get(server.url("s1") + "/version")[1].decode() != version
        assert searches.count("trial") == 2
        links = front_links(get(server.url("s1"))[1].decode())
        assert {n for cls, _, n in links.points if "front" in cls} == brute_force_front(records[:5])
        assert searches.count("trial") == 2
    finally:
        server.close()


def test_ui_on_an_old_store_says_what_to_do(store, capsys):
    from coopt.cli import main

    from legacy_store import make_legacy_store

    make_legacy_store(client(), "old", 3)
    capsys.readouterr()                                               # MLflow's own lines creating the store
    assert main(["ui", "--study", "old", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shared experiment 'coopt'" in err
    assert "coopt search --study old --space SPACE.yaml --sampler random --trials 3, then coopt ui again" in err
    from coopt.tracking.ui import legacy_studies

    assert legacy_studies(None) == {"old": {"trials": 3, "sampler": "random", "storage": "None",
                                            "space_file": "SPACE.yaml"}}
    tracker("old").start()                                            # logged again, into coopt/old
    assert legacy_studies(None) == {}


def test_front_port_checks(store, records, capsys):
    from coopt.cli import main

    t = tracker()
    t.start()
    t.finish()
    port = free_port()
    assert main(["ui", "--port", str(port), "--front-port", str(port)]) == 2
    assert "--front-port" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert main(["ui", "--port", str(free_port()), "--front-port", str(taken)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--front-port: port {taken} on 127.0.0.1 is already in use" in err


def test_dashboard_mirror_names_objectives_and_user_units(tmp_path):
    """The dashboard's mirror: objective names with units, pow2 parameters as the values the user chose."""
    import optuna
    from optuna.trial import TrialState

    from coopt.study.space import load_space
    from coopt.tracking.dashboard import StudyMirror

    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "tiny.yaml")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    source = optuna.create_study(study_name="m", directions=[d for _, d in space.objectives],
                                 sampler=optuna.samplers.RandomSampler(seed=1))
    chosen = []
    for _ in range(4):
        trial = source.ask()
        chosen.append(space.suggest(trial))
        source.tell(trial, [1.0, 2.0, 3.0])
    running = source.ask()                                           # not finished: not mirrored yet
    space.suggest(running)
    mirror = StudyMirror(source, space, space.objectives)
    assert mirror.sync() == 4 and mirror.sync() == 0
    assert mirror.study.metric_names == ["energy / inference (µJ)", "throughput (inferences/s)", "area (mm²)"]
    trials = mirror.study.get_trials()
    assert [t.params for t in trials] == chosen                      # glb_depth 2048, not log2_glb_depth 11
    assert all("log2_glb_depth" not in t.params and t.params["glb_depth"] in (1024, 2048, 4096, 8192)
               for t in trials)
    source.tell(running, state=TrialState.FAIL)
    assert mirror.sync() == 1 and source.get_trials()[-1].params["log2_glb_depth"] == \
        mirror.study.get_trials()[-1].params["glb_depth"].bit_length() - 1


def test_numbers_for_people():
    from coopt.numbers import energy, fmt, round_sig

    assert fmt(12341.816315185482) == "12,340" and fmt(0.0341234) == "0.03412" and fmt(36277248) == "36,277,248"
    assert fmt(2.5e-5) == "2.500e-05" and fmt(float("inf")) == "n/a" and fmt(None) == "–" and fmt(True) == "yes"
    assert energy(2.94896e8) == "294.9 µJ" and energy(1234.0) == "1.234 nJ" and energy(5.0) == "5 pJ"
    assert round_sig(36277248.0) == 36277248.0 and round_sig(0.123456) == 0.1235


def test_dashboard_errors_are_one_line(store, capsys):
    from coopt.cli import main

    assert main(["dashboard", "--study", "nope", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no study 'nope'" in err and "run coopt search first" in err
    assert main(["dashboard", "--study", "nope", "--port", "70000"]) == 2
    assert "--port: 70000 is out of range" in capsys.readouterr().err
