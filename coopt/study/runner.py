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
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from coopt.errors import CooptError
from coopt.outputs import atomic_write_text
from coopt.study.records import (
    TrialRecord,
    design_key,
    load_record_file,
    record_attrs,
    record_files,
    record_from_attrs,
    write_record,
)
from coopt.study.samplers import DEFAULT_SAMPLER, make_sampler
from coopt.study.screening import DEFAULT_SLACK, screen_settings
from coopt.study.space import SearchSpace, load_space, space_from_dict, space_path
from coopt.study.storage import check_study_name, describe, open_storage, quiet_optuna, rdb_url, study_dir
from coopt.study.stored import (SETTINGS_ATTR, SPACE_ATTR, Stored, check_continuation, copy_study, own_storage,
                                read_local_meta, read_stored, space_digest)
from coopt.yamlio import loads_yaml, read_text

__all__ = ["SETTINGS_ATTR", "SPACE_ATTR", "StudyConfig", "run_study", "study_dir", "quiet_optuna", "space_digest"]
DEFAULT_SPACE = "edge"
DISPATCHED = "coopt.worker_slot"      # set on a trial when its whole design is sent to an actor


@dataclass
class StudyConfig:
    space_path: str | None                # None: the study's own (kept in its storage), else DEFAULT_SPACE
    study: str
    trials: int = 50
    workers: int = 2
    sampler: str | None = None            # None: DEFAULT_SAMPLER for a fresh study, its own for a continued one
    seed: int | None = 0                  # None: 0 for a fresh study, its own for a continued one
    storage: str | None = None
    tracking_uri: str | None = None
    ray_address: str | None = None
    screen_budget: int | None = None      # multi-fidelity: map every design at this budget first (None: off)
    screen_slack: float = DEFAULT_SLACK
    energy: str | None = None            # --energy as asked (None: the study's own, else the default)
    copy_to: str | None = None            # copy the study into this storage and continue it there
    root: str = field(default_factory=lambda: str(Path.cwd() / "mlruns"))

    @property
    def study_dir(self) -> Path:
        return study_dir(self.study, self.root)


@dataclass
class StudyProgress:
    done: int
    total: int
    feasible: int
    front_size: int
    hypervolume: float
    last: TrialRecord | None = None        # the trial just finished (None: the report at the start)
    objectives: tuple = ()                 # the objectives' metric names


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
            "energy": study_energy(cfg, {}), "spec_sha256": getattr(space.template, "digest", None) or None}


def check_spec(cfg: StudyConfig, settings: dict, space: SearchSpace) -> None:
    """A study over a user's v4 spec keeps the spec's contents for life, as it keeps its space: the
    space file may be unchanged while the spec it names was edited (its digest covers every file read)."""
    own, now = settings.get("spec_sha256"), getattr(space.template, "digest", None)
    if own and now and own != now:
        raise CooptError(f"study '{cfg.study}' was started with other contents of its spec "
                         f"({getattr(space.template, 'path', '') or space.template.name})", key="spec",
                         expected="the spec's files as they were to continue it, or a new study name")


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


def prepare_study_dir(cfg: StudyConfig, space: SearchSpace, text: str | None = None,
                      stored: Stored | None = None) -> dict:
    """Create or check the study folder; a study keeps its search space and sampler for life (no
    ``--sampler``: a fresh study takes the default, a continued one its own).  When the storage holds
    the study, the folder's record is rewritten from the storage's (the storage is the truth)."""
    sdir = cfg.study_dir
    sdir.mkdir(parents=True, exist_ok=True)
    text = read_text(cfg.space_path, what="search space") if text is None else text
    digest = space_digest(text)
    meta_path = sdir / "study.json"
    meta = read_local_meta(sdir)
    if stored is not None and stored.settings and stored.space_text is not None:
        check_spec(cfg, stored.settings, space)
        meta = {"space_sha256": digest, "settings": stored.settings,
                "created": (meta or {}).get("created", time.time())}
        atomic_write_text(sdir / "search_space.yaml", text)
        atomic_write_text(meta_path, json.dumps(meta, indent=1))
        return meta
    if meta is not None:
        # studies made before the digest ignored comments hold the digest of the file's text
        if meta["space_sha256"] not in (digest, hashlib.sha256(text.encode()).hexdigest()):
            raise CooptError(f"study '{cfg.study}' was started with a different search space "
                             f"({meta['settings']['space_file']})", key="--study",
                             expected="the same search-space file to resume, or a new study name")
        if cfg.sampler is not None and meta["settings"]["sampler"] != cfg.sampler:
            raise CooptError(f"study '{cfg.study}' uses the {meta['settings']['sampler']} sampler", key="--sampler",
                             expected=f"--sampler {meta['settings']['sampler']} to resume it, or a new study name")
        study_energy(cfg, meta["settings"])
        check_spec(cfg, meta["settings"], space)
        return meta
    meta = {"space_sha256": digest, "settings": _settings(replace(cfg, sampler=cfg.sampler or DEFAULT_SAMPLER), space),
            "created": time.time()}
    atomic_write_text(sdir / "search_space.yaml", text)
    atomic_write_text(meta_path, json.dumps(meta, indent=1))
    return meta


