"""Run a study: Ray actors ask Optuna for designs, evaluate them and tell the results.

The driver (this module, in the ``coopt search`` process) keeps exactly
``workers`` trials in flight, logs every finished trial to MLflow (one writer
for the store), keeps the Pareto front current, and makes the study
resumable: a trial's record is written before it is told to Optuna, trials
left RUNNING by a killed process are failed and their designs re-queued, and
trials already logged to MLflow are never logged twice.  An actor that dies
mid-trial has its trial failed and re-queued and is replaced.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from coopt.errors import CooptError
from coopt.study.records import TrialRecord, read_records, write_record
from coopt.study.samplers import make_sampler
from coopt.study.space import SearchSpace, load_space

FAULT_ENV = "COOPT_FAULT_DIE_ON_TRIAL"      # tests: an actor exits abruptly on this trial number (once)


@dataclass
class StudyConfig:
    space_path: str
    study: str
    trials: int = 50
    workers: int = 2
    sampler: str = "nsga2"
    seed: int = 0
    storage: str | None = None
    tracking_uri: str | None = None
    ray_address: str | None = None
    root: str = field(default_factory=lambda: str(Path.cwd() / "mlruns"))

    @property
    def study_dir(self) -> Path:
        return Path(self.root) / "studies" / self.study


def study_dir(name: str, root: str | Path | None = None) -> Path:
    return Path(root or Path.cwd() / "mlruns") / "studies" / name


def make_storage(spec: str | None, sdir: Path):
    """Journal file in the study folder by default; an RDB URL or grpc://host:port for clusters."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if spec is None or spec.startswith("journal:") or spec.endswith(".journal"):
        path = str(sdir / "optuna.journal") if spec is None else spec.removeprefix("journal:")
        return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    if spec.startswith("grpc://"):
        host, _, port = spec.removeprefix("grpc://").partition(":")
        return optuna.storages.GrpcStorageProxy(host=host, port=int(port or 13000))
    return optuna.storages.RDBStorage(spec)


def _quiet_optuna():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class TrialWorker:
    """A Ray actor: its own sampler on the shared storage; one ask-evaluate-tell per call."""

    def __init__(self, cfg: dict, worker_id: str, seed: int | None):
        _quiet_optuna()
        import optuna

        self.cfg = StudyConfig(**cfg)
        self.worker_id = worker_id
        sdir = self.cfg.study_dir
        self.space = load_space(sdir / "search_space.yaml")
        self.study = optuna.load_study(study_name=self.cfg.study, storage=make_storage(self.cfg.storage, sdir),
                                       sampler=make_sampler(self.cfg.sampler, self.space, seed, self.cfg.trials))

    def run_one(self) -> dict:
        from optuna.trial import TrialState
        from coopt.study.trial import evaluate_design

        trial = self.study.ask()
        trial.set_user_attr("coopt.worker", self.worker_id)
        try:
            params = self.space.suggest(trial)
            self._maybe_die(trial.number)
            sp = self.space
            rec = self._repeat(trial, params) or evaluate_design(trial.number, params, sp.template.name, sp.template_params(params), sp.dataflow,
                                  sp.network, sp.mapper, sp.budgets, sp.objectives, worker=self.worker_id)
            for key, value in sorted(rec.violations.items()):
                trial.set_constraint(key, value)
            write_record(self.cfg.study_dir, rec)            # before tell: a told trial always has a record
            self.study.tell(trial, rec.objectives)
            return {"record": rec.to_json()}
        except Exception as e:  # a bug or an unexpected input: fail this trial, keep the study going
            self.study.tell(trial, state=TrialState.FAIL)
            return {"error": f"{type(e).__name__}: {e}", "number": trial.number}

    def _repeat(self, trial, params) -> TrialRecord | None:
        """A design already evaluated (samplers do re-propose on discrete spaces): reuse its record."""
        from dataclasses import replace
        from optuna.trial import TrialState
        from coopt.study.records import read_record

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.params == trial.params:
                rec = read_record(self.cfg.study_dir, t.number)
                if rec is not None:
                    return replace(rec, number=trial.number, worker=self.worker_id, seconds=0.0)
        return None

    def _maybe_die(self, number: int):
        target = os.environ.get(FAULT_ENV)
        marker = self.cfg.study_dir / ".fault-injected"
        if target is not None and int(target) == number and not marker.exists():
            marker.write_text(str(number))
            os._exit(1)


