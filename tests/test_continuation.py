"""A study's storage is the truth: continuing it from any folder with ``--storage`` alone.

Real PostgreSQL (the ``pg_db`` fixture), a real local Ray cluster and sqlite MLflow stores.  The study
is started on the ``tiny`` space (not the default ``edge``) in one folder and continued from an empty
one: the continuation must take the stored space, sampler and MLflow store, write a local record that
agrees with the storage, leave no trial RUNNING even when the driver itself crashes, and refuse a
``--storage`` that would split the study unless ``--copy-to`` asks for a copy.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from coopt.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.db]

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "search_spaces" / "tiny.yaml")
TINY_PARAMS = {"pe_rows", "pe_cols", "log2_glb_depth", "word_bits"}      # as Optuna names them


def _study(url, name="pg"):
    import optuna
    return optuna.load_study(study_name=name, storage=url)


def _trial_runs(db: Path, study: str):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{db}")
    exps = [e for e in client.search_experiments() if e.tags.get("coopt.study") == study]
    return exps, [r for e in exps for r in client.search_runs([e.experiment_id])
                  if r.data.tags.get("coopt.role") == "trial"]


def test_continue_a_postgres_study_from_an_empty_folder_with_storage_only(pg_db, tmp_path, monkeypatch, capsys):
    from optuna.trial import TrialState

    from coopt.study.runner import StudyConfig, run_study
    from coopt.study.space import SearchSpace
    from coopt.study.stored import SETTINGS_ATTR
    url = pg_db.replace("postgresql://", "postgresql+psycopg://")          # what Optuna itself opens
    first, empty = tmp_path / "first", tmp_path / "empty"
    first.mkdir()
    empty.mkdir()
    monkeypatch.chdir(first)
    assert main(["search", "--space", TINY, "--trials", "2", "--workers", "1", "--sampler", "random",
                 "--study", "pg", "--storage", pg_db]) == 0
    monkeypatch.chdir(empty)
    capsys.readouterr()
    assert main(["search", "--study", "pg", "--trials", "3", "--workers", "1", "--storage", pg_db]) == 0
    study = _study(url)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(set(t.params) == TINY_PARAMS for t in trials)                 # the stored space, not edge
    stored = study.user_attrs[SETTINGS_ATTR]
    assert stored["space_name"] == "tiny" and stored["sampler"] == "random"
    local = json.loads((empty / "mlruns" / "studies" / "pg" / "study.json").read_text())
    assert local["settings"] == stored                                        # no conflicting local record
    # one MLflow history: the first folder's store has every trial once, the empty folder none
    assert not (empty / "mlruns" / "mlflow.db").exists()
    exps, runs = _trial_runs(first / "mlruns" / "mlflow.db", "pg")
    assert len(exps) == 1
    assert sorted(int(r.data.tags["coopt.trial"]) for r in runs) == [0, 1, 2]
    assert all(r.info.status == "FINISHED" for r in runs)

    # the driver crashes while proposing a design (as front_neighbours once did): no trial left RUNNING
    def broken(self, trial):
        raise KeyError("ifmap_spad_depth")
    monkeypatch.setattr(SearchSpace, "suggest", broken)
    with pytest.raises(KeyError):
        run_study(StudyConfig(space_path=None, study="pg", trials=5, workers=1, storage=pg_db, seed=None))
    monkeypatch.undo()
    monkeypatch.chdir(empty)
    assert TrialState.RUNNING not in [t.state for t in _study(url).get_trials()]
    assert [t.state for t in _study(url).get_trials()].count(TrialState.COMPLETE) == 3

    # another --storage would split the study: refused in one line, nothing written there
    other = tmp_path / "other.db"
    capsys.readouterr()
    assert main(["search", "--study", "pg", "--trials", "3", "--storage", f"sqlite:///{other}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lives in" in err[0] and "--copy-to" in err[0]
    assert not other.exists()
    # another --space is refused too (the storage keeps the study's own)
    assert main(["search", "--study", "pg", "--trials", "3", "--space", "edge", "--storage", pg_db]) == 2
    assert "different search space" in capsys.readouterr().err
    # --copy-to: the study moves (every trial, its settings naming the new store); no new trial needed
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    assert main(["search", "--study", "pg", "--trials", "3", "--storage", pg_db, "--copy-to", copy]) == 0
    moved = _study(copy)
    assert [t.params for t in moved.get_trials() if t.state == TrialState.COMPLETE] == \
        [t.params for t in _study(url).get_trials() if t.state == TrialState.COMPLETE]
    assert moved.user_attrs[SETTINGS_ATTR]["storage"] == copy
    local = json.loads((empty / "mlruns" / "studies" / "pg" / "study.json").read_text())
    assert local["settings"]["storage"] == copy                               # the folder follows the study