def recover_stale_trials(study) -> list[int]:
    """Fail trials left RUNNING by a dead run and queue their designs again; return the trials whose
    designs were queued (a trial killed before its design was complete has none to re-run).

    Only called with the study's run lock held, so every RUNNING trial belongs to a dead run."""
    from optuna.trial import TrialState

    requeued = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if t.params and DISPATCHED in t.user_attrs:    # a complete design (a run killed mid-suggest is not)
            study.enqueue_trial(dict(t.params), user_attrs={"coopt.rerun_of": t.number}, skip_if_exists=False)
            requeued.append(t.number)
    return requeued


def completed_records(study, sdir: Path | None) -> dict[int, TrialRecord]:
    """Records of the COMPLETE trials: from the storage, else from the study folder's files."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    files = record_files(sdir) if sdir is not None else {}
    out = {}
    for t in done:                  # a file is read only for a trial whose record the storage lacks
        rec = record_from_attrs(t.user_attrs)
        if rec is None and t.number in files:
            rec = load_record_file(files[t.number])
        if rec is not None:
            out[t.number] = rec
    return out


def mlflow_call(uri: str, fn, *args, **kwargs):
    """A call into the MLflow store; its failure (a full disk, a server gone) is one line naming the store,
    not MLflow's chained tracebacks (the records are already stored: a later run logs what is missing)."""
    try:
        return fn(*args, **kwargs)
    except CooptError:
        raise
    except Exception as e:
        from coopt.study.storage import root_message
        raise CooptError(f"the MLflow store {uri} failed: {root_message(e)}", key="--tracking-uri",
                         expected="a writable store (free disk space) or a running tracking server; run again "
                                  "to log what is missing") from None


def _open_tracker(cfg: StudyConfig, meta: dict, space: SearchSpace):
    """Start the MLflow mirror; a local sqlite store's first use is serialised (schema creation)."""
    from coopt.study.lock import store_init_lock
    from coopt.tracking.mlflow_tracker import StudyTracker, resolve_uri, sqlite_path

    tracker = StudyTracker(cfg.tracking_uri, cfg.study, meta["settings"], space.objectives, space.reference,
                           space_file=str(cfg.study_dir / "search_space.yaml"))
    db = sqlite_path(resolve_uri(cfg.tracking_uri))
    if db is None:
        return tracker, mlflow_call(cfg.tracking_uri, tracker.start)
    with store_init_lock(db.parent / ".mlflow-init.lock"):
        return tracker, mlflow_call(cfg.tracking_uri, tracker.start)


def run_study(cfg: StudyConfig, *, on_progress=None, evaluate=None, warn=None, on_continue=None) -> dict:
    """Run (or continue) a study until ``cfg.trials`` trials are complete; returns a summary.

    ``evaluate`` replaces the design evaluation inside the actors (a picklable ``task -> TrialRecord``;
    tests use it to inject faults).  ``on_continue()`` is called, with the run lock held, when the study
    already exists.  Everything the run depends on (the study's own store and settings, the MLflow store,
    the Ray address) is checked before anything is written; a run that fails before its first trial
    leaves no study folder behind."""
    from coopt.study.lock import StudyLock

    warn = warn or _stderr
    check_study_name(cfg.study)
    if cfg.trials < 1 or cfg.workers < 1:
        raise CooptError("--trials and --workers must be at least 1", key="--trials/--workers")
    sdir = cfg.study_dir
    local = read_local_meta(sdir)
    spec = own_storage(cfg.study, cfg.storage, local, cfg.copy_to)
    rdb_url(spec)                                                   # fail fast on a bad storage URL
    stored = read_stored(cfg.study, spec, sdir)                     # reaches the storage (one line if not)
    if stored is not None and not stored.settings:
        stored = None                                               # created, but killed before its settings
    space, text = _resolve_space(cfg, stored)
    if stored is None and cfg.space_path is None:                  # a fresh study on the default space
        cfg = replace(cfg, space_path=str(space_path(DEFAULT_SPACE)))
    if stored is not None:
        check_continuation(cfg.study, stored, space_text=text if cfg.space_path else None, sampler=cfg.sampler)
    own = stored.settings if stored is not None else {}
    cfg = replace(cfg, storage=spec, sampler=cfg.sampler or own.get("sampler"),
                  seed=cfg.seed if cfg.seed is not None else own.get("seed", 0))
    cfg = replace(cfg, tracking_uri=_tracking_uri(cfg, own, warn))
    _check_options(cfg, space)
    _check_endpoints(cfg, continued=stored is not None)
    if cfg.copy_to is not None:
        if stored is None:
            raise CooptError(f"no study '{cfg.study}' in {describe(spec)} to copy", key="--copy-to",
                             expected="an existing study (its own --storage, or none for its folder's journal)")
        rdb_url(cfg.copy_to)
        make_study_folder(sdir)
        with StudyLock(cfg.study, sdir, spec):
            copy_study(cfg.study, spec, sdir, cfg.copy_to)
        warn(f"coopt search: study '{cfg.study}' copied into {describe(cfg.copy_to)}; it continues there "
             f"(the copy in {describe(spec)} is no longer updated)")
        cfg = replace(cfg, storage=cfg.copy_to, copy_to=None)
        stored = read_stored(cfg.study, cfg.storage, sdir)
    fresh_folder = not sdir.exists()
    make_study_folder(sdir)
    try:
        lock = StudyLock(cfg.study, sdir, cfg.storage).__enter__()
    except BaseException:
        if fresh_folder:                  # refused (another machine runs it): the folder made for the lock goes
            shutil.rmtree(sdir, ignore_errors=True)
        raise
    try:
        return _run_locked(cfg, space, text, stored, lock, on_progress, evaluate, warn, on_continue)
    except BaseException:
        if fresh_folder:                  # only with the lock held: no other run can be using the study
            _undo_empty_study(cfg, stored is None)
        raise
    finally:
        lock.__exit__(None, None, None)