@dataclass
class StudyProgress:
    done: int
    total: int
    feasible: int
    front_size: int
    hypervolume: float


def _settings(cfg: StudyConfig, space: SearchSpace) -> dict:
    return {"study": cfg.study, "space_file": str(Path(cfg.space_path).resolve()), "space_name": space.name,
            "template": space.template.name, "dataflow": space.dataflow, "network": space.network.name,
            "sampler": cfg.sampler, "seed": cfg.seed, "objectives": space.objectives, "budgets": space.budgets,
            "reference_point": space.reference, "mapper": {"metric": list(space.mapper.metric),
                                                           "budget": space.mapper.budget,
                                                           "strategy": space.mapper.strategy}}


def prepare_study_dir(cfg: StudyConfig, space: SearchSpace) -> dict:
    """Create or check the study folder; a study keeps its search space and sampler for life."""
    sdir = cfg.study_dir
    sdir.mkdir(parents=True, exist_ok=True)
    text = Path(cfg.space_path).read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    meta_path = sdir / "study.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["space_sha256"] != digest:
            raise CooptError(f"study '{cfg.study}' was started with a different search space "
                             f"({meta['settings']['space_file']})", key="--study",
                             expected="the same search-space file to resume, or a new study name")
        if meta["settings"]["sampler"] != cfg.sampler:
            raise CooptError(f"study '{cfg.study}' uses the {meta['settings']['sampler']} sampler", key="--sampler",
                             expected=f"--sampler {meta['settings']['sampler']} to resume it, or a new study name")
        return meta
    meta = {"space_sha256": digest, "settings": _settings(cfg, space), "created": time.time()}
    (sdir / "search_space.yaml").write_text(text)
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def recover_stale_trials(study) -> list[int]:
    """Fail trials left RUNNING by a dead process and queue their designs again."""
    from optuna.trial import TrialState

    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        if t.params:
            study.enqueue_trial(dict(t.params), user_attrs={"coopt.rerun_of": t.number}, skip_if_exists=False)
        failed.append(t.number)
    return failed


def _fail_worker_trials(study, worker_id: str) -> list[int]:
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("coopt.worker") == worker_id:
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            if t.params:
                study.enqueue_trial(dict(t.params), user_attrs={"coopt.rerun_of": t.number}, skip_if_exists=False)
            out.append(t.number)
    return out


def _ray_start(cfg: StudyConfig):
    import logging

    import ray

    if ray.is_initialized():
        return False
    # Ray 2.60 turns token auth on for new local clusters and says so; keep it, quietly.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if cfg.ray_address:
        ray.init(address=cfg.ray_address, log_to_driver=False, configure_logging=False)
        return True
    tmp = tempfile.mkdtemp(prefix="coopt-ray-")             # short: Ray's socket paths must stay < 108 chars
    link = cfg.study_dir / "ray"
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() else shutil.rmtree(link, ignore_errors=True)
    link.symlink_to(tmp)
    ray.init(num_cpus=max(1, cfg.workers), include_dashboard=False, _node_ip_address="127.0.0.1",
             _temp_dir=tmp, log_to_driver=False, configure_logging=False)
    return True


def completed_records(study, sdir: Path) -> dict[int, TrialRecord]:
    from optuna.trial import TrialState

    done = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    return {r.number: r for r in read_records(sdir) if r.number in done}


