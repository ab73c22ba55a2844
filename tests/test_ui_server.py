"""``coopt ui`` against an MLflow tracking server (the cluster set-up): no local MLflow server is
started, the front pages read the tracking server, and logging over HTTP prints nothing per trial.

A real ``mlflow server`` (sqlite backend) on a free port; real records (tests/test_tracking.py's).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_tracking import OBJECTIVES, REFERENCE, SETTINGS, _health, free_port, get, records  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}",
                             "--artifacts-destination", str(tmp_path / "art"), "--workers", "1"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        deadline = time.monotonic() + 120
        while not _health(port):
            assert time.monotonic() < deadline and proc.poll() is None, "mlflow server did not start"
            time.sleep(0.5)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_ui_reads_a_tracking_server_and_starts_no_mlflow_of_its_own(server, records, tmp_path, monkeypatch,  # noqa: F811
                                                                    capfd):
    from coopt.tracking.mlflow_tracker import StudyTracker
    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{server}"
    t = StudyTracker(uri, "s1", SETTINGS, OBJECTIVES, REFERENCE)
    t.start()
    for rec in records[:3]:
        t.log_trial(rec)
    t.update_front(records[:3], step=3)
    t.finish()
    out = capfd.readouterr()
    assert "View run" not in out.out + out.err and "View experiment" not in out.out + out.err
    ui_port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "coopt.cli", "ui", "--tracking-uri", uri, "--port", str(ui_port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("front page: http://"), lines            # first: the page to open
        assert lines[1].startswith(f"MLflow UI: {uri}"), lines
        assert lines[2].strip().startswith(f"study s1: {uri}/#/experiments/{t.experiment_id}/runs"), lines
        front = lines[0].split("front page: ", 1)[1].split()[0]
        code, page = get(front)                                  # the front page read the tracking server
        assert code == 200 and f"/#/experiments/{t.experiment_id}/runs/{t.trial_runs[1]}".encode() in page
        assert f"{uri}/#/experiments".encode() in page
        assert not _health(ui_port)                              # no MLflow server of coopt's own
        assert not (tmp_path / "mlruns").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_ui_with_a_tracking_server_that_does_not_answer_is_one_line(tmp_path):
    started = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "coopt.cli", "ui", "--tracking-uri", f"http://127.0.0.1:{free_port()}"],
                       cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       timeout=60)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and "no MLflow tracking server answers" in err[0], err
    assert time.monotonic() - started < 10
