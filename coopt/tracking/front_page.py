"""The study's front as a page of its own, served by ``coopt ui`` next to MLflow: every point opens its run.

Why a page outside MLflow: MLflow 3.17 serves HTML artifacts as text/plain in a
sandboxed frame, so a plot logged as an artifact can never link to runs.  This
page is an inline SVG (no CDN, no plotly.js: a few kB, clickable, readable by
tests) plus the front's table, rebuilt from MLflow on every request (the
``pareto`` tags the tracker keeps), so it follows a study while it runs: a
small script polls ``.../version`` and reloads when the data changed.

The server is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 run in a thread of
``coopt ui`` itself, so it can never outlive it (SIGKILL included).
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from coopt.errors import CooptError
from coopt.numbers import column_digits, finite, fmt
from coopt.tracking.plots import axis_label, plot_axes
from coopt.tracking.present import SHORT, UNITS, experiment_url, run_link

POLL_MS = 3000
WIDTH, HEIGHT, MARGIN = 860, 520, (30, 30, 64, 96)          # svg size; margins top, right, bottom, left
HIDDEN_PARAMS = ("template", "dataflow", "network")          # the same for every trial of a study
DEFAULT_OBJECTIVES = [("energy_uj", "minimize"), ("throughput_ips", "maximize")]


@dataclass
class Point:
    """One trial's run as the page shows it."""
    number: int
    run_id: str
    name: str
    metrics: dict[str, float]
    params: dict[str, str]
    feasible: bool
    pareto: bool
    same: str = ""                # other trials with the same objective values (``same_objectives`` tag)

    @property
    def mapped(self) -> bool:
        """False for a design that could not be mapped: it has no energy or throughput to draw."""
        return not self.metrics.get("unmapped_layers")


@dataclass
class FrontData:
    study: str
    experiment_id: str
    objectives: list[tuple[str, str]]
    points: list[Point] = field(default_factory=list)
    key: str | None = None        # the study run's version when these points were read (study_version)

    @property
    def front(self) -> list[Point]:
        return [p for p in self.points if p.pareto]

    def version(self) -> str:
        """Changes whenever a trial is logged or the front moves (what the page's poll compares)."""
        if self.key is not None:
            return self.key
        key = [(p.run_id, p.pareto, p.feasible) for p in self.points]
        return hashlib.sha1(json.dumps(key).encode()).hexdigest()[:16]


def study_run(client, experiment_id: str):
    """The study's own (parent) run, or None."""
    runs = client.search_runs([experiment_id], "tags.`coopt.role` = 'parent'", max_results=1)
    return runs[0] if runs else None


def study_version(parent) -> str | None:
    """A digest of what the tracker rewrites on the study run after every trial: its description (counts
    and the front's table, written after the trial runs' ``pareto`` tags) and its latest metrics.  Reading
    one run tells whether the study changed, instead of reading every trial run."""
    if parent is None or "mlflow.note.content" not in parent.data.tags:
        return None
    key = [parent.data.tags["mlflow.note.content"], sorted(parent.data.metrics.items())]
    return hashlib.sha1(json.dumps(key).encode()).hexdigest()[:16]


def read_front(client, study: str, experiment_id: str, parent=None) -> FrontData:
    """The study's finished trial runs and its objectives, read from MLflow (the tracker's tags)."""
    parent = parent or study_run(client, experiment_id)
    objectives = DEFAULT_OBJECTIVES
    if parent is not None and parent.data.tags.get("coopt.objectives"):
        objectives = [tuple(o) for o in json.loads(parent.data.tags["coopt.objectives"])]
    data = FrontData(study, experiment_id, objectives, key=study_version(parent))
    token = None
    while True:
        page = client.search_runs([experiment_id], "tags.`coopt.role` = 'trial' and attributes.status = 'FINISHED'",
                                  max_results=1000, page_token=token)
        for run in page:
            tags = run.data.tags
            data.points.append(Point(int(tags.get("coopt.trial", -1)), run.info.run_id, run.info.run_name or "",
                                     dict(run.data.metrics), dict(run.data.params),
                                     tags.get("feasible") == "true", tags.get("pareto") == "true",
                                     tags.get("same_objectives", "")))
        token = page.token
        if not token:
            break
    data.points.sort(key=lambda p: p.number)
    return data


def run_url(mlflow_base: str, experiment_id: str, run_id: str) -> str:
    return f"{mlflow_base.rstrip('/')}/{run_link(experiment_id, run_id)}"


