"""Log a study to MLflow: a parent run per study, a child run per trial, the front on the parent.

The trial records on disk are the source of truth; this module only mirrors
them into MLflow, so it is written to be re-run safely: ``start`` finds the
study's parent run again on a resume, closes child runs a killed process left
RUNNING, and reports which trials are already logged; ``log_trial`` never
logs a trial twice.  MLflow is imported inside the functions, so importing
this module (``coopt.tracking.ui`` does) stays cheap.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

from coopt.study.front import front_hypervolume, pareto_front
from coopt.study.records import METRIC_NAMES, TrialRecord
from coopt.yamlio import dumps_yaml

EXPERIMENT = "coopt"
MAX_PARAM_LEN = 6000                 # MLflow's limit on a param value
BATCH = 100                          # MLflow's limit on params/tags per log_batch
LAYER_COLUMNS = ("name", "count", "found", "energy_pj", "cycles", "utilization", "pj_per_mac",
                 "mappings_evaluated", "seconds", "reason")
UNITS = {"energy_uj": "energy / inference (µJ)", "throughput_ips": "throughput (inferences/s)",
         "latency_ms": "latency (ms)", "latency_cycles": "latency (cycles)", "area_mm2": "area (mm²)",
         "power_mw": "power (mW)", "onchip_kib": "on-chip SRAM (KiB)", "edp_uj_ms": "EDP (µJ·ms)",
         "macs": "MACs / inference", "mac_instances": "MAC units"}


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


def artifact_root(uri: str) -> Path:
    """Artifacts live next to the sqlite database (``mlruns/artifacts`` by default)."""
    db = sqlite_path(uri)
    return db.parent / "artifacts" if db is not None else Path.cwd().resolve() / "mlruns" / "artifacts"


def quiet_mlflow() -> None:
    """Silence MLflow's start-up chatter (sqlite migrations, alembic, telemetry)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration", "mlflow.tracking",
                 "mlflow.utils.requirements_utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")


def param_value(value) -> str:
    """A param as MLflow stores it: lists/dicts as JSON, cut to MLflow's limit."""
    text = json.dumps(value, sort_keys=True, default=str) if isinstance(value, (list, tuple, dict)) else str(value)
    return text[:MAX_PARAM_LEN]


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def trial_metrics(rec: TrialRecord) -> dict[str, float]:
    """Every finite metric, ``feasible`` as 1/0, ``edp`` alias, one ``violation_<key>`` per budget."""
    out = {k: float(v) for k, v in rec.metrics.items() if finite(v)}
    out["feasible"] = 1.0 if rec.feasible else 0.0
    if "edp_uj_ms" in out:
        out["edp"] = out["edp_uj_ms"]
    out.update({f"violation_{k}": float(v) for k, v in rec.violations.items() if finite(v)})
    return out


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


# -- plots (matplotlib/plotly are imported only when a front is drawn) ------------------------
def plotted(records: list[TrialRecord], objectives) -> list[TrialRecord]:
    """Records with real objective values (an unmappable design only has placeholders)."""
    return [r for r in records if not r.violations.get("unmapped_layers", 0)
            and all(finite(r.metrics.get(name)) for name, _ in objectives)]


def plot_axes(objectives) -> list[tuple[str, str]]:
    """The two first objectives; a single objective is drawn against the trial number."""
    return list(objectives[:2]) if len(objectives) >= 2 else [("trial", "minimize"), *objectives[:1]]


def axis_value(rec: TrialRecord, name: str) -> float:
    return float(rec.number) if name == "trial" else float(rec.metrics[name])


def axis_label(name: str, direction: str) -> str:
    if name == "trial":
        return "trial"
    return f"{UNITS.get(name, name)} {'↓ better' if direction == 'minimize' else '↑ better'}"


