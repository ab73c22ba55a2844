"""Exactly one MLflow run per trial, however often the driver is killed while it logs.

A child process plays the driver's MLflow side (``StudyTracker.start`` then ``log_trial`` of every
record, as ``coopt search`` does on a resume) and is killed with SIGKILL ten times, each time at a
seeded random moment inside ``log_trial``; then a last run finishes the logging.  A real sqlite MLflow
store, real records (tests/test_tracking.py's).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coopt.study.front import is_mapped
from test_tracking import OBJECTIVES, REFERENCE, SETTINGS, records  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

DRIVER = r"""
import json, sys
from coopt.study.records import TrialRecord
from coopt.tracking.mlflow_tracker import StudyTracker
uri, recs, settings = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
t = StudyTracker(uri, "k", settings["settings"], settings["objectives"], settings["reference"])
logged = t.start()
for d in recs:
    rec = TrialRecord.from_json(d)
    if rec.number in logged:
        continue
    print(f"logging {rec.number}", flush=True)
    t.log_trial(rec)
t.finish()
print("done", flush=True)
"""


def test_driver_killed_ten_times_while_logging_leaves_one_run_per_trial(records, tmp_path):  # noqa: F811
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recs = [r.to_json() for r in records]
    (tmp_path / "recs.json").write_text(json.dumps(recs))
    (tmp_path / "settings.json").write_text(json.dumps({"settings": SETTINGS, "objectives": OBJECTIVES,
                                                        "reference": REFERENCE}))
    argv = [sys.executable, "-c", DRIVER, uri, str(tmp_path / "recs.json"), str(tmp_path / "settings.json")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(20)
    kills = 0
    # the records cycle: each kill lands in some trial's logging; the store is re-read by every start
    while kills < 10:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        line = proc.stdout.readline()
        if not line.startswith("logging"):            # everything was logged: start again from nothing logged
            proc.wait()
            client = MlflowClient(uri)
            exp = client.get_experiment_by_name("coopt/k")
            for run in client.search_runs([exp.experiment_id], "tags.`coopt.role` = 'trial'"):
                client.delete_run(run.info.run_id)
            continue
        time.sleep(rng.uniform(0.0, 0.25))              # inside log_trial: create, params, artifacts, tables
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("done"), done.stderr[-2000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("coopt/k")
    runs = client.search_runs([exp.experiment_id], "tags.`coopt.role` = 'trial'", max_results=1000)
    numbers = sorted(int(r.data.tags["coopt.trial"]) for r in runs)
    assert numbers == sorted(r.number for r in records)                        # one run per trial
    assert all(r.info.status == "FINISHED" for r in runs)
    mapped = {rec.number for rec in records if is_mapped(rec)}
    assert mapped and len(mapped) < len(records)          # both kinds of run are logged
    for r in runs:                                        # each complete (an unmapped design has no objectives)
        objectives = {"energy_uj", "throughput_ips"} & set(r.data.metrics)
        if int(r.data.tags["coopt.trial"]) in mapped:
            assert objectives == {"energy_uj", "throughput_ips"}
        else:
            assert not objectives and r.data.tags.get("not_mapped")
        assert {a.path for a in client.list_artifacts(r.info.run_id)} >= {"arch.yaml", "layers.csv"}
    parents = client.search_runs([exp.experiment_id], "tags.`coopt.role` = 'parent'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
