"""What a person sees of a study in MLflow: run names, rounded metrics, the front as Markdown, the default view.

Why a module of its own: MLflow shows whatever it is given (raw floats, 50
columns, GenAI screens); these pure functions decide the names, digits,
columns and links, so they are tested without a server and the tracker only
ships their output.  No MLflow import here.
"""
from __future__ import annotations

import json

from coopt.numbers import SIGNIFICANT, column_digits, finite, fmt, round_sig
from coopt.study.front import is_mapped, shown_metrics
from coopt.study.records import TrialRecord
from coopt.study.screening import MAPPING_INDEPENDENT_BUDGETS

EXPERIMENT_PREFIX = "coopt/"
VIEW_KEY = "coopt-trials"                     # experiment tag mlflow.sharedViewState.<VIEW_KEY>
UNITS = {"energy_uj": "energy / inference (µJ)", "throughput_ips": "throughput (inferences/s)",
         "latency_ms": "latency (ms)", "latency_cycles": "latency (cycles)", "area_mm2": "area (mm²)",
         "power_mw": "power (mW)", "onchip_kib": "on-chip SRAM (KiB)", "edp_uj_ms": "EDP (µJ·ms)",
         "macs": "MACs / inference", "mac_instances": "MAC units"}
SHORT = {"energy_uj": "energy µJ", "throughput_ips": "inf/s", "latency_ms": "latency ms", "area_mm2": "area mm²",
         "power_mw": "power mW", "onchip_kib": "SRAM KiB", "edp_uj_ms": "EDP µJ·ms"}


def experiment_name(study: str) -> str:
    """One MLflow experiment per study, named after it."""
    return f"{EXPERIMENT_PREFIX}{study}"


def run_name(rec: TrialRecord) -> str:
    """``t017 12x16 glb4096 8b 400MHz``: the trial and the design it evaluated, at a glance.  Other
    parameters stay out of the name (they made it wrap to five lines); every one is a column."""
    p, tp = rec.params, rec.template_params
    parts = [f"t{rec.number:03d}"]
    rows, cols = tp.get("pe_rows", p.get("pe_rows")), tp.get("pe_cols", p.get("pe_cols"))
    if rows is not None and cols is not None:
        parts.append(f"{rows}x{cols}")
    shown = {"pe_rows", "pe_cols"}
    for key, fmt_ in (("glb_depth", "glb{}"), ("word_bits", "{}b"), ("clock_mhz", "{}MHz")):
        if key in p:
            v = p[key]
            parts.append(fmt_.format(int(round(v)) if isinstance(v, float) else v))
            shown.add(key)
    if len(parts) == 1:                   # a space without the usual parameters: name it by its own
        parts += [f"{key}={fmt(v, 3) if isinstance(v, float) else v}" for key, v in p.items()]
    return " ".join(parts)[:250]


PRECISE = 7                                   # digits of the objectives' metrics: a front's members stay apart


def trial_metrics(rec: TrialRecord, budgets: dict[str, float], precise=()) -> dict[str, float]:
    """Rounded metrics (units in their names), ``headroom_<budget>`` (> 0: room left), feasibility,
    evaluation time; nothing non-finite (MLflow would show NaN), and for an unmapped design none of the
    placeholders (energy, throughput, ...) told to the samplers: a chart would plot them as values."""
    out = {k: round_sig(float(v), PRECISE if k in precise else SIGNIFICANT)
           for k, v in shown_metrics(rec).items() if finite(v)}
    out["feasible"] = 1.0 if rec.feasible else 0.0
    mapped = is_mapped(rec)
    for key, limit in budgets.items():
        value = rec.metrics.get(key)
        if finite(value) and (mapped or key in MAPPING_INDEPENDENT_BUDGETS):      # area: known unmapped
            out[f"headroom_{key}"] = round_sig(float(limit) - float(value))
    out["unmapped_layers"] = float(rec.violations.get("unmapped_layers", 0))
    secs = eval_seconds(rec)
    if secs is not None:
        out["eval_s"] = round(secs, 2)
    return out


def eval_seconds(rec: TrialRecord) -> float | None:
    if rec.started_at is not None and rec.finished_at is not None:
        return max(0.0, rec.finished_at - rec.started_at)
    return rec.seconds if rec.seconds else None


def run_times_ms(rec: TrialRecord, now_s: float) -> tuple[int, int]:
    """MLflow start/end of a trial's run: the evaluation's, else ``seconds`` ending now."""
    if rec.started_at is not None and rec.finished_at is not None:
        return int(rec.started_at * 1000), int(rec.finished_at * 1000)
    return int((now_s - (rec.seconds or 0.0)) * 1000), int(now_s * 1000)


# MLflow 3.17 opens in its GenAI mode (traces, judges, "Evaluations") unless a URL asks for the classic one:
# its web app reads the mode from this query parameter first (then from the browser's last choice).
CLASSIC = "workflowType=machine_learning"


