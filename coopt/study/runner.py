"""Run a study: the driver asks Optuna for designs, Ray actors evaluate them, the driver tells.

The driver (this module, in the ``coopt search`` process) owns the study: it
holds the run lock (``coopt.study.lock``), is the only process that asks,
tells, writes trial records and logs to MLflow, and keeps exactly ``workers``
designs in flight on Ray actors that need nothing from its disk
(``coopt.study.cluster``).  Each record is stored before its trial is told:
in the study folder and in the trial's Optuna user attributes, so that the
storage alone answers ``coopt pareto``/``export`` from any machine.  Resuming
continues the study: trials a killed run left RUNNING are failed and their
designs queued again, the sampler is reseeded from the number of trials
already there (so an extended study never replays its first designs), and a
design proposed again reuses its record instead of being evaluated.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from coopt.errors import CooptError
from coopt.study.records import (
    TrialRecord,
    design_key,
    read_records,
    record_attrs,
    record_from_attrs,
    write_record,
)
from coopt.study.samplers import DEFAULT_SAMPLER, make_sampler
from coopt.study.screening import DEFAULT_SLACK, screen_settings
from coopt.study.space import SearchSpace, load_space
from coopt.study.storage import check_study_name, describe, open_storage, rdb_url

SETTINGS_ATTR = "coopt.settings"
DISPATCHED = "coopt.worker_slot"      # set on a trial when its whole design is sent to an actor


@dataclass
class StudyConfig:
    space_path: str
    study: str
    trials: int = 50
    workers: int = 2
    sampler: str | None = None            # None: DEFAULT_SAMPLER for a fresh study, its own for a continued one
    seed: int = 0
    storage: str | None = None
    tracking_uri: str | None = None
    ray_address: str | None = None
    screen_budget: int | None = None      # multi-fidelity: map every design at this budget first (None: off)
    screen_slack: float = DEFAULT_SLACK
    energy: str | None = None            # --energy as asked (None: the study's own, else the default)
    root: str = field(default_factory=lambda: str(Path.cwd() / "mlruns"))

    @property
    def study_dir(self) -> Path:
        return study_dir(self.study, self.root)


def study_dir(name: str, root: str | Path | None = None) -> Path:
    """``<root>/studies/<name>`` for a checked name (never outside ``studies``)."""
    return Path(root or Path.cwd() / "mlruns") / "studies" / check_study_name(name)


def quiet_optuna():
    import warnings

    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass
class StudyProgress:
    done: int
    total: int
    feasible: int
    front_size: int
    hypervolume: float


def sampler_seed(seed: int | None, trials_so_far: int) -> int | None:
    """The seed itself for a fresh study (reproducible); for a continued one a seed derived from how
    many trials it already has, so that the sampler does not replay the designs of the first run."""
    if seed is None or trials_so_far == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:{trials_so_far}".encode()).digest()[:4], "little")


def _settings(cfg: StudyConfig, space: SearchSpace) -> dict:
    return {"study": cfg.study, "space_file": str(Path(cfg.space_path).resolve()), "space_name": space.name,
            "template": space.template.name, "dataflow": space.dataflow, "network": space.network.name,
            "sampler": cfg.sampler, "seed": cfg.seed, "objectives": space.objectives, "budgets": space.budgets,
            "reference_point": space.reference, "mapper": {"metric": list(space.mapper.metric),
                                                           "budget": space.mapper.budget,
                                                           "strategy": space.mapper.strategy},
            "screen_budget": cfg.screen_budget, "screen_slack": cfg.screen_slack if cfg.screen_budget else None,
            "storage": describe(cfg.storage) if cfg.storage else None, "tracking_uri": cfg.tracking_uri,
            "energy": study_energy(cfg, {})}


def study_energy(cfg: StudyConfig, settings: dict) -> str:
    """The energy estimator of a study for life: mixing estimators would mix the trials' energies.
    A fresh study takes ``--energy`` (else ``COOPT_ENERGY``, else the default); a continued one keeps
    its own, and a different explicit ``--energy`` is refused."""
    from coopt.energy.select import method

    stored = settings.get("energy")
    if stored is None:                   # fresh, or a study from before the estimator was kept
        return cfg.energy or method()
    if cfg.energy is not None and cfg.energy != stored:
        raise CooptError(f"study '{cfg.study}' was run with --energy {stored}, not --energy {cfg.energy}",
                         key="--energy", expected=f"--energy {stored} (or no --energy) to continue it, "
                                                  "or a new study name")
    return stored


def space_digest(text: str) -> str:
    """The digest of a search space's content: comments and layout may change, a study stays the same."""
    content = json.dumps(yaml.safe_load(text), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()


def prepare_study_dir(cfg: StudyConfig, space: SearchSpace) -> dict:
    """Create or check the study folder; a study keeps its search space and sampler for life (no
    ``--sampler``: a fresh study takes the default, a continued one its own)."""
    sdir = cfg.study_dir
    sdir.mkdir(parents=True, exist_ok=True)
    text = Path(cfg.space_path).read_text()
    digest = space_digest(text)
    meta_path = sdir / "study.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        # studies made before the digest ignored comments hold the digest of the file's text
        if meta["space_sha256"] not in (digest, hashlib.sha256(text.encode()).hexdigest()):
            raise CooptError(f"study '{cfg.study}' was started with a different search space "
                             f"({meta['settings']['space_file']})", key="--study",
                             expected="the same search-space file to resume, or a new study name")
        if cfg.sampler is not None and meta["settings"]["sampler"] != cfg.sampler:
            raise CooptError(f"study '{cfg.study}' uses the {meta['settings']['sampler']} sampler", key="--sampler",
                             expected=f"--sampler {meta['settings']['sampler']} to resume it, or a new study name")
        study_energy(cfg, meta["settings"])
        return meta
    meta = {"space_sha256": digest, "settings": _settings(replace(cfg, sampler=cfg.sampler or DEFAULT_SAMPLER), space),
            "created": time.time()}
    (sdir / "search_space.yaml").write_text(text)
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def recover_stale_trials(study) -> list[int]:
    """Fail trials left RUNNING by a dead run and queue their designs again.

    Only called with the study's run lock held, so every RUNNING trial belongs to a dead run."""
    from optuna.trial import TrialState

    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if t.params and DISPATCHED in t.user_attrs:    # a complete design (a run killed mid-suggest is not)
            study.enqueue_trial(dict(t.params), user_attrs={"coopt.rerun_of": t.number}, skip_if_exists=False)
        failed.append(t.number)
    return failed


def completed_records(study, sdir: Path | None) -> dict[int, TrialRecord]:
    """Records of the COMPLETE trials: from the storage, else from the study folder's files."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    files = {r.number: r for r in read_records(sdir)} if sdir is not None else {}
    out = {}
    for t in done:
        rec = record_from_attrs(t.user_attrs) or files.get(t.number)
        if rec is not None:
            out[t.number] = rec
    return out


def _open_tracker(cfg: StudyConfig, meta: dict, space: SearchSpace):
    """Start the MLflow mirror; a local sqlite store's first use is serialised (schema creation)."""
    from coopt.study.lock import store_init_lock
    from coopt.tracking import StudyTracker
    from coopt.tracking.mlflow_tracker import resolve_uri, sqlite_path

    tracker = StudyTracker(cfg.tracking_uri, cfg.study, meta["settings"], space.objectives, space.reference,
                           space_file=str(cfg.study_dir / "search_space.yaml"))
    db = sqlite_path(resolve_uri(cfg.tracking_uri))
    if db is None:
        return tracker, tracker.start()
    with store_init_lock(db.parent / ".mlflow-init.lock"):
        return tracker, tracker.start()


def run_study(cfg: StudyConfig, *, on_progress=None, evaluate=None, warn=None, on_continue=None) -> dict:
    """Run (or continue) a study until ``cfg.trials`` trials are complete; returns a summary.

    ``evaluate`` replaces the design evaluation inside the actors (a picklable ``task -> TrialRecord``;
    tests use it to inject faults).  ``on_continue()`` is called, with the run lock held, when the study
    already exists."""
    from coopt.study.lock import StudyLock

    check_study_name(cfg.study)
    space = load_space(cfg.space_path)
    if cfg.trials < 1 or cfg.workers < 1:
        raise CooptError("--trials and --workers must be at least 1", key="--trials/--workers")
    make_sampler(cfg.sampler or DEFAULT_SAMPLER, space, cfg.seed, cfg.trials)   # fail fast on a bad sampler
    if cfg.screen_budget is not None and not 1 <= cfg.screen_budget < space.mapper.budget:
        raise CooptError(f"--screen-budget {cfg.screen_budget} is not below the space's mapper budget",
                         key="--screen-budget",
                         expected=f"an integer from 1 to {space.mapper.budget - 1} (mappings per layer), or 0 for off")
    if not 0 <= cfg.screen_slack < 1:
        raise CooptError(f"--screen-slack {cfg.screen_slack} is out of range", key="--screen-slack",
                         expected="a fraction from 0 to below 1 (0.05: 5 %)")
    rdb_url(cfg.storage)                                            # fail fast on a bad storage URL
    cfg.study_dir.mkdir(parents=True, exist_ok=True)
    with StudyLock(cfg.study, cfg.study_dir, cfg.storage) as lock:
        return _run_locked(cfg, space, lock, on_progress, evaluate, warn, on_continue)


def _run_locked(cfg: StudyConfig, space: SearchSpace, lock, on_progress, evaluate, warn, on_continue) -> dict:
    quiet_optuna()
    import optuna
    from optuna.trial import TrialState

    from coopt.study.cluster import RayCluster
    from coopt.study.front import front_hypervolume, pareto_front

    existed = (cfg.study_dir / "study.json").exists()
    meta = prepare_study_dir(cfg, space)
    cfg = replace(cfg, sampler=meta["settings"]["sampler"])
    sdir = cfg.study_dir
    storage = open_storage(cfg.storage, sdir)
    directions = [d for _, d in space.objectives]
    study = optuna.create_study(study_name=cfg.study, storage=storage, load_if_exists=True, directions=directions)
    if study.user_attrs.get(SETTINGS_ATTR) is None:
        study.set_user_attr(SETTINGS_ATTR, meta["settings"])
    cfg = replace(cfg, energy=study_energy(cfg, study.user_attrs.get(SETTINGS_ATTR) or meta["settings"]))
    if existed and on_continue is not None:
        on_continue()
    stale = recover_stale_trials(study)
    so_far = len(study.get_trials(deepcopy=False))
    study = optuna.load_study(study_name=cfg.study, storage=storage,
                              sampler=make_sampler(cfg.sampler, space, sampler_seed(cfg.seed, so_far), cfg.trials))
    tracker, logged = _open_tracker(cfg, meta, space)
    records = completed_records(study, sdir)
    for n in sorted(set(records) - logged):                          # told but not logged before a crash
        tracker.log_trial(records[n])
    by_design = {}
    for n in sorted(records):
        by_design.setdefault(design_key(records[n].params), records[n])
    total = cfg.trials
    if space.size() is not None and cfg.sampler == "grid":
        total = min(total, space.size())
    step = len(records)
    last_front = [0.0]

    def front_update(force=False):
        if force or time.time() - last_front[0] > 3.0:
            tracker.update_front(list(records.values()), step=step)
            last_front[0] = time.time()
        recs = list(records.values())
        return len(pareto_front(recs, space.objectives)), front_hypervolume(recs, space.objectives, space.reference)

    def report():
        fs, hv = front_update()
        if on_progress:
            on_progress(StudyProgress(len(records), total, sum(r.feasible for r in records.values()), fs, hv))

    def finish(trial, rec: TrialRecord):
        """Store the record (folder and storage), then tell; then mirror to MLflow."""
        nonlocal step
        for key, value in sorted(rec.violations.items()):
            trial.set_constraint(key, value)
        write_record(sdir, rec)
        for k, v in record_attrs(rec).items():
            trial.set_user_attr(k, v)
        study.tell(trial, rec.objectives)
        records[rec.number] = rec
        by_design.setdefault(design_key(rec.params), rec)
        tracker.log_trial(rec)
        step += 1
        report()

    def fail(trial, rerun: bool):
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if rerun and trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs={"coopt.rerun_of": trial.number},
                                skip_if_exists=False)

    remaining = total - len(records)
    status = "FINISHED"
    errors: list[str] = []
    in_flight: dict = {}
    try:
        report()
        if remaining > 0:
            with RayCluster(cfg.ray_address, cfg.workers, sdir, warn=warn) as cluster:
                _drive(cfg, space, study, cluster, evaluate, lock, remaining, in_flight, by_design, finish, fail,
                       errors)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        for trial in list(in_flight.values()):      # designs interrupted here run again next time
            try:
                fail(trial[1], rerun=True)
            except Exception:
                pass
        try:
            front_update(force=True)
        finally:
            tracker.finish(status)
    recs = list(records.values())
    front = pareto_front(recs, space.objectives)
    return {"study": cfg.study, "trials": len(records), "feasible": sum(r.feasible for r in recs),
            "screened": sum(r.screened for r in recs),
            "front": [r.number for r in front], "errors": errors, "recovered": stale,
            "hypervolume": front_hypervolume(recs, space.objectives, space.reference), "study_dir": str(sdir)}