def make_study_folder(sdir: Path) -> None:
    """``mlruns/studies/NAME``; a file or a link where a folder belongs is one line naming it."""
    for folder in (sdir.parent.parent, sdir.parent, sdir):
        if (folder.exists() or folder.is_symlink()) and not folder.is_dir():    # a link to a folder is fine
            raise CooptError("is not a folder" + (" (a dangling link)" if not folder.exists() else ""),
                             file=str(folder), key="--study",
                             expected="coopt's own folder of studies (move what is there, or run elsewhere)")
    try:
        sdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from coopt.outputs import os_reason
        raise CooptError(f"cannot create the study folder: {os_reason(e)}", file=str(sdir), key="--study") from None


def _stderr(msg: str) -> None:
    import sys
    print(msg, file=sys.stderr)


def _resolve_space(cfg: StudyConfig, stored: Stored | None) -> tuple[SearchSpace, str]:
    """The search space and its text: ``--space`` if given, else the one the storage keeps with the study,
    else DEFAULT_SPACE for a fresh study."""
    if cfg.space_path is None and stored is not None:
        kept = cfg.study_dir / "search_space.yaml"
        if stored.space_text is None and kept.is_file():    # a study from before the storage kept its space
            return load_space(str(kept)), read_text(kept, what="search space")
        if stored.space_text is None:
            raise CooptError(f"study '{cfg.study}' in {describe(cfg.storage)} keeps no copy of its search space "
                             "(it was started by an older coopt)", key="--space",
                             expected=f"--space {stored.settings.get('space_file') or 'FILE'} (the file it was "
                                      "started with)")
        label = f"the search space stored with study '{cfg.study}'"
        return space_from_dict(loads_yaml(stored.space_text, file=label), file=label), stored.space_text
    path = str(space_path(cfg.space_path or DEFAULT_SPACE))
    space = load_space(path)
    return space, read_text(path, what="search space")


def _check_options(cfg: StudyConfig, space: SearchSpace) -> None:
    make_sampler(cfg.sampler or DEFAULT_SAMPLER, space, cfg.seed, cfg.trials)   # fail fast on a bad sampler
    if cfg.screen_budget is not None and not 1 <= cfg.screen_budget < space.mapper.budget:
        raise CooptError(f"--screen-budget {cfg.screen_budget} is not below the space's mapper budget",
                         key="--screen-budget",
                         expected=f"an integer from 1 to {space.mapper.budget - 1} (mappings per layer), or 0 for off")
    if not 0 <= cfg.screen_slack < 1:
        raise CooptError(f"--screen-slack {cfg.screen_slack} is out of range", key="--screen-slack",
                         expected="a fraction from 0 to below 1 (0.05: 5 %)")


def _tracking_uri(cfg: StudyConfig, own: dict, warn) -> str:
    """The study's MLflow store: its own (recorded when it started, resolved to an absolute path), or
    ``--tracking-uri``; a continuation logging elsewhere than its own store says so."""
    from coopt.tracking.mlflow_tracker import resolve_uri

    asked = resolve_uri(cfg.tracking_uri) if cfg.tracking_uri else None
    recorded = own.get("tracking_uri")
    if recorded is None:                  # fresh, or a study from before the store was recorded
        return asked or resolve_uri(None)
    if asked is not None and asked != resolve_uri(recorded):
        warn(f"coopt search: study '{cfg.study}' has its MLflow runs in {recorded}; this run logs to {asked}")
        return asked
    return resolve_uri(recorded)