class _Scale:
    """Data -> pixels on one axis, fitted to ``values`` (the feasible designs'); logarithmic when they span
    more than a factor of 30.  A value beyond the axis is drawn at its edge (``clipped``)."""

    def __init__(self, values: list[float], lo_px: float, hi_px: float):
        vals = [v for v in values if finite(v)] or [0.0, 1.0]
        lo, hi = min(vals), max(vals)
        self.log = lo > 0 and hi / lo > 30
        if self.log:
            lo, hi = math.log10(lo), math.log10(hi)
        pad = (hi - lo) * 0.06 or (abs(lo) * 0.1 or 1.0)
        self.lo, self.hi, self.lo_px, self.hi_px = lo - pad, hi + pad, lo_px, hi_px

    def __call__(self, v: float) -> float:
        x = (math.log10(v) if v > 0 else -math.inf) if self.log else v
        x = min(max(x, self.lo), self.hi)
        return self.lo_px + (x - self.lo) / (self.hi - self.lo) * (self.hi_px - self.lo_px)

    def clipped(self, v: float) -> bool:
        x = (math.log10(v) if v > 0 else -math.inf) if self.log else v
        return not self.lo <= x <= self.hi

    def span(self) -> tuple[float, float]:
        """The axis's ends in data units."""
        return (10 ** self.lo, 10 ** self.hi) if self.log else (self.lo, self.hi)

    def ticks(self) -> list[float]:
        if self.log:
            return [10.0 ** e for e in range(math.ceil(self.lo), math.floor(self.hi) + 1)]
        step = 10 ** math.floor(math.log10((self.hi - self.lo) / 5))
        step *= next(m for m in (1, 2, 5, 10) if (self.hi - self.lo) / (step * m) <= 6)
        return [k * step for k in range(math.ceil(self.lo / step), math.floor(self.hi / step) + 1)]


def _value(p: Point, name: str) -> float:
    return float(p.number) if name == "trial" else float(p.metrics.get(name, math.nan))


def _tip(p: Point, objectives) -> str:
    state = "on the front" if p.pareto else "feasible" if p.feasible else "infeasible"
    return "\n".join([f"{p.name} ({state})"] + [f"{UNITS.get(n, n)} = {fmt(p.metrics.get(n))}" for n, _ in objectives])


def drawn(data: FrontData) -> list[Point]:
    """The trials with both plotted values measured (an unmapped design has none: it is only counted)."""
    (xn, _), (yn, _) = plot_axes(data.objectives)
    return [p for p in data.points if p.mapped and finite(_value(p, xn)) and finite(_value(p, yn))]


