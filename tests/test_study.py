"""Studies end to end with the real parts: a local Ray cluster, a sqlite MLflow store, files.

Covers a small study (runs, metrics, front artifact vs Optuna's best_trials,
export re-evaluating to the logged numbers), a search process killed with
SIGKILL and resumed (nothing lost, nothing logged twice, no run left RUNNING),
and a Ray actor dying mid-trial (the trial is failed, its design re-run, the
study completes).
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coopt.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]      # every test here runs a real local Ray cluster

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "search_spaces" / "tiny.yaml")


def _study(name):
    import optuna

    from coopt.study.runner import study_dir
    from coopt.study.storage import open_storage
    return optuna.load_study(study_name=name, storage=open_storage(None, study_dir(name), create=False))


def _runs():
    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}")
    return mlflow.search_runs(search_all_experiments=True, output_format="list")    # one experiment per study


def _children(runs, study):
    return [r for r in runs if r.data.tags.get("coopt.study") == study and r.data.tags.get("coopt.role") == "trial"]


def test_small_study_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", TINY, "--trials", "6", "--workers", "2", "--sampler", "random",
                 "--study", "e2e", "--seed", "3", "--json"]) == 0
    from optuna.trial import TrialState
    study = _study("e2e")
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    runs = _runs()
    parent = [r for r in runs if r.data.tags.get("coopt.role") == "parent"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert {"front_size", "hypervolume"} <= set(parent[0].data.metrics)
    children = _children(runs, "e2e")
    assert sorted(int(r.data.tags["coopt.trial"]) for r in children) == sorted(t.number for t in complete)
    for r in children:
        assert r.info.status == "FINISHED"
        assert {"area_mm2", "feasible"} <= set(r.data.metrics)
        objectives = {"energy_uj", "throughput_ips", "power_mw"} & set(r.data.metrics)
        if r.data.tags.get("not_mapped"):          # an unmapped design: no placeholder becomes a metric
            assert not objectives
        else:
            assert objectives == {"energy_uj", "throughput_ips", "power_mw"}
        assert {"pe_rows", "pe_cols", "glb_depth", "word_bits"} <= set(r.data.params)
    # the front artifact is Optuna's feasible Pareto front
    import mlflow
    local = mlflow.artifacts.download_artifacts(run_id=parent[0].info.run_id, artifact_path="pareto/front.csv",
                                                dst_path=str(tmp_path / "dl"))
    with open(local) as f:
        front_csv = sorted(int(row["trial"]) for row in csv.DictReader(f))
    assert front_csv == sorted(t.number for t in study.best_trials)
    tags = {int(r.data.tags["coopt.trial"]): r.data.tags["pareto"] for r in children}
    assert {n for n, v in tags.items() if v == "true"} == set(front_csv)
    # pareto and export: the exported files re-evaluate to the logged numbers
    capsys.readouterr()
    assert main(["pareto", "--study", "e2e", "--json"]) == 0
    import json
    shown = json.loads(capsys.readouterr().out)
    assert {d["trial"] for d in shown} <= set(front_csv)
    assert main(["export", "--study", "e2e", "--trial", str(front_csv[0]), "--out", "exp"]) == 0
    from coopt.inputs import load_inputs
    from coopt.model.evaluate import evaluate
    from coopt.study.records import read_record
    from coopt.study.runner import study_dir
    rec = read_record(study_dir("e2e"), front_csv[0])
    folder = tmp_path / "exp" / f"trial-{front_csv[0]}"
    from coopt.export.design import safe_name
    for layer in rec.layers:
        stem = safe_name(layer.name)
        inp = load_inputs([folder / "arch.yaml", folder / "prob" / f"{stem}.yaml", folder / "map" / f"{stem}.yaml"],
                          ert=folder / "ERT.yaml", art=folder / "ART.yaml")
        r = evaluate(inp.problem, inp.arch, inp.tables, inp.mapping())
        assert r.cycles == layer.cycles
        assert r.energy_pj == pytest.approx(layer.energy_pj, rel=1e-9)
    assert main(["export", "--study", "e2e", "--trial", str(front_csv[0]), "--out", "exp"]) == 2   # no --force


def _holding(path: str) -> list[int]:
    """Processes with ``path`` in their command line or among their open files."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if path in (p / "cmdline").read_bytes().decode(errors="replace") or any(
                    os.readlink(fd).startswith(path) for fd in (p / "fd").iterdir()):
                out.append(int(p.name))
        except OSError:
            pass
    return out