def _check_endpoints(cfg: StudyConfig, continued: bool) -> None:
    """The MLflow store and the Ray address answer (each within seconds), before the study starts."""
    from coopt.study.cluster import check_ray_address
    from coopt.tracking.mlflow_tracker import check_tracking_uri

    check_tracking_uri(cfg.tracking_uri, must_exist=continued and cfg.tracking_uri is not None)
    if cfg.ray_address:
        check_ray_address(cfg.ray_address)


def _undo_empty_study(cfg: StudyConfig, created: bool) -> None:
    """A run that failed in a folder it created, before any trial completed: remove the folder (and the
    study it created in an outside storage), so that a refused or failed run leaves nothing behind."""
    import optuna
    from optuna.trial import TrialState

    sdir = cfg.study_dir
    try:
        store = open_storage(cfg.storage, sdir, create=False)
        study = optuna.load_study(study_name=cfg.study, storage=store)
        if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return
        if created and cfg.storage is not None:
            optuna.delete_study(study_name=cfg.study, storage=store)
    except KeyError:
        pass
    except Exception:
        return                            # the storage is unreachable now: keep what may be needed
    shutil.rmtree(sdir, ignore_errors=True)


def _run_locked(cfg: StudyConfig, space: SearchSpace, text: str, stored: Stored | None, lock, on_progress,
                evaluate, warn, on_continue) -> dict:
    quiet_optuna()
    import optuna
    from optuna.trial import TrialState

    from coopt.study.cluster import RayCluster
    from coopt.study.front import front_hypervolume, pareto_front

    existed = stored is not None or (cfg.study_dir / "study.json").exists()
    meta = prepare_study_dir(cfg, space, text, stored)
    cfg = replace(cfg, sampler=meta["settings"]["sampler"])
    sdir = cfg.study_dir
    storage = open_storage(cfg.storage, sdir)
    directions = [d for _, d in space.objectives]
    study = optuna.create_study(study_name=cfg.study, storage=storage, load_if_exists=True, directions=directions)
    if study.user_attrs.get(SETTINGS_ATTR) is None:
        study.set_user_attr(SETTINGS_ATTR, meta["settings"])
    if study.user_attrs.get(SPACE_ATTR) is None:       # the space's content travels with the study
        study.set_user_attr(SPACE_ATTR, text)
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
        mlflow_call(cfg.tracking_uri, tracker.log_trial, records[n])
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
            mlflow_call(cfg.tracking_uri, tracker.update_front, list(records.values()), step=step)
            last_front[0] = time.time()
        recs = list(records.values())
        return len(pareto_front(recs, space.objectives)), front_hypervolume(recs, space.objectives, space.reference)

    def report(last: TrialRecord | None = None):
        fs, hv = front_update()
        if on_progress:
            on_progress(StudyProgress(len(records), total, sum(r.feasible for r in records.values()), fs, hv,
                                      last, tuple(n for n, _ in space.objectives)))

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
        mlflow_call(cfg.tracking_uri, tracker.log_trial, rec)
        step += 1
        report(rec)

    def fail(trial, rerun: bool):
        """Fail a trial of this run (one already told is left as it is); ``rerun``: queue its design."""
        told = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if rerun and trial.params and told.state == TrialState.FAIL:
            study.enqueue_trial(dict(trial.params), user_attrs={"coopt.rerun_of": trial.number},
                                skip_if_exists=False)

    remaining = total - len(records)
    status = "FINISHED"
    errors: list[str] = []
    in_flight: dict = {}
    try:
        report()
        if remaining > 0:
            from coopt.study.warmup import compile_kernels
            compile_kernels(space, cfg.energy, say=lambda line: print(line, file=sys.stderr, flush=True))
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
            mlflow_call(cfg.tracking_uri, tracker.finish, status)
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
            try:                                    # a trial this run asked for is never left RUNNING
                params = space.suggest(trial)
                again = by_design.get(design_key(params))
                if again is not None:               # proposed again: reuse the record, no evaluation
                    finish(trial, replace(again, number=trial.number, seconds=0.0, started_at=None,
                                          finished_at=None))
            except BaseException:
                fail(trial, rerun=False)
                raise
            if again is not None:
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
        try:
            finish(trial, rec)
        except BaseException:
            fail(trial, rerun=True)                 # not stored (a full disk?): its design runs again next time
            raise
        finished += 1
        deaths = 0
        submit(i)
