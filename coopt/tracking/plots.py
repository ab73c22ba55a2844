"""Front plots of a study: a static PNG and an interactive plotly page whose points open their runs.

Why plotly's CDN form: the page stays a few kB (the inlined form is 4.6 MB and
was rewritten every few seconds) and is rewritten only when the front moves;
the browser that opens it fetches plotly.js (needs internet; ``front.png`` is
the offline view).  A shared copy of plotly.js logged once does not work:
MLflow 3.17 serves artifacts as text/plain with nosniff, so no page may load
it as a script.  matplotlib/plotly are imported only when a front is drawn.
"""
from __future__ import annotations

from pathlib import Path

from coopt.study.records import TrialRecord
from coopt.tracking.present import UNITS, finite, fmt, run_name


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
    """Interactive plotly scatter; hovering a point names its trial's run (as in the runs table).

    Points do not open runs: MLflow 3.17 shows HTML artifacts in a sandboxed frame that may not open
    pages, and serves them as downloads; the clickable front is ``coopt ui``'s front page
    (``front_page.py``) and the study run's description."""
    import plotly.graph_objects as go

    (xn, xd), (yn, yd) = plot_axes(objectives)
    pts = plotted(records, objectives)

    def hover(r: TrialRecord) -> str:
        lines = [f"<b>{run_name(r)}</b>" + ("" if r.feasible else " (infeasible)")]
        lines += [f"{k} = {fmt(v)}" for k, v in r.params.items()]
        lines += [f"{UNITS.get(n, n)} = {fmt(r.metrics[n])}" for n, _ in objectives]
        return "<br>".join(lines)

    def trace(sel, name, **kw):
        return go.Scatter(x=[axis_value(r, xn) for r in sel], y=[axis_value(r, yn) for r in sel], name=name,
                          text=[hover(r) for r in sel], hovertemplate="%{text}<extra></extra>", **kw)

    fig = go.Figure()
    fig.add_trace(trace([r for r in pts if r.feasible], "feasible", mode="markers",
                        marker={"color": "#a0a0a0", "size": 7}))
    fig.add_trace(trace([r for r in pts if not r.feasible], "infeasible", mode="markers",
                        marker={"color": "#d62728", "size": 6, "symbol": "x", "opacity": 0.6}))
    fig.add_trace(trace(front, f"Pareto front ({len(front)})", mode="lines+markers",
                        marker={"color": "#1f77b4", "size": 10}, line={"color": "#1f77b4"}))
    fig.update_layout(title=f"{len(records)} trials, {sum(r.feasible for r in records)} feasible",
                      xaxis_title=axis_label(xn, xd), yaxis_title=axis_label(yn, yd),
                      template="plotly_white", hovermode="closest")
    fig.write_html(str(path), include_plotlyjs="cdn", full_html=True)


def compare_png(recs, breakdowns, path: Path) -> None:
    """Designs side by side as grouped bars: energy and area per component, energy and cycles per layer."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [run_name(r) for r in recs]
    from coopt.tracking.present import used_components

    comps = used_components(breakdowns)
    share = [{p.component: p for p in (b or [])} for b in breakdowns]
    layers = list(dict.fromkeys(layer.name for r in recs for layer in r.layers))
    per = [{layer.name: layer for layer in r.layers} for r in recs]
    panels = [("energy per component (µJ)", comps, [[s[c].energy_uj if c in s else 0 for c in comps] for s in share]),
              ("area per component (mm²)", comps, [[s[c].area_mm2 if c in s else 0 for c in comps] for s in share]),
              ("energy per layer (µJ)", layers, [[p[n].count * p[n].energy_pj / 1e6 if n in p and p[n].found else 0
                                                  for n in layers] for p in per]),
              ("cycles per layer", layers, [[p[n].count * p[n].cycles if n in p and p[n].found else 0
                                             for n in layers] for p in per])]
    fig = Figure(figsize=(12, 8.5), dpi=100)
    FigureCanvasAgg(fig)
    width = 0.8 / max(1, len(recs))
    for k, (title, labels, values) in enumerate(panels):
        ax = fig.add_subplot(2, 2, k + 1)
        x = np.arange(len(labels))
        for i, (name, vals) in enumerate(zip(names, values)):
            ax.bar(x + (i - (len(recs) - 1) / 2) * width, vals, width, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x, labels, rotation=60 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center",
                      fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png")
