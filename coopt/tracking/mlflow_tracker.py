"""Log a study to MLflow: one experiment per study, a study run holding the front, a run per trial.

The trial records on disk are the source of truth; this module only mirrors
them into MLflow, so it is written to be re-run safely: ``start`` finds the
study's run again on a resume, deletes trial runs a killed process left
half-logged (RUNNING, KILLED) or logged twice, and reports which trials are
already logged; ``log_trial`` never logs a trial twice: exactly one FINISHED
run per trial, however often the driver is killed.  What people see (names, digits, the front's Markdown,
the default view) comes from ``coopt.tracking.present``.  MLflow is imported
inside the functions, so importing this module (``coopt.tracking.ui`` does)
stays cheap.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

from coopt.study.front import front_equivalents, front_hypervolume, is_mapped, pareto_front
from coopt.study.records import METRIC_NAMES, TrialRecord
from coopt.tracking.present import (PRECISE, VIEW_KEY, eval_seconds, experiment_description, experiment_name, finite,
                                    fmt, front_markdown, front_table_html, run_link, run_name, run_times_ms, trial_metrics,
                                    view_state)
from coopt.numbers import round_sig
from coopt.yamlio import dumps_yaml

LEGACY_EXPERIMENT = "coopt"          # stores written before one experiment per study
MAX_PARAM_LEN = 6000                 # MLflow's limit on a param value
BATCH = 100                          # MLflow's limit on params/tags per log_batch
LAYER_COLUMNS = ("name", "count", "found", "energy_pj", "cycles", "utilization", "pj_per_mac",
                 "mappings_evaluated", "seconds", "reason")
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}   # MLflow 3: open on runs, not GenAI


def default_tracking_uri() -> str:
    """``sqlite:///<cwd>/mlruns/mlflow.db`` (MLflow 3.17's plain file store refuses to work)."""
    return f"sqlite:///{Path.cwd().resolve() / 'mlruns' / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file (absolute) of a ``sqlite:///`` URI, None for any other store."""
    return Path(uri[len("sqlite:///"):]).resolve() if uri.startswith("sqlite:///") else None


def resolve_uri(uri: str | None) -> str:
    """The default store, or ``uri`` with a relative sqlite path made absolute (cwd at call time)."""
    db = sqlite_path(uri) if uri else None
    return default_tracking_uri() if not uri else f"sqlite:///{db}" if db is not None else uri


TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")
CHECK_TIMEOUT_S = 5


def check_tracking_uri(uri: str, *, must_exist: bool = False) -> None:
    """One line, within seconds, when the MLflow store cannot be used: a malformed URI, a tracking server
    that does not answer, a database that refuses, a sqlite store whose folder is not here (``must_exist``:
    the store a continued study recorded) or whose folder cannot be created.  Creates nothing."""
    from coopt.errors import CooptError

    scheme = uri.partition("://")[0].partition("+")[0] if "://" in uri else ""
    if scheme not in TRACKING_SCHEMES or uri.endswith("://"):
        raise CooptError(f"tracking URI {uri!r} is not one MLflow can use", key="--tracking-uri",
                         expected="http://HOST:PORT of an MLflow server, sqlite:///FILE.db, or a database URL")
    db = sqlite_path(uri)
    if db is not None:
        if must_exist and not db.parent.is_dir():     # its folder at least (the file comes with the first run)
            raise CooptError(f"the study's MLflow store {db} is not on this machine", key="--tracking-uri",
                             expected="the machine (or shared folder) that has it, or --tracking-uri URI to log "
                                      "this run's trials elsewhere")
        folder = db.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise CooptError(f"cannot create the MLflow store {db} ({folder} is not a writable folder)",
                             key="--tracking-uri", expected="a sqlite:/// path in a writable folder")
        return
    if scheme in ("http", "https"):
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=CHECK_TIMEOUT_S) as r:
                if r.status == 200:
                    return
                why = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            why = f"HTTP {e.code}"
        except (OSError, ValueError) as e:
            why = str(getattr(e, "reason", None) or e)[:200]
        raise CooptError(f"no MLflow tracking server answers at {uri} ({why})", key="--tracking-uri",
                         expected="a running `mlflow server` at that address")
    if scheme in ("postgresql", "mysql", "mssql"):
        import sqlalchemy as sa
        try:
            engine = sa.create_engine(uri, connect_args={"connect_timeout": CHECK_TIMEOUT_S})
            with engine.connect():
                pass
            engine.dispose()
        except Exception as e:
            while (e.__cause__ or e.__context__) is not None:
                e = e.__cause__ or e.__context__
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise CooptError(f"the MLflow store {uri.split('@')[-1]} cannot be used: {first}",
                             key="--tracking-uri", expected="a reachable database with its driver installed "
                                                            "(postgresql+psycopg://, mysql+pymysql://)") from None