def test_killed_search_resumes_without_loss_or_duplicates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cmd = [sys.executable, "-m", "coopt.cli", "search", "--space", TINY, "--trials", "40", "--workers", "2",
           "--sampler", "random", "--study", "k"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    trials = tmp_path / "mlruns" / "studies" / "k" / "trials"
    deadline = time.time() + 120
    while time.time() < deadline and (not trials.is_dir() or len(list(trials.glob("*.json"))) < 3):
        time.sleep(0.2)
    assert trials.is_dir(), "the study never started"
    ray_tmp = os.readlink(tmp_path / "mlruns" / "studies" / "k" / "ray")
    os.kill(proc.pid, signal.SIGKILL)               # the driver alone, as `kill -9 PID` would
    proc.wait()
    deadline = time.time() + 60                     # its Ray processes end and its temp folder goes
    while time.time() < deadline and (os.path.exists(ray_tmp) or _holding(ray_tmp)):
        time.sleep(0.5)
    assert not os.path.exists(ray_tmp) and not _holding(ray_tmp)
    before = len(list(trials.glob("*.json")))
    assert 3 <= before < 40
    assert main(["search", "--space", TINY, "--trials", "12", "--workers", "2", "--sampler", "random",
                 "--study", "k", "--resume"]) == 0
    from optuna.trial import TrialState
    study = _study("k")
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == max(12, states.count(TrialState.COMPLETE))
    complete = sorted(t.number for t in study.get_trials() if t.state == TrialState.COMPLETE)
    assert TrialState.RUNNING not in states
    runs = _runs()
    children = _children(runs, "k")
    numbers = [int(r.data.tags["coopt.trial"]) for r in children if r.info.status == "FINISHED"]
    assert sorted(numbers) == complete and len(numbers) == len(set(numbers))   # none lost, none twice
    assert all(r.info.status != "RUNNING" for r in runs)
    # every re-queued design of a trial killed mid-way was evaluated again
    reruns = {t.user_attrs["coopt.rerun_of"]: t for t in study.get_trials() if "coopt.rerun_of" in t.user_attrs}
    for n, t in reruns.items():
        assert study.trials[n].state == TrialState.FAIL and t.params == study.trials[n].params


def test_actor_dying_mid_trial_is_rerun(tmp_path, monkeypatch):
    """A test-only evaluation kills its actor process on trial 1 (once): the trial is failed, its
    design re-run on a new actor, and the study completes."""
    monkeypatch.chdir(tmp_path)
    from coopt.study.runner import StudyConfig, run_study
    marker = str(tmp_path / "died")

    def dying(task):
        import os

        from coopt.study.cluster import evaluate_task
        if task["number"] == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return evaluate_task(task)

    run_study(StudyConfig(space_path=TINY, study="d", trials=5, workers=2, sampler="random", seed=1),
              evaluate=dying)
    from optuna.trial import TrialState
    study = _study("d")
    trials = study.get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5
    assert trials[1].state == TrialState.FAIL
    rerun = [t for t in trials if t.user_attrs.get("coopt.rerun_of") == 1]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE and rerun[0].params == trials[1].params
    assert (tmp_path / "died").exists()


def test_rdb_storage_and_grid_sampler(tmp_path, monkeypatch):
    """--storage takes an RDB URL; the grid sampler walks a finite space without repeats."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert main(["search", "--space", TINY, "--trials", "4", "--workers", "1", "--sampler", "grid",
                 "--study", "g", "--storage", url]) == 0
    import optuna
    study = optuna.load_study(study_name="g", storage=url)
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4
    assert len({tuple(sorted(t.params.items())) for t in done}) == 4


def _designs(study):
    from optuna.trial import TrialState
    return [tuple(sorted(t.params.items())) for t in sorted(study.get_trials(), key=lambda t: t.number)
            if t.state == TrialState.COMPLETE]


def test_extending_a_study_continues_instead_of_replaying(tmp_path, monkeypatch, capsys):
    """--trials 4 then --trials 8 on the same study: trials 4-7 are not trials 0-3 again; a fresh study
    with the same seed and one worker proposes the same designs; a design proposed again reuses its
    record (no evaluation) and counts once in the front and its tags."""
    monkeypatch.chdir(tmp_path)
    base = ["search", "--space", TINY, "--workers", "1", "--sampler", "random", "--seed", "7"]
    assert main(base + ["--trials", "4", "--study", "x"]) == 0
    assert main(base + ["--trials", "8", "--study", "x"]) == 0
    assert main(base + ["--trials", "4", "--study", "y"]) == 0
    x, y = _designs(_study("x")), _designs(_study("y"))
    assert len(x) == 8 and x[:4] == y                       # reproducible on a fresh study
    assert x[4:] != x[:4]                                   # continued, not replayed
    # a design proposed again (queued through Optuna's public API) is not evaluated again
    study = _study("x")
    first = study.trials[0]
    study.enqueue_trial(dict(first.params))
    assert main(base + ["--trials", "9", "--study", "x"]) == 0
    from coopt.study.records import read_record
    from coopt.study.runner import study_dir
    again = read_record(study_dir("x"), 8)
    orig = read_record(study_dir("x"), 0)
    assert again.params == orig.params and again.metrics == orig.metrics
    assert again.started_at is None and orig.started_at is not None and orig.finished_at >= orig.started_at
    capsys.readouterr()
    assert main(["pareto", "--study", "x", "--json"]) == 0
    import json
    shown = json.loads(capsys.readouterr().out)
    numbers = [d["trial"] for d in shown]
    assert 8 not in numbers and len(numbers) == len(set(numbers))
    if 0 in numbers:
        assert [d["same_design"] for d in shown if d["trial"] == 0] == [[8]]
    tags = {int(r.data.tags["coopt.trial"]): r.data.tags["pareto"] for r in _children(_runs(), "x")}
    assert tags[8] == "false" and sorted(n for n, v in tags.items() if v == "true") == sorted(numbers)


def test_a_study_continues_after_comment_edits_but_not_with_another_space(tmp_path, monkeypatch, capsys):
    """A study is tied to its search space's content: comments and layout may change, values may not."""
    monkeypatch.chdir(tmp_path)
    space, text = tmp_path / "space.yaml", Path(TINY).read_text()
    space.write_text(text)
    args = ["search", "--space", str(space), "--workers", "1", "--sampler", "random", "--study", "s"]
    assert main(args + ["--trials", "1"]) == 0
    space.write_text("# a note added later\n" + text.replace("  budget: 300", "  budget:   300   # per layer"))
    assert main(args + ["--trials", "2"]) == 0
    assert [t.state.name for t in _study("s").trials] == ["COMPLETE"] * 2
    space.write_text(text.replace("  budget: 300", "  budget: 400"))
    capsys.readouterr()
    assert main(args + ["--trials", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study 's' was started with a different search space" in err[0], err
    assert len(_study("s").trials) == 2


def test_workers_above_the_machine_cpus_are_capped(tmp_path, monkeypatch, capsys):
    """--workers 200 on a local cluster: one line of warning, as many workers as CPUs, temp folder gone."""
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", TINY, "--trials", "1", "--workers", "200", "--sampler", "random",
                 "--study", "cap", "--json"]) == 0
    cpus = os.cpu_count()
    err = capsys.readouterr().err
    assert f"--workers 200 capped at {cpus}: this machine has {cpus} CPUs" in err
    link = tmp_path / "mlruns" / "studies" / "cap" / "ray"
    assert not link.is_symlink() and not link.exists()                       # link and folder removed


def test_a_study_keeps_its_energy_estimator(tmp_path, monkeypatch, capsys):
    """--energy is part of the study: a continued study uses its own estimator (whatever the environment
    says), a different --energy is refused in one line, and export writes the tables the study used."""
    from coopt.arch.reader import arch_from_yaml
    from coopt.energy.estimate import estimate
    from coopt.energy.accelergy_io import read_tables
    from coopt.study.records import read_records
    from coopt.study.runner import SETTINGS_ATTR, study_dir
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COOPT_ENERGY", "accelergy")             # restored after the test, whatever --energy sets
    args = ["search", "--space", TINY, "--workers", "1", "--sampler", "random", "--study", "e"]
    assert main(args + ["--trials", "1", "--energy", "builtin"]) == 0
    capsys.readouterr()
    assert main(args + ["--trials", "2", "--energy", "accelergy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "study 'e' was run with --energy builtin, not --energy accelergy" in err[0]
    monkeypatch.setenv("COOPT_ENERGY", "accelergy")
    assert main(args + ["--trials", "2"]) == 0                   # no flag: the study's own estimator
    records = read_records(study_dir("e"))
    assert len(records) == 2 and {r.energy_method for r in records} == {"builtin"}
    assert _study("e").user_attrs[SETTINGS_ATTR]["energy"] == "builtin"
    capsys.readouterr()
    assert main(["export", "--study", "e", "--trial", "1", "--out", "x", "--energy", "accelergy"]) == 2
    assert "unrecognized arguments: --energy" in capsys.readouterr().err
    assert main(["export", "--study", "e", "--trial", "1", "--out", "x"]) == 0
    arch = arch_from_yaml(records[1].arch_yaml["architecture"])
    written = read_tables(tmp_path / "x" / "trial-1" / "ERT.yaml", tmp_path / "x" / "trial-1" / "ART.yaml")
    assert written.ert == estimate(arch).ert                     # builtin's tables, not the environment's


def test_the_readmes_main_command_starts_a_fresh_study_on_the_default_space(tmp_path, monkeypatch):
    """`coopt search --study edge --trials N` with no --space (the README's main job): a fresh study takes
    the shipped default space, and its settings and folder name that space."""
    import json

    from coopt.shipped import shipped_file
    from coopt.study.runner import DEFAULT_SPACE, study_dir
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--study", "edge", "--trials", "1", "--workers", "1", "--sampler", "random"]) in (0, 1)
    settings = json.loads((study_dir("edge") / "study.json").read_text())["settings"]
    default = shipped_file("search_spaces", DEFAULT_SPACE)
    assert settings["space_file"] == str(default.resolve()) and settings["space_name"] == DEFAULT_SPACE
    assert (study_dir("edge") / "search_space.yaml").read_text() == default.read_text()
    assert len([t for t in _study("edge").get_trials() if t.state.is_finished()]) == 1
