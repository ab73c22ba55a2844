"""``coopt dashboard --study NAME``: Optuna Dashboard over a study, in the study's own terms.

Why a mirror and not the study's storage as is: the dashboard shows what
Optuna stores — "Objective 0/1" and the sampler's parameter forms
(``log2_glb_depth = 11`` for 2048).  The dashboard here serves an in-memory
copy of the study whose objectives carry their names and units
(``study.set_metric_names``) and whose parameters are in user units; a
background thread copies trials that finish while it runs.  The study's own
storage is only read.  Needs the optional extra ``optuna-dashboard``.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from coopt.errors import CooptError
from coopt.tracking.present import UNITS

SYNC_S = 5.0


def metric_names(objectives) -> list[str]:
    return [UNITS.get(name, name) for name, _ in objectives]


def user_distributions(space, distributions: dict) -> dict:
    """The trial's distributions with pow2 parameters as log-scaled integers in user units."""
    from optuna.distributions import IntDistribution

    out = dict(distributions)
    for p in space.params:
        if p.type == "pow2" and p.optuna_name() in out:
            del out[p.optuna_name()]
            out[p.name] = IntDistribution(int(p.low), int(p.high), log=True)
    return out


def user_params(space, params: dict) -> dict:
    """A trial's parameters in user units (2048, not log2 = 11), in the search space's order."""
    out = {}
    for p in space.params:
        if p.optuna_name() in params:
            v = params[p.optuna_name()]
            out[p.name] = 2 ** v if p.type == "pow2" else v
    return out


def shown_state(trial):
    """(state, values, user attributes) of a trial as the dashboard shows it.  A design that could not be
    mapped was told placeholder values (coopt.study.trial.INFEASIBLE_ENERGY_UJ) so that the samplers learn
    to avoid it; every plot would draw them as values and set its axes by them.  Here it is PRUNED, with no
    values and its reason in ``coopt.not_mapped``; the record's encoded copy is left out (unreadable)."""
    from optuna.trial import TrialState

    from coopt.study.front import is_mapped
    from coopt.study.records import RECORD_ATTR, record_from_attrs

    attrs = {k: v for k, v in trial.user_attrs.items() if not k.startswith(RECORD_ATTR + ".")}
    rec = record_from_attrs(trial.user_attrs) if trial.state == TrialState.COMPLETE else None
    if rec is None or is_mapped(rec):
        return trial.state, trial.values, attrs
    attrs["coopt.not_mapped"] = "; ".join(rec.reasons) or "not mapped"
    return TrialState.PRUNED, None, attrs


class StudyMirror:
    """An in-memory copy of a study, with names and units for people; ``sync`` adds finished trials."""

    def __init__(self, source, space, objectives):
        import warnings

        import optuna

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.source, self.space, self.objectives = source, space, objectives
        self.storage = optuna.storages.InMemoryStorage()
        self.study = optuna.create_study(study_name=source.study_name, storage=self.storage,
                                         directions=[d for _, d in objectives])
        self.study.set_metric_names(metric_names(objectives))
        self.study.set_user_attr("coopt.note", "parameters in user units; objectives: "
                                 + ", ".join(f"{UNITS.get(n, n)} ({d})" for n, d in objectives))
        self.copied: set[int] = set()

    def sync(self) -> int:
        """Copy trials that finished since the last call; returns how many were added."""
        from optuna.trial import FrozenTrial, TrialState

        added = 0
        for t in self.source.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                                 TrialState.PRUNED)):
            if t.number in self.copied:
                continue
            params = user_params(self.space, t.params) if t.params else {}
            state, values, attrs = shown_state(t)
            copy = FrozenTrial(number=t.number, state=state, value=None, values=values,
                               datetime_start=t.datetime_start, datetime_complete=t.datetime_complete,
                               params=params, distributions=user_distributions(self.space, t.distributions),
                               user_attrs=attrs, system_attrs=dict(t.system_attrs),
                               intermediate_values=dict(t.intermediate_values), trial_id=t._trial_id)
            self.study.add_trial(copy)
            self.copied.add(t.number)
            added += 1
        return added


def open_study(name: str, storage: str | None):
    """The study's space, objectives and Optuna study (read-only use), from its folder and storage."""
    import json

    import optuna

    from coopt.study.storage import quiet_optuna, study_dir
    from coopt.study.storage import open_storage
    from coopt.study.space import load_space

    sdir = study_dir(name)
    meta_path = sdir / "study.json"
    if not meta_path.exists():
        root = sdir.parent
        known = sorted(p.name for p in root.glob("*") if (p / "study.json").exists()) if root.is_dir() else []
        raise CooptError(f"no study '{name}' under {root}", key="--study",
                         expected=f"one of {known}" if known else "run coopt search first")
    meta = json.loads(meta_path.read_text())
    quiet_optuna()
    space = load_space(Path(sdir) / "search_space.yaml")
    try:
        source = optuna.load_study(study_name=name, storage=open_storage(storage, sdir, create=False))
    except KeyError:
        raise CooptError(f"study '{name}' is not in the storage {storage or sdir / 'optuna.journal'}",
                         key="--storage", expected="the storage the study was run with") from None
    return space, [tuple(o) for o in meta["settings"]["objectives"]], source


def launch_dashboard(name: str, storage: str | None = None, port: int = 8080, host: str = "127.0.0.1") -> int:
    """Serve Optuna Dashboard over a mirror of the study until Ctrl-C."""
    try:
        import optuna_dashboard
    except ImportError:
        raise CooptError("Optuna Dashboard is not installed", key="dashboard",
                         expected="pip install 'coopt[dashboard]' (the optuna-dashboard package)") from None
    from coopt.tracking.ui import check_port

    check_port(port, host)
    space, objectives, source = open_study(name, storage)
    mirror = StudyMirror(source, space, objectives)
    mirror.sync()

    def keep_in_sync():
        while True:
            time.sleep(SYNC_S)
            try:
                mirror.sync()
            except Exception:          # noqa: BLE001 - a busy journal: try again next round
                continue

    threading.Thread(target=keep_in_sync, daemon=True).start()
    study_id = mirror.study._study_id
    print(f"Optuna Dashboard: http://{host}:{port}/dashboard/studies/{study_id}  (Ctrl-C to stop)", flush=True)
    try:
        optuna_dashboard.run_server(mirror.storage, host=host, port=port)
    except KeyboardInterrupt:
        pass
    return 0