def front_png(records, front, objectives, path: Path) -> None:
    """All feasible points grey, infeasible as small x, the front highlighted and connected."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    (xn, xd), (yn, yd) = plot_axes(objectives)
    pts = plotted(records, objectives)
    fig = Figure(figsize=(7.5, 5.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for feasible, style in ((True, dict(marker="o", s=22, c="0.65", label="feasible")),
                            (False, dict(marker="x", s=14, c="tab:red", alpha=0.6, linewidths=0.8,
                                         label="infeasible (over budget)"))):
        sel = [r for r in pts if r.feasible == feasible]
        if sel:
            ax.scatter([axis_value(r, xn) for r in sel], [axis_value(r, yn) for r in sel], **style)
    if front:
        fx, fy = [axis_value(r, xn) for r in front], [axis_value(r, yn) for r in front]
        ax.plot(fx, fy, "-o", color="tab:blue", ms=7, lw=1.5, zorder=3, label=f"Pareto front ({len(front)})")
        labels: dict[tuple[float, float], list[str]] = {}     # coincident designs share one label
        for r, x, y in zip(front, fx, fy):
            labels.setdefault((x, y), []).append(str(r.number))
        for (x, y), numbers in labels.items():
            ax.annotate(",".join(numbers), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(axis_label(xn, xd))
    ax.set_ylabel(axis_label(yn, yd))
    ax.set_title(f"{len(records)} trials, {sum(r.feasible for r in records)} feasible")
    ax.grid(True, alpha=0.3)
    if pts or front:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")


def front_html(records, front, objectives, path: Path) -> None:
    """Interactive plotly scatter; plotly.js is inlined so it works offline in the MLflow UI."""
    import plotly.graph_objects as go

    (xn, xd), (yn, yd) = plot_axes(objectives)
    pts = plotted(records, objectives)

    def hover(r: TrialRecord) -> str:
        lines = [f"<b>trial {r.number}</b>" + ("" if r.feasible else " (infeasible)")]
        lines += [f"{k} = {v}" for k, v in r.params.items()]
        lines += [f"{n} = {r.metrics[n]:.4g}" for n, _ in objectives]
        return "<br>".join(lines)

    def trace(sel, name, **kw):
        return go.Scatter(x=[axis_value(r, xn) for r in sel], y=[axis_value(r, yn) for r in sel], name=name,
                          text=[hover(r) for r in sel], hovertemplate="%{text}<extra></extra>", **kw)

    fig = go.Figure()
    fig.add_trace(trace([r for r in pts if r.feasible], "feasible", mode="markers",
                        marker=dict(color="#a0a0a0", size=7)))
    fig.add_trace(trace([r for r in pts if not r.feasible], "infeasible", mode="markers",
                        marker=dict(color="#d62728", size=6, symbol="x", opacity=0.6)))
    fig.add_trace(trace(front, f"Pareto front ({len(front)})", mode="lines+markers",
                        marker=dict(color="#1f77b4", size=10), line=dict(color="#1f77b4")))
    fig.update_layout(title=f"{len(records)} trials, {sum(r.feasible for r in records)} feasible",
                      xaxis_title=axis_label(xn, xd), yaxis_title=axis_label(yn, yd),
                      template="plotly_white", hovermode="closest")
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


class StudyTracker:
    """Mirror one study into MLflow (see the module docstring)."""

    def __init__(self, tracking_uri: str | None, study_name: str, settings: dict,
                 objectives: list[tuple[str, str]], reference: list[float], space_file: str | None = None):
        self.tracking_uri = resolve_uri(tracking_uri)
        self.study_name = study_name
        self.settings = dict(settings)
        self.objectives = [tuple(o) for o in objectives]
        self.reference = list(reference)
        self.space_file = space_file
        self.client = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.trial_runs: dict[int, str] = {}     # trial number -> its FINISHED child run
        self.pareto: dict[int, bool] = {}        # trial number -> the run's current ``pareto`` tag

    # -- start / finish ---------------------------------------------------------------------
    def start(self) -> set[int]:
        """Open (or re-open) the parent run; return the trial numbers already logged."""
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
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            self.experiment_id = client.create_experiment(
                EXPERIMENT, artifact_location=str(root) if db is not None else None)
        else:
            self.experiment_id = exp.experiment_id
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)

        parents = self._search(self._filter("parent"))
        if parents:
            self.parent_id = parents[0].info.run_id
            if parents[0].info.status != "RUNNING":
                client.update_run(self.parent_id, status="RUNNING")
        else:
            self._create_parent()

        done: set[int] = set()
        for run in self._search(self._filter("trial")):
            number = int(run.data.tags["coopt.trial"])
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
            elif run.info.status == "FINISHED" and number not in done:
                done.add(number)
                self.trial_runs[number] = run.info.run_id
                self.pareto[number] = run.data.tags.get("pareto") == "true"
        return done

    def finish(self, status: str = "FINISHED") -> None:
        """End the parent run (FINISHED, FAILED or KILLED)."""
        if self.client is not None and self.parent_id is not None:
            self.client.set_terminated(self.parent_id, status)

    def _create_parent(self) -> None:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=self.study_name, tags={
            "coopt.study": self.study_name, "coopt.role": "parent",
            "coopt.objectives": json.dumps(self.objectives), "coopt.reference": json.dumps(self.reference)})
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
        """One FINISHED child run per trial; a trial already logged is left alone."""
        if self._require() and rec.number in self.trial_runs:
            return
        existing = [r for r in self._search(self._filter("trial", rec.number))
                    if r.info.status == "FINISHED"]
        if existing:           # logged by another tracker since start()
            self.trial_runs[rec.number] = existing[0].info.run_id
            self.pareto[rec.number] = existing[0].data.tags.get("pareto") == "true"
            return
        from mlflow.entities import Metric, Param

        client = self.client
        run = client.create_run(self.experiment_id, run_name=f"trial-{rec.number}", tags={
            "mlflow.parentRunId": self.parent_id, "coopt.study": self.study_name, "coopt.role": "trial",
            "coopt.trial": str(rec.number), "feasible": "true" if rec.feasible else "false", "pareto": "false"})
        run_id = run.info.run_id
        params = {**rec.params, "template": rec.template, "dataflow": rec.dataflow, "network": rec.network}
        plist = [Param(str(k)[:250], param_value(v)) for k, v in params.items()]
        now = int(time.time() * 1000)
        mlist = [Metric(k, v, now, 0) for k, v in trial_metrics(rec).items()]
        client.log_batch(run_id, metrics=mlist, params=plist[:BATCH])
        for i in range(BATCH, len(plist), BATCH):
            client.log_batch(run_id, params=plist[i:i + BATCH])
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "arch.yaml").write_text(dumps_yaml(rec.arch_yaml), encoding="utf-8")
            (Path(tmp) / "layers.csv").write_text(layers_csv(rec), encoding="utf-8")
            client.log_artifacts(run_id, tmp)
        client.set_terminated(run_id, "FINISHED")
        self.trial_runs[rec.number] = run_id
        self.pareto[rec.number] = False

    # -- the front --------------------------------------------------------------------------
    def update_front(self, records: list[TrialRecord], step: int) -> dict:
        """Log front size, hypervolume and plots on the parent; re-tag runs whose membership changed."""
        self._require()
        from mlflow.entities import Metric

        front = pareto_front(records, self.objectives)
        hv = front_hypervolume(records, self.objectives, self.reference)
        now = int(time.time() * 1000)
        values = {"front_size": len(front), "hypervolume": hv, "trials": len(records),
                  "feasible_trials": sum(1 for r in records if r.feasible)}
        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / "pareto"
            d.mkdir()
            (d / "front.csv").write_text(front_csv(front), encoding="utf-8")
            front_png(records, front, self.objectives, d / "front.png")
            front_html(records, front, self.objectives, d / "front.html")
            self.client.log_artifacts(self.parent_id, str(d), "pareto")
        members = {r.number for r in front}
        for number, run_id in self.trial_runs.items():
            on = number in members
            if self.pareto.get(number) != on:
                self.client.set_tag(run_id, "pareto", "true" if on else "false")
                self.pareto[number] = on
        return {"front": [r.number for r in front], "hypervolume": hv, "front_size": len(front)}

    def _require(self) -> bool:
        if self.client is None or self.parent_id is None:
            raise RuntimeError("StudyTracker.start() must be called first")
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
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return False
    runs = client.search_runs([exp.experiment_id], filter_string(
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