def front_svg(data: FrontData, mlflow_base: str) -> str:
    """Every trial a faint point, the front's trials highlighted and joined; each point links to its run.
    The axes fit the feasible designs; an infeasible one beyond them is drawn at the edge, hollow."""
    (xn, xd), (yn, yd) = plot_axes(data.objectives)
    pts = drawn(data)
    fit = [p for p in pts if p.feasible] or pts
    top, right, bottom, left = MARGIN
    sx = _Scale([_value(p, xn) for p in fit], left, WIDTH - right)
    sy = _Scale([_value(p, yn) for p in fit], HEIGHT - bottom, top)
    (x0, x1), (y0, y1) = sx.span(), sy.span()
    out = [f'<svg id="front-plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12" '
           f'data-x-range="{x0:.6g},{x1:.6g}" data-y-range="{y0:.6g},{y1:.6g}">',
           f'<rect x="{left}" y="{top}" width="{WIDTH - left - right}" height="{HEIGHT - top - bottom}" '
           'fill="#fbfbfb" stroke="#ccc"/>']
    for t in sx.ticks():
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{HEIGHT - bottom}" stroke="#eee"/>'
                   f'<text x="{x:.1f}" y="{HEIGHT - bottom + 16}" text-anchor="middle">{fmt(t)}</text>')
    for t in sy.ticks():
        y = sy(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
    out.append(f'<text x="{(left + WIDTH - right) / 2}" y="{HEIGHT - 16}" text-anchor="middle" font-size="14">'
               f'{html.escape(axis_label(xn, xd))}{" (log scale)" if sx.log else ""}</text>')
    out.append(f'<text transform="translate(18,{(top + HEIGHT - bottom) / 2}) rotate(-90)" text-anchor="middle" '
               f'font-size="14">{html.escape(axis_label(yn, yd))}{" (log scale)" if sy.log else ""}</text>')
    front = sorted((p for p in pts if p.pareto), key=lambda p: _value(p, xn))
    if len(front) > 1 and len(data.objectives) == 2:      # with a third objective the 2-D points need no line
        line = " ".join(f"{sx(_value(p, xn)):.1f},{sy(_value(p, yn)):.1f}" for p in front)
        out.append(f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    for p in sorted(pts, key=lambda p: p.pareto):            # the front drawn last, on top
        x, y = sx(_value(p, xn)), sy(_value(p, yn))
        beyond = sx.clipped(_value(p, xn)) or sy.clipped(_value(p, yn))
        cls = "trial front" if p.pareto else "trial clipped" if beyond else "trial"
        href = html.escape(run_url(mlflow_base, data.experiment_id, p.run_id))
        if p.pareto:
            mark = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="#1f77b4" stroke="#fff" stroke-width="1.5"/>'
        elif p.feasible:
            mark = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="#999" fill-opacity="0.45"/>'
        elif beyond:
            mark = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="none" stroke="#d62728" stroke-width="1.2"/>'
        else:
            mark = (f'<path d="M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}M{x - 4:.1f},{y + 4:.1f}'
                    f'L{x + 4:.1f},{y - 4:.1f}" stroke="#d62728" stroke-opacity="0.5" stroke-width="1.5"/>')
        label = f'<text x="{x + 9:.1f}" y="{y - 7:.1f}" font-size="11">t{p.number:03d}</text>' if p.pareto else ""
        out.append(f'<a class="{cls}" href="{href}" data-trial="{p.number}" data-run="{p.run_id}">'
                   f'<title>{html.escape(_tip(p, data.objectives))}</title>{mark}{label}</a>')
    out.append("</svg>")
    return "\n".join(out)


def front_table(data: FrontData, mlflow_base: str) -> str:
    """The front's trials, best first on the first objective, each name linking to its run."""
    front = data.front
    if not front:
        return "<p>No feasible design yet.</p>"
    first, direction = data.objectives[0]
    front = sorted(front, key=lambda p: p.metrics.get(first, math.nan) * (1 if direction == "minimize" else -1))
    shown = [n for n, _ in data.objectives] + [k for k in ("area_mm2", "power_mw") if k not in dict(data.objectives)]
    params = [k for k in dict.fromkeys(k for p in front for k in p.params) if k not in HIDDEN_PARAMS]
    dirs = dict(data.objectives)
    head = ["trial"] + [SHORT.get(n, n) + ((" ↓" if dirs[n] == "minimize" else " ↑") if n in dirs else "")
                        for n in shown] + params
    head.append("same objectives")
    digits = {n: column_digits([p.metrics.get(n) for p in front]) for n in shown}
    rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for p in front:
        link = f'<a href="{html.escape(run_url(mlflow_base, data.experiment_id, p.run_id))}">{html.escape(p.name)}</a>'
        cells = [link] + [fmt(p.metrics.get(n), digits[n]) for n in shown] + \
            [html.escape(p.params.get(k, "–")) for k in params] + [html.escape(p.same) or "–"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    numbers = " ".join(str(p.number) for p in front)
    compare = (f'<p id="compare">Side by side (parameters, energy and area per component, energy and cycles per '
               f'layer): <code>coopt compare {html.escape(data.study)} {numbers} --out DIR</code></p>')
    return '<table id="front-table">' + "\n".join(rows) + "</table>" + compare


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>front of {study} — coopt</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin-top: 12px; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; text-align: right; font-size: 13px; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
a.trial {{ cursor: pointer; }} a.trial:hover circle {{ stroke: #000; stroke-width: 2; }}
.legend span {{ margin-right: 18px; }}
</style></head><body>
<h2>Pareto front of study <code>{study}</code></h2>
<p>{summary} <a href="{experiment}">All trials in MLflow</a>.</p>
<p class="legend">{legend}</p>
{svg}
{table}
<p style="color:#777;font-size:12px">Follows the study: reloads when a trial is logged or the front moves.</p>
<script>
const version = "{version}";
setInterval(() => fetch("{version_url}", {{cache: "no-store"}}).then(r => r.text())
  .then(v => {{ if (v.trim() && v.trim() !== version) location.reload(); }}).catch(() => {{}}), {poll_ms});
</script>
</body></html>
"""


def legend(data: FrontData) -> str:
    """What the plot shows, with counts: the axes fit the feasible designs, the others are counted."""
    pts = drawn(data)
    front = sum(p.pareto for p in pts)
    feasible = sum(p.feasible for p in pts) - front
    over = sum(not p.feasible for p in pts)
    unmapped = sum(not p.mapped for p in data.points)
    parts = [f'<span style="color:#1f77b4">● on the front: {front} (click: its MLflow run)</span>',
             f'<span style="color:#999">● other feasible trials: {feasible}</span>',
             f'<span style="color:#d62728">✕ infeasible (over a budget): {over}'
             + ('; ○ beyond the axes, drawn at their edge' if over else '') + '</span>']
    if unmapped:
        parts.append(f'<span id="not-mapped" style="color:#777">not mapped (no energy or throughput, not drawn): '
                     f'{unmapped}</span>')
    return "".join(parts)


def front_page(data: FrontData, mlflow_base: str) -> str:
    feasible = sum(p.feasible for p in data.points)
    summary = (f"{len(data.points)} trials, {feasible} feasible; <b>{len(data.front)} designs on the front</b>.  "
               f"Objectives: " + ", ".join(html.escape(axis_label(n, d)) for n, d in data.objectives) + "."
               + ("  The plot shows the first two; a front point may look beaten there and win on another."
                  if len(data.objectives) > 2 else ""))
    quoted = urllib.parse.quote(data.study, safe="")
    return PAGE.format(study=html.escape(data.study), summary=summary, legend=legend(data),
                       experiment=html.escape(experiment_url(mlflow_base, data.experiment_id)),
                       svg=front_svg(data, mlflow_base), table=front_table(data, mlflow_base),
                       version=data.version(), version_url=f"/study/{quoted}/version", poll_ms=POLL_MS)


def index_page(studies: list[tuple[str, str]]) -> str:
    items = "".join(f'<li><a href="/study/{urllib.parse.quote(s, safe="")}">{html.escape(s)}</a></li>'
                    for s, _ in studies) or "<li>no study yet</li>"
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>coopt fronts</title></head>'
            f'<body style="font-family:sans-serif"><h2>Studies</h2><ul>{items}</ul></body></html>')


class FrontServer:
    """``/`` (the one study, or a list of studies), ``/study/NAME`` and ``/study/NAME/version``."""

    def __init__(self, tracking_uri: str, mlflow_base: str, port: int = 0, host: str = "127.0.0.1",
                 study: str | None = None):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.mlflow_base, self.study = mlflow_base, study
        self.tracking_uri = tracking_uri
        self._lock = threading.Lock()                           # one store read at a time
        self._cache: dict[str, FrontData] = {}
        handler = type("Handler", (_Handler,), {"owner": self})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            raise CooptError(f"cannot serve the front pages on {host}:{port}: {e.strerror}", key="--front-port",
                             expected="a free port") from None
        self._serving = False
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://{host}:{self.port}"

    def url(self, study: str) -> str:
        return f"{self.base}/study/{urllib.parse.quote(study, safe='')}"

    def studies(self) -> list[tuple[str, str]]:
        from coopt.tracking.studies import study_experiments

        found = study_experiments(self.tracking_uri)
        return [x for x in found if self.study is None or x[0] == self.study]

    def data(self, study: str) -> FrontData | None:
        """The study's front, read again only when its study run says it changed (pages poll every 3 s)."""
        with self._lock:
            hit = [eid for s, eid in self.studies() if s == study]
            if not hit:
                return None
            parent = study_run(self.client, hit[0])
            cached = self._cache.get(study)
            key = study_version(parent)
            if cached is None or key is None or (cached.experiment_id, cached.key) != (hit[0], key):
                cached = self._cache[study] = read_front(self.client, study, hit[0], parent)
            return cached

    def start(self) -> FrontServer:
        threading.Thread(target=self.httpd.serve_forever, name="coopt-front-page", daemon=True).start()
        self._serving = True
        return self

    def close(self) -> None:
        if self._serving:                                       # shutdown() waits for a loop that never ran
            self.httpd.shutdown()
            self._serving = False
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    owner: FrontServer

    def log_message(self, *args) -> None:                       # keep the terminal for coopt ui's own lines
        pass

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        parts = [urllib.parse.unquote(p) for p in path.split("/")[1:]]
        try:
            if not parts:
                studies = self.owner.studies()
                if len(studies) == 1:
                    return self._redirect(self.owner.url(studies[0][0]))
                return self._send(200, index_page(studies))
            if parts[0] == "study" and len(parts) in (2, 3) and (len(parts) == 2 or parts[2] == "version"):
                data = self.owner.data(parts[1])
                if data is None:
                    return self._send(404, f"no study '{html.escape(parts[1])}' here", "text/plain")
                if len(parts) == 3:
                    return self._send(200, data.version(), "text/plain")
                return self._send(200, front_page(data, self.owner.mlflow_base))
            self._send(404, "not found", "text/plain")
        except Exception as e:                                  # a store hiccup: say it, keep serving
            self._send(500, f"could not read the study from MLflow: {e}", "text/plain")

    def _redirect(self, url: str) -> None:
        self.send_response(302)
        self.send_header("Location", url)
        self.end_headers()

    def _send(self, code: int, text: str, ctype: str = "text/html") -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