def artifact_root(uri: str) -> Path:
    """Artifacts live next to the sqlite database (``mlruns/artifacts`` by default)."""
    db = sqlite_path(uri)
    return db.parent / "artifacts" if db is not None else Path.cwd().resolve() / "mlruns" / "artifacts"


def quiet_mlflow() -> None:
    """Silence MLflow's start-up chatter (sqlite migrations, alembic, telemetry)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")   # "View run/experiment" per run
    for name in ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration", "mlflow.tracking",
                 "mlflow.utils.requirements_utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")


def param_value(value) -> str:
    """A param as MLflow stores it: lists/dicts as JSON, cut to MLflow's limit."""
    text = json.dumps(value, sort_keys=True, default=str) if isinstance(value, (list, tuple, dict)) else str(value)
    return text[:MAX_PARAM_LEN]


def layers_csv(rec: TrialRecord) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LAYER_COLUMNS)
    for layer in rec.layers:
        w.writerow(["" if getattr(layer, c) is None else getattr(layer, c) for c in LAYER_COLUMNS])
    return buf.getvalue()


def front_csv(front: list[TrialRecord]) -> str:
    """trial, every param (union over the front, first-seen order), every metric."""
    params = list(dict.fromkeys(k for r in front for k in r.params))
    metrics = list(dict.fromkeys([*METRIC_NAMES, *(k for r in front for k in r.metrics)]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", *params, *metrics])
    for r in front:
        w.writerow([r.number, *(r.params.get(k, "") for k in params), *(r.metrics.get(k, "") for k in metrics)])
    return buf.getvalue()


def filter_string(tags: dict[str, str]) -> str:
    """An MLflow search filter on tags (quotes chosen so that names with a quote still work)."""
    parts = []
    for key, value in tags.items():
        q = '"' if "'" in value else "'"
        parts.append(f"tags.`{key}` = {q}{value}{q}")
    return " and ".join(parts)


class StudyTracker:
    """Mirror one study into MLflow (see the module docstring)."""

    def __init__(self, tracking_uri: str | None, study_name: str, settings: dict,
                 objectives: list[tuple[str, str]], reference: list[float], space_file: str | None = None):
        self.tracking_uri = resolve_uri(tracking_uri)
        self.study_name = study_name
        self.settings = dict(settings)
        self.budgets = dict(self.settings.get("budgets") or {})
        self.objectives = [tuple(o) for o in objectives]
        self.precise = {n for n, _ in self.objectives} | {"area_mm2", "power_mw"}    # what orders a front
        self.reference = list(reference)
        self.space_file = space_file
        self.client = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.trial_runs: dict[int, str] = {}     # trial number -> its FINISHED trial run
        self.pareto: dict[int, bool] = {}        # trial number -> the run's current ``pareto`` tag
        self.same: dict[int, str] = {}           # front entry -> its ``same_objectives`` tag (tied trials)
        self._view_params: list[str] | None = None
        self._front_key: tuple | None = None     # the front last drawn
        self._note: str | None = None
        self._records: list[TrialRecord] = []    # the records last given to update_front
        self._drawn = 0                          # how many records the plots show

    # -- start / finish ---------------------------------------------------------------------
    def start(self) -> set[int]:
        """Open (or re-open) the study's experiment and run; return the trial numbers already logged."""
        quiet_mlflow()
        import mlflow
        from mlflow.tracking import MlflowClient

        root = artifact_root(self.tracking_uri)
        db = sqlite_path(self.tracking_uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            root.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        self.client = client = MlflowClient(self.tracking_uri)
        name = experiment_name(self.study_name)
        tags = {**EXPERIMENT_TAGS, "coopt.study": self.study_name}
        exp = client.get_experiment_by_name(name)
        if exp is None:
            self.experiment_id = client.create_experiment(
                name, artifact_location=str(root / name.replace("/", "-")) if db is not None else None, tags=tags)
        else:
            self.experiment_id = exp.experiment_id
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            for k, v in tags.items():
                client.set_experiment_tag(self.experiment_id, k, v)
        if self.space_file:
            import yaml
            params = (yaml.safe_load(Path(self.space_file).read_text()) or {}).get("parameters") or {}
            self._set_view(list(params))

        parents = self._search(self._filter("parent"))
        if parents:
            self.parent_id = parents[0].info.run_id
            if parents[0].info.status != "RUNNING":
                client.update_run(self.parent_id, status="RUNNING")
        else:
            self._create_parent()
        client.set_experiment_tag(self.experiment_id, "mlflow.note.content", experiment_description(
            self.study_name, self.settings, self.objectives, run_link(self.experiment_id, self.parent_id)))

        done: set[int] = set()
        for run in self._search(self._filter("trial")):
            number = int(run.data.tags["coopt.trial"])
            if run.info.status == "FINISHED" and number not in done:
                done.add(number)
                self.trial_runs[number] = run.info.run_id
                self.pareto[number] = run.data.tags.get("pareto") == "true"
            else:              # half-logged by a killed run, or a second copy: the trial is logged (again) once
                client.delete_run(run.info.run_id)
        return done

    def finish(self, status: str = "FINISHED") -> None:
        """Draw the front once more if trials came in since, then end the study run."""
        if self.client is not None and self.parent_id is not None:
            if self._records and len(self._records) != self._drawn:
                front = pareto_front(self._records, self.objectives)
                self._draw(self._records, front)
            self.client.set_terminated(self.parent_id, status)

    def _set_view(self, params: list[str]) -> None:
        """The runs view ``coopt ui`` links to (MLflow's shared-view tag; see present.view_state)."""
        if params != self._view_params:
            self.client.set_experiment_tag(self.experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}",
                                           view_state(self.objectives, params, self.budgets))
            self._view_params = params

    def _create_parent(self) -> None:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=self.study_name, tags={
            "coopt.study": self.study_name, "coopt.role": "parent",
            "coopt.objectives": json.dumps(self.objectives), "coopt.reference": json.dumps(self.reference),
            "mlflow.note.content": front_markdown(self.study_name, [], [], self.objectives, self.budgets, 0.0, {})})
        self.parent_id = run.info.run_id
        params = [Param(str(k)[:250], param_value(v)) for k, v in self.settings.items()]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(self.parent_id, params=params[i:i + BATCH])
        if self.space_file:
            with tempfile.TemporaryDirectory() as tmp:
                dst = Path(tmp) / "search_space.yaml"
                dst.write_bytes(Path(self.space_file).read_bytes())
                self.client.log_artifact(self.parent_id, str(dst))

    def _filter(self, role: str, trial: int | None = None) -> str:
        tags = {"coopt.study": self.study_name, "coopt.role": role}
        if trial is not None:
            tags["coopt.trial"] = str(trial)
        return filter_string(tags)

    def _search(self, filter_str: str) -> list:
        """Every run of the experiment matching the filter, all pages, oldest first."""
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_str, max_results=1000,
                                           order_by=["attributes.start_time ASC"], page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    # -- trials -----------------------------------------------------------------------------
    def log_trial(self, rec: TrialRecord) -> None:
        """One FINISHED run per trial, timed as its evaluation; a trial already logged is left alone."""
        if self._require() and rec.number in self.trial_runs:
            return
        found = self._search(self._filter("trial", rec.number))
        existing = [r for r in found if r.info.status == "FINISHED"]
        if existing:           # logged by another tracker since start()
            self.trial_runs[rec.number] = existing[0].info.run_id
            self.pareto[rec.number] = existing[0].data.tags.get("pareto") == "true"
            return
        for r in found:        # a half-logged run of this trial: replaced by the complete one below
            self.client.delete_run(r.info.run_id)
        from mlflow.entities import Metric, Param

        if self._view_params is None:
            self._set_view(list(rec.params))
        client = self.client
        start_ms, end_ms = run_times_ms(rec, time.time())
        run = client.create_run(self.experiment_id, start_time=start_ms, run_name=run_name(rec), tags={
            "mlflow.parentRunId": self.parent_id, "coopt.study": self.study_name, "coopt.role": "trial",
            "coopt.trial": str(rec.number), "feasible": "true" if rec.feasible else "false", "pareto": "false",
            "screened": "true" if rec.screened else "false",
            **({} if is_mapped(rec) else {"not_mapped": "; ".join(rec.reasons)[:5000] or "not mapped"}),
            "mlflow.note.content": trial_note(rec, self.budgets)})
        run_id = run.info.run_id
        params = {**rec.params, "template": rec.template, "dataflow": rec.dataflow, "network": rec.network,
                  **({"mapper_budget": rec.mapper_budget} if rec.mapper_budget else {})}
        plist = [Param(str(k)[:250], param_value(v)) for k, v in params.items()]
        mlist = [Metric(k, v, end_ms, 0) for k, v in trial_metrics(rec, self.budgets, self.precise).items()]
        client.log_batch(run_id, metrics=mlist, params=plist[:BATCH])
        for i in range(BATCH, len(plist), BATCH):
            client.log_batch(run_id, params=plist[i:i + BATCH])
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "arch.yaml").write_text(dumps_yaml(rec.arch_yaml), encoding="utf-8")
            (Path(tmp) / "layers.csv").write_text(layers_csv(rec), encoding="utf-8")
            client.log_artifacts(run_id, tmp)
        client.log_table(run_id, layers_table(rec), "tables/layers.json")
        table = breakdown_table(rec)
        if table is not None:
            client.log_table(run_id, table, "tables/breakdown.json")
        client.set_terminated(run_id, "FINISHED", end_time=end_ms)
        self.trial_runs[rec.number] = run_id
        self.pareto[rec.number] = False

    # -- the front --------------------------------------------------------------------------
    def update_front(self, records: list[TrialRecord], step: int) -> dict:
        """Log front size and hypervolume; when the front moves, rewrite the study run's description,
        redraw the plots and re-tag the runs whose membership changed."""
        self._require()
        from mlflow.entities import Metric

        records = list(records)
        front = pareto_front(records, self.objectives)
        hv = front_hypervolume(records, self.objectives, self.reference)
        now = int(time.time() * 1000)
        values = {"front_size": len(front), "hypervolume": round_sig(hv, PRECISE), "trials": len(records),
                  "feasible_trials": sum(1 for r in records if r.feasible)}
        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])
        self._records = records
        key = tuple(r.number for r in front)
        if key != self._front_key:
            self._draw(records, front)
            members = set(key)
            for number, run_id in self.trial_runs.items():
                on = number in members
                if self.pareto.get(number) != on:
                    self.client.set_tag(run_id, "pareto", "true" if on else "false")
                    self.pareto[number] = on
        for number, others in front_equivalents(records, self.objectives).items():
            text = ", ".join(f"t{n:03d}" for n in others)
            if number in self.trial_runs and self.same.get(number, "") != text:
                self.client.set_tag(self.trial_runs[number], "same_objectives", text)   # the front page lists them
                self.same[number] = text
        # last, after the runs' tags: a reader that sees this description also sees those tags
        note = front_markdown(self.study_name, records, front, self.objectives, self.budgets, hv, self._links())
        if note != self._note:                    # counts or front changed: one tag write
            self.client.set_tag(self.parent_id, "mlflow.note.content", note)
            self._note = note
        return {"front": list(key), "hypervolume": hv, "front_size": len(front)}

    def _links(self) -> dict[int, str]:
        return {n: run_link(self.experiment_id, rid) for n, rid in self.trial_runs.items()}

    def _draw(self, records: list[TrialRecord], front: list[TrialRecord]) -> None:
        from coopt.tracking.plots import front_html, front_png

        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / "pareto"
            d.mkdir()
            (d / "front.csv").write_text(front_csv(front), encoding="utf-8")
            front_png(records, front, self.objectives, d / "front.png")
            front_html(records, front, self.objectives, d / "front.html")
            hv = front_hypervolume(records, self.objectives, self.reference)
            (d / "front_table.html").write_text(front_table_html(self.study_name, records, front, self.objectives,
                                                                 self.budgets, hv), encoding="utf-8")
            self.client.log_artifacts(self.parent_id, str(d), "pareto")
        self._front_key = tuple(r.number for r in front)
        self._drawn = len(records)

    def _require(self) -> bool:
        if self.client is None or self.parent_id is None:
            raise RuntimeError("StudyTracker.start() must be called first")
        return True