def _task(space: SearchSpace, number: int, params: dict, energy: str, screen: dict | None = None) -> dict:
    """Everything an actor needs to evaluate a design: no file of the driver's is read remotely.
    The study's energy estimator travels too: a worker node's environment is not the driver's;
    so does the screening budget with the current front (``coopt.study.screening``)."""
    return {"number": number, "params": params, "template": space.template,      # the parsed template itself
            "template_params": space.template_params(params), "dataflow": space.dataflow,
            "network": space.network, "mapper": space.mapper, "budgets": space.budgets,
            "objectives": space.objectives, "energy": energy, "screen": screen, "sparsity": space.sparsity}


def _drive(cfg, space, study, cluster, evaluate, lock, remaining, in_flight, by_design, finish, fail, errors):
    """Keep ``cluster.workers`` designs in flight until ``remaining`` trials are told COMPLETE."""
    import ray

    from coopt.study.cluster import RayError

    actors = [cluster.actor(evaluate) for _ in range(min(cluster.workers, remaining))]
    finished = 0
    deaths = 0                                      # actor deaths since the last finished trial

    def submit(i) -> None:
        nonlocal finished
        while finished + len(in_flight) < remaining:
            trial = study.ask()
            params = space.suggest(trial)
            again = by_design.get(design_key(params))
            if again is not None:                   # proposed again: reuse the record, no evaluation
                finish(trial, replace(again, number=trial.number, seconds=0.0, started_at=None,
                                      finished_at=None))
                finished += 1
                continue
            trial.set_user_attr(DISPATCHED, i)
            screen = screen_settings(cfg.screen_budget, cfg.screen_slack, by_design.values(), space.objectives)
            in_flight[actors[i].evaluate.remote(_task(space, trial.number, params, cfg.energy, screen))] = (i, trial)
            return

    for i in range(len(actors)):
        submit(i)
    while in_flight:
        if lock.lost:
            raise CooptError(f"study '{cfg.study}': this run lost its lease in the storage",
                             key="--storage", expected="a reachable database; run again to continue")
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=5.0)
        if not ready:
            continue
        i, trial = in_flight.pop(ready[0])
        try:
            out = ray.get(ready[0])
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
            fail(trial, rerun=True)                 # the actor died: its design runs again on a new one
            deaths += 1
            text = str(e)
            if "creation task" in text or deaths > 2 * len(actors) + 2:
                lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("^")]
                raise RayError(f"Ray workers cannot evaluate designs: {lines[-1][:300] if lines else 'they die'}",
                               key="--ray-address", expected="coopt and its dependencies installed on every "
                                                             "Ray node (the same version as here)") from None
            actors[i] = cluster.actor(evaluate)
            submit(i)
            continue
        except ray.exceptions.RayTaskError as e:    # the evaluation raised: a bug or unexpected input
            fail(trial, rerun=False)
            cause = e.cause if getattr(e, "cause", None) is not None else e
            errors.append(f"{type(cause).__name__}: {cause}")
            if len(errors) >= 5 and len(errors) > finished:
                raise CooptError(f"trials keep failing, last: {errors[-1]}", key="search") from None
            submit(i)
            continue
        rec = TrialRecord.from_json(out)
        rec.number = trial.number
        finish(trial, rec)
        finished += 1
        deaths = 0
        submit(i)