def run_study(cfg: StudyConfig, *, on_progress=None) -> dict:
    """Run (or resume) a study until ``cfg.trials`` trials are complete; returns a summary."""
    _quiet_optuna()
    import optuna

    from coopt.study.front import front_hypervolume, pareto_front
    from coopt.tracking import StudyTracker

    space = load_space(cfg.space_path)
    if cfg.trials < 1 or cfg.workers < 1:
        raise CooptError("--trials and --workers must be at least 1", key="--trials/--workers")
    make_sampler(cfg.sampler, space, cfg.seed, cfg.trials)          # fail fast on a bad sampler
    meta = prepare_study_dir(cfg, space)
    sdir = cfg.study_dir
    storage = make_storage(cfg.storage, sdir)
    study = optuna.create_study(study_name=cfg.study, storage=storage, load_if_exists=True,
                                directions=[d for _, d in space.objectives])
    stale = recover_stale_trials(study)
    tracker = StudyTracker(cfg.tracking_uri, cfg.study, meta["settings"], space.objectives, space.reference,
                           space_file=str(sdir / "search_space.yaml"))
    logged = tracker.start()
    records = completed_records(study, sdir)
    for n in sorted(set(records) - logged):                          # told but not logged before a crash
        tracker.log_trial(records[n])
    total = cfg.trials
    if space.size() is not None:
        total = min(total, space.size()) if cfg.sampler == "grid" else total
    step = len(records)

    def front_update(force=False, _last=[0.0]):  # noqa: B006 - a deliberate per-call memo
        if force or time.time() - _last[0] > 3.0:
            tracker.update_front(list(records.values()), step=step)
            _last[0] = time.time()
        front = pareto_front(list(records.values()), space.objectives)
        return len(front), front_hypervolume(list(records.values()), space.objectives, space.reference)

    def report():
        fs, hv = front_update()
        if on_progress:
            on_progress(StudyProgress(len(records), total, sum(r.feasible for r in records.values()), fs, hv))

    remaining = total - len(records)
    status = "FINISHED"
    started_ray = False
    errors = []
    try:
        report()
        if remaining > 0:
            import ray

            started_ray = _ray_start(cfg)
            actor_cls = ray.remote(num_cpus=1, max_restarts=0)(TrialWorker)
            session = uuid.uuid4().hex[:8]
            cfg_dict = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
            gen = [0] * cfg.workers

            def spawn(i):
                seed = None if cfg.seed is None else cfg.seed * 1000 + i + 1000 * 97 * gen[i]
                wid = f"{session}-{i}-{gen[i]}"
                return actor_cls.remote(cfg_dict, wid, seed), wid

            actors = [spawn(i) for i in range(cfg.workers)]
            in_flight = {}
            for i in range(min(cfg.workers, remaining)):
                in_flight[actors[i][0].run_one.remote()] = i
            finished = 0
            while in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                ref = ready[0]
                i = in_flight.pop(ref)
                try:
                    out = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                    _fail_worker_trials(study, actors[i][1])
                    gen[i] += 1
                    actors[i] = spawn(i)
                    out = None
                if out is not None and "record" in out:
                    rec = TrialRecord.from_json(out["record"])
                    records[rec.number] = rec
                    tracker.log_trial(rec)
                    step += 1
                    finished += 1
                    report()
                elif out is not None:
                    errors.append(out["error"])
                    if len(errors) >= 5 and len(errors) > finished:
                        raise CooptError(f"trials keep failing, last: {out['error']}", key="search")
                if finished + len(in_flight) < remaining:
                    in_flight[actors[i][0].run_one.remote()] = i
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        try:
            front_update(force=True)
            tracker.finish(status)
        finally:
            if started_ray:
                import ray
                ray.shutdown()
    front = pareto_front(list(records.values()), space.objectives)
    return {"study": cfg.study, "trials": len(records), "feasible": sum(r.feasible for r in records.values()),
            "front": [r.number for r in front], "errors": errors, "recovered": stale,
            "hypervolume": front_hypervolume(list(records.values()), space.objectives, space.reference),
            "study_dir": str(sdir)}