def trial_note(rec: TrialRecord, budgets: dict) -> str:
    """A trial run's description: the design, whether it fits, and why not."""
    lines = [f"**{run_name(rec)}** — {rec.template}" + (f" ({rec.dataflow})" if rec.dataflow else "")
             + f" on {rec.network}: " + ("feasible" if rec.feasible else "**infeasible**")]
    lines += [f"- {r}" for r in rec.reasons]
    if rec.not_mapped:
        from coopt.workload.networks import not_mapped_summary
        lines.append(not_mapped_summary(rec.not_mapped))
    secs = eval_seconds(rec)
    if secs is not None:
        lines.append(f"Evaluated in {fmt(secs, 3)} s" + (f" by {rec.worker}" if rec.worker else "") + ".")
    lines.append("Tables: `tables/layers.json` (per layer), `tables/breakdown.json` (energy and area per "
                 "component); `arch.yaml` is the architecture.")
    return "\n\n".join(lines)


def layers_table(rec: TrialRecord):
    """Per-layer table for ``log_table`` (energies in µJ per execution, readable digits)."""
    import pandas as pd
    from coopt.tracking.present import round_sig

    rows = [{"layer": l.name, "count": l.count, "mapped": bool(l.found),
             "energy_uj": round_sig(l.energy_pj / 1e6) if finite(l.energy_pj) else None,
             "cycles": l.cycles, "utilization": round(l.utilization, 4) if finite(l.utilization) else None,
             "pj_per_mac": round_sig(l.pj_per_mac) if finite(l.pj_per_mac) else None,
             "mappings_evaluated": l.mappings_evaluated, "reason": l.reason} for l in rec.layers]
    return pd.DataFrame(rows)