def run_link(experiment_id: str, run_id: str) -> str:
    """Link inside the MLflow UI (hash route: works from any host and port), in MLflow's classic mode."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{CLASSIC}"


def _arrow(direction: str) -> str:
    return "↓" if direction == "minimize" else "↑"


def counts_line(records: list[TrialRecord], n_front: int) -> str:
    """``40 trials, 31 feasible, 6 not mapped; 5 designs on the front``."""
    feasible = sum(1 for r in records if r.feasible)
    unmapped = sum(1 for r in records if not is_mapped(r))
    return (f"{len(records)} trials, {feasible} feasible" + (f", {unmapped} not mapped" if unmapped else "")
            + f"; **{n_front} designs on the front**")


def front_rows(records: list[TrialRecord], front: list[TrialRecord], objectives) -> tuple[list[str], list[list[str]]]:
    """The front as a table for people: header, then per entry its run's name, the objectives, area and
    power (each column with the digits that keep its entries apart and ordered), the parameters and the
    trials with the same objective values."""
    from coopt.study.front import front_equivalents

    same = front_equivalents(records, objectives)
    params = list(dict.fromkeys(k for r in front for k in r.params))
    dirs = dict(objectives)
    shown = [n for n, _ in objectives] + [k for k in ("area_mm2", "power_mw") if k not in dirs]
    digits = {n: column_digits([r.metrics.get(n) for r in front]) for n in shown}
    header = ["trial"] + [SHORT.get(n, n) + (f" {_arrow(dirs[n])}" if n in dirs else "") for n in shown] + \
        params + ["same objectives"]
    rows = [[run_name(r)] + [fmt(r.metrics.get(n), digits[n]) for n in shown]
            + [str(r.params.get(k, "–")) for k in params]
            + [", ".join(f"t{n:03d}" for n in same.get(r.number, [])) or "–"] for r in front]
    return header, rows


def _summary_lines(study: str, records, front, objectives, budgets: dict, hypervolume: float) -> list[str]:
    obj = ", ".join(f"{UNITS.get(n, n)} {_arrow(d)}" for n, d in objectives)
    lines = [f"{counts_line(records, len(front))} (hypervolume {fmt(hypervolume)}).  Objectives: {obj}."]
    if budgets:
        lines.append("Budgets: " + ", ".join(f"{UNITS.get(k, k)} ≤ {fmt(float(v))}" for k, v in budgets.items())
                     + ".")
    return lines


def front_markdown(study: str, records: list[TrialRecord], front: list[TrialRecord], objectives,
                   budgets: dict, hypervolume: float, links: dict[int, str]) -> str:
    """The study run's description: the current front with links to its trials' runs, then what else
    there is to look at.  (MLflow shows 100 px of it before "Show more"; ``front_table_html`` is the
    front as a page of the study run's artifacts, shown whole as it opens.)"""
    lines = [f"## Pareto front of study `{study}`", "",
             *_summary_lines(study, records, front, objectives, budgets, hypervolume), ""]
    if not front:
        lines.append("No feasible design yet.")
        return "\n".join(lines) + "\n"
    header, rows = front_rows(records, front, objectives)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r, row in zip(front, rows):
        cell = f"[{row[0]}]({links[r.number]})" if r.number in links else row[0]
        lines.append("| " + " | ".join([cell, *row[1:]]) + " |")
    lines += ["", "Each trial opens its run: parameters, metrics, the per-layer table and the energy/area "
              "breakdown.  Designs with the same objective values are one entry (the least area, then power); "
              "the others are listed under *same objectives*.  In the runs table, the filter "
              "`tags.pareto = 'true'` lists the front; `tags.feasible = 'true'` the designs within budget.  "
              "**A clickable front plot**: the front page that `coopt ui` prints first, where each point "
              "opens its trial's run.  Other plots: the chart view of the runs table, and the artifacts "
              "`pareto/front.png` and `pareto/front.html`."]
    return "\n".join(lines) + "\n"


FRONT_TABLE = "pareto/front_table.html"       # the study run's artifact that shows the front whole


def front_table_html(study: str, records: list[TrialRecord], front: list[TrialRecord], objectives,
                     budgets: dict, hypervolume: float) -> str:
    """The front as a small page (MLflow's artifact view shows it at once; no script, no link: MLflow
    sandboxes HTML artifacts, so the trials' links live in the description and on the front page)."""
    import html

    head = [f"<h2>Pareto front of study <code>{html.escape(study)}</code></h2>"]
    head += [f"<p>{html.escape(line).replace('**', '')}</p>"
             for line in _summary_lines(study, records, front, objectives, budgets, hypervolume)]
    if not front:
        body = "<p>No feasible design yet.</p>"
    else:
        header, rows = front_rows(records, front, objectives)
        cells = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
        cells += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        body = '<table id="front-table">' + "\n".join(cells) + "</table>"
    style = ("body{font-family:sans-serif;font-size:14px;color:#222} table{border-collapse:collapse} "
             "th,td{border:1px solid #ddd;padding:3px 8px;text-align:right} th{background:#f3f3f3} "
             "td:first-child,th:first-child{text-align:left}")
    return (f'<!doctype html><html><head><meta charset="utf-8"><style>{style}</style></head><body>'
            + "\n".join(head) + body + "<p>Each design's run: the runs table (filter <code>tags.pareto = "
            "'true'</code>), the study run's overview or the front page of <code>coopt ui</code>.</p>"
            "</body></html>\n")


def study_run_url(base: str, experiment_id: str, run_id: str) -> str:
    """The study run opened on its front table (an artifact page MLflow shows whole, without a click)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{FRONT_TABLE}?{CLASSIC}"


def used_components(breakdowns) -> list[str]:
    """Components that spend energy in some design (the zero-cost wiring placeholders are left out)."""
    comps = list(dict.fromkeys(p.component for b in breakdowns if b for p in b))
    return [c for c in comps if any(p.component == c and p.energy_uj for b in breakdowns if b for p in b)]


def experiment_description(study: str, settings: dict, objectives, study_link: str | None = None) -> str:
    """The experiment's description: what the study is and where to look."""
    obj = ", ".join(f"{UNITS.get(n, n)} {_arrow(d)}" for n, d in objectives)
    budgets = settings.get("budgets") or {}
    lines = [f"coopt study **{study}**: template `{settings.get('template', '?')}`"
             + (f" ({settings['dataflow']})" if settings.get("dataflow") else "")
             + f" on `{settings.get('network', '?')}`, sampler `{settings.get('sampler', '?')}`.",
             f"Objectives: {obj}."]
    if budgets:
        lines.append("Budgets: " + ", ".join(f"{UNITS.get(k, k)} ≤ {fmt(float(v))}" for k, v in budgets.items())
                     + ".")
    run = f"[{study}]({study_link})" if study_link else f"named {study}"
    lines.append(f"**The Pareto front**: the study run {run} lists it, with links to its trials.  Every other "
                 "run is one trial (one design); the filter tags.pareto = 'true' shows the front's trials, "
                 "tags.feasible = 'true' the designs within budget.")
    return "\n".join(lines)


def view_state(objectives, param_names: list[str], budgets: dict) -> str:
    """The runs view `coopt ui` opens: the trials only, objectives and parameters as columns, best first.

    Stored as the experiment tag ``mlflow.sharedViewState.<VIEW_KEY>`` and selected by the URL parameter
    ``viewStateShareKey`` (MLflow's shared-view mechanism); column keys are MLflow's ``type.`name```.
    """
    metrics = [n for n, _ in objectives] + [k for k in ("area_mm2", "power_mw", "latency_ms")
                                            if k not in dict(objectives)]
    metrics += [f"headroom_{k}" for k in budgets] + ["eval_s"]
    columns = [f"metrics.`{m}`" for m in metrics] + [f"params.`{p}`" for p in param_names] + \
        ["tags.`pareto`", "tags.`feasible`"]
    first, direction = objectives[0]
    # the chart view: the first two objectives against each other, and parallel coordinates of the parameters
    # and objectives, in a section of their own above MLflow's one-chart-per-metric section
    section = {"uuid": "coopt-front", "name": "Objectives", "display": True, "isReordered": True,
               "deleted": False, "isGenerated": False}
    charts = [{"uuid": "coopt-parallel", "type": "PARALLEL", "metricSectionId": "coopt-front", "deleted": False,
               "isGenerated": False, "displayName": "parameters → objectives", "showAllRuns": True,
               "selectedParams": list(param_names), "selectedMetrics": [n for n, _ in objectives]}]
    if len(objectives) >= 2:
        (xn, _), (yn, _) = objectives[:2]
        charts.insert(0, {"uuid": "coopt-scatter", "type": "SCATTER", "metricSectionId": "coopt-front",
                          "deleted": False, "isGenerated": False, "runsCountToCompare": 10000,
                          "xaxis": {"key": xn, "type": "METRIC"}, "yaxis": {"key": yn, "type": "METRIC"}})
    state = {"searchFilter": "tags.`coopt.role` = 'trial'", "orderByKey": f"metrics.`{first}`",
             "orderByAsc": direction == "minimize", "startTime": "ALL", "lifecycleFilter": "Active",
             "modelVersionFilter": "All Runs", "datasetsFilter": [],
             "selectedColumns": columns, "columnOrder": columns, "runsHiddenMode": "SHOW_ALL",
             "hideEmptyCharts": True, "compareRunCharts": charts, "compareRunSections": [section],
             "isAccordionReordered": True}
    return json.dumps(state)


def experiment_url(base: str, experiment_id: str) -> str:
    """The experiment's runs view as coopt sets it up (see ``view_state``)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&{CLASSIC}"