def breakdown_table(rec: TrialRecord):
    """Energy (per inference) and area per component, with shares; None when it cannot be computed."""
    import pandas as pd
    from coopt.study.breakdown import component_breakdown
    from coopt.tracking.present import round_sig

    try:
        parts = component_breakdown(rec)
    except Exception as e:          # a record this code cannot re-read must not stop the study
        logging.getLogger(__name__).warning("trial %s: no energy/area breakdown (%s)", rec.number, e)
        return None
    energy = sum(p.energy_uj for p in parts) or 1.0
    area = sum(p.area_mm2 for p in parts) or 1.0
    return pd.DataFrame([{"component": p.component, "instances": p.instances,
                          "energy_uj": round_sig(p.energy_uj), "energy_pct": round(100 * p.energy_uj / energy, 1),
                          "area_mm2": round_sig(p.area_mm2), "area_pct": round(100 * p.area_mm2 / area, 1)}
                         for p in parts])

def log_comparison(tracking_uri: str | None, study_name: str, png: Path) -> bool:
    """Attach a comparison picture to the study run (``compare/``); False when the study has no run."""
    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(resolve_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment_name(study_name))
    if exp is None:
        return False
    runs = client.search_runs([exp.experiment_id], filter_string({"coopt.study": study_name, "coopt.role": "parent"}))
    if not runs:
        return False
    client.log_artifact(runs[0].info.run_id, str(png), "compare")
    return True


def log_verification(tracking_uri: str | None, study_name: str, number: int, engine: str, metrics: dict,
                     csv_text: str, flagged: bool) -> bool:
    """Attach a verification against a reference engine to a trial's run (metrics, CSV, tag).

    Returns False when the trial has no FINISHED run in the store (nothing is created then).
    """
    quiet_mlflow()
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = resolve_uri(tracking_uri)
    client = MlflowClient(uri)
    exps = [e for e in (client.get_experiment_by_name(n) for n in (experiment_name(study_name), LEGACY_EXPERIMENT))
            if e is not None]
    if not exps:
        return False
    runs = client.search_runs([e.experiment_id for e in exps], filter_string(
        {"coopt.study": study_name, "coopt.role": "trial", "coopt.trial": str(number)}))
    runs = [r for r in runs if r.info.status == "FINISHED"]
    if not runs:
        return False
    run_id = runs[0].info.run_id
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(f"verify_{engine}_{k}", float(v), now, 0)
                                      for k, v in metrics.items() if finite(v)])
    client.set_tag(run_id, f"verified_{engine}", "flagged" if flagged else "ok")
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"verify_{engine}.csv"
        p.write_text(csv_text, encoding="utf-8")
        client.log_artifact(run_id, str(p))
    return True
