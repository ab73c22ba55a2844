"""Export chosen trials as self-contained Timeloop + Accelergy input folders.

Why: a design the search found is only worth building once the real tools
agree with coopt.  Each trial folder holds exactly what ``timeloop-model``
needs (architecture, compound classes, per-layer problem and mapping, and
coopt's own ERT/ART so that Timeloop uses the very energies coopt used),
the numbers coopt predicts for them, and the command lines to check them.

Safety: everything is written into a temporary folder inside ``out_dir`` and
renamed into place, every path is resolved and checked to stay inside
``out_dir``, layer names become plain file names, and an existing export is
replaced only when asked (``force``).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

from coopt.arch.yaml_io import arch_from_yaml
from coopt.energy.select import arch_tables
from coopt.errors import CooptError
from coopt.energy.accelergy_files import (art_yaml, components_yaml, dumps_accelergy, ert_yaml, unknown_classes,
                                          with_numeric_version, with_required_actions)
from coopt.numbers import column_digits, energy, fmt
from coopt.outputs import output_dir
from coopt.study.breakdown import component_breakdown, headroom
from coopt.study.front import front_equivalents, pareto_front
from coopt.study.records import LayerRecord, TrialRecord, read_records
from coopt.study.sparsity import record_is_sparse
from coopt.yamlio import dumps_yaml

__all__ = ["export_trials", "pareto_numbers", "safe_name", "timeloop_command", "write_index"]

TOLERANCE = 0.005                    # run_timeloop.sh: PASS when Timeloop is within 0.5 % of coopt

_TOTALS = (("energy_uj", "energy per inference", "µJ"), ("latency_ms", "latency", "ms"),
           ("latency_cycles", "latency", "cycles"), ("throughput_ips", "throughput", "inferences/s"),
           ("area_mm2", "area", "mm²"), ("power_mw", "average power", "mW"),
           ("onchip_kib", "on-chip storage", "KiB"), ("edp_uj_ms", "energy-delay product", "µJ·ms"),
           ("macs", "MACs per inference", "MACs"), ("mac_instances", "MAC units", "units"))


def pareto_numbers(study_dir: Path, objectives: list[tuple[str, str]]) -> list[int]:
    """Trial numbers of the study's Pareto front (feasible, non-dominated), first objective order."""
    return [r.number for r in pareto_front(read_records(Path(study_dir)), objectives)]


def safe_name(name: str) -> str:
    """A plain file name for a layer: only [A-Za-z0-9._-], no '..', no leading dot or dash."""
    s = re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9._-]", "_", str(name)))
    return re.sub(r"_{2,}", "_", s).lstrip(".-")[:100] or "layer"


def timeloop_command(stem: str, *, tables: bool = True, prefix: str = "") -> str:
    """The ``timeloop-model`` line for one layer (``prefix``: path from the run folder to the trial)."""
    files = ["arch.yaml", "components.yaml", f"prob/{stem}.yaml", f"map/{stem}.yaml"]
    files += ["ERT.yaml", "ART.yaml"] if tables else []
    return "timeloop-model " + " ".join(prefix + f for f in files)


def _stems(layers: list[LayerRecord]) -> list[str]:
    """Unique safe file stems, in layer order (a clash gets -2, -3, ...)."""
    out, used = [], set()
    for layer in layers:
        base = stem = safe_name(layer.name)
        k = 2
        while stem.lower() in used:
            stem, k = f"{base}-{k}", k + 1
        used.add(stem.lower())
        out.append(stem)
    return out


def _mapped(layer: LayerRecord) -> bool:
    return bool(layer.found and layer.mapping_yaml)


def _strict(x):
    """JSON without NaN/Infinity (non-finite numbers become null)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    return x


def _fmt(v) -> str:
    return fmt(v)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]


def _notes(rec: TrialRecord, stems: list[str], arch) -> list[str]:
    notes = []
    for layer, stem in zip(rec.layers, stems):
        if not _mapped(layer):
            why = f": {layer.reason}" if layer.reason else ""
            notes.append(f"layer {layer.name!r} was not mapped{why}; map/{stem}.yaml is omitted and it has "
                         f"no timeloop-model command")
        if stem != layer.name:
            notes.append(f"layer {layer.name!r} is written as '{stem}' (file names keep only [A-Za-z0-9._-])")
    if record_is_sparse(rec):
        notes.append("evaluated under sparsity (Sparseloop's model): the densities are in prob/*.yaml and the "
                     "sparse optimisations in arch.yaml; timeloop-model reads both (a Timeloop with Sparseloop, "
                     "2022 or later)")
    missing = unknown_classes(arch)
    if missing:
        notes.append(f"components.yaml has no definition for {', '.join(missing)}: Accelergy must know them "
                     f"to estimate energies itself (the ERT.yaml/ART.yaml runs do not need them)")
    return notes


def _summary(rec: TrialRecord, stems: list[str], notes: list[str], tables_source: str, budgets: dict,
             objectives: list) -> dict:
    layers = []
    for layer, stem in zip(rec.layers, stems):
        layers.append({"name": layer.name, "file": stem, "count": layer.count, "mapped": _mapped(layer),
                       "energy_pj": layer.energy_pj, "cycles": layer.cycles, "utilization": layer.utilization,
                       "pj_per_mac": layer.pj_per_mac, "mappings_evaluated": layer.mappings_evaluated,
                       "reason": layer.reason, "problem": f"prob/{stem}.yaml",
                       "mapping": f"map/{stem}.yaml" if _mapped(layer) else None,
                       "command": timeloop_command(stem) if _mapped(layer) else None})
    return {"trial": rec.number, "template": rec.template, "template_params": rec.template_params,
            "dataflow": rec.dataflow, "network": rec.network, "params": rec.params, "metrics": rec.metrics,
            "objectives": rec.objectives, "feasible": rec.feasible, "violations": rec.violations,
            "reasons": rec.reasons, "all_layers_mapped": all(_mapped(l) for l in rec.layers),
            "study_objectives": [list(o) for o in objectives], "budgets": budgets,
            "headroom": headroom(rec, budgets),
            "energy_tables": tables_source, "notes": notes, "layers": layers, "not_mapped": rec.not_mapped}


def _markdown(rec: TrialRecord, stems: list[str], notes: list[str], budgets: dict) -> str:
    flow = f" ({rec.dataflow})" if rec.dataflow else ""
    out = [f"# Trial {rec.number}: {rec.template}{flow} on {rec.network}", ""]
    out += [f"Feasible: **{_fmt(rec.feasible)}**" + (" — " + "; ".join(rec.reasons) if rec.reasons else ""), ""]
    out += ["## Design parameters", "", "Searched:", ""]
    out += _table(["parameter", "value"], [[k, str(v)] for k, v in rec.params.items()])
    out += ["", "Template (all, resolved):", ""]
    out += _table(["parameter", "value"], [[k, str(v)] for k, v in rec.template_params.items()])
    extra = [(k, k, "") for k in rec.metrics if k not in {t[0] for t in _TOTALS}]
    rows = [[label, rec.metrics[k], unit] for k, label, unit in (*_TOTALS, *extra) if k in rec.metrics]
    out += ["", f"## Totals (network {rec.network}, one inference)", ""]
    out += _table(["metric", "value", "unit"], rows)
    if rec.not_mapped:
        from coopt.workload.networks import not_mapped_summary
        out += ["", not_mapped_summary(rec.not_mapped)]
    room = headroom(rec, budgets)
    if budgets:
        out += ["", "## Budgets", "", "Headroom is budget minus value: positive means room left.", ""]
        out += _table(["budget", "limit", "value", "headroom", "within"],
                      [[k, float(v), rec.metrics.get(k), room.get(k), room.get(k, -1) >= 0]
                       for k, v in budgets.items()])
    out += _breakdown_md(rec)
    out += ["", "## Layers", "", "Energy and cycles are per execution of the layer; `count` executions per "
            "inference.  These are the numbers `timeloop-model` should print for each command below.", ""]
    lines = _table(["layer", "file", "count", "mapped", "energy", "cycles", "utilization", "pJ/MAC"],
                   [[l.name, s, l.count, _mapped(l), None, l.cycles, l.utilization, l.pj_per_mac]
                    for l, s in zip(rec.layers, stems)])
    for i, l in enumerate(rec.layers):          # energies in a fitting unit, not 2.94896e+08 pJ
        cells = lines[2 + i].split(" | ")
        cells[4] = energy(l.energy_pj)
        lines[2 + i] = " | ".join(cells)
    out += lines
    mapped = [s for l, s in zip(rec.layers, stems) if _mapped(l)]
    out += ["", "## Checking with Timeloop", "",
            "`./run_timeloop.sh` runs every layer below (each in its own folder `out/<layer>/`: Timeloop "
            "cannot run twice in one folder) and prints Timeloop's cycles and energy next to coopt's, PASS "
            f"when within {TOLERANCE:.1%}.  `ERT.yaml`/`ART.yaml` are coopt's own energy (pJ per action) and "
            "area (µm² per instance) estimates in Accelergy 0.4 format, so with them Timeloop uses exactly "
            "coopt's energies.  One layer by hand, from this folder:", "",
            "```sh", *[timeloop_command(s) for s in mapped], "```", "",
            "Without the last two files Accelergy estimates energies and areas itself (it needs its plug-ins; "
            "the compound classes are in `components.yaml`; with the plug-in versions coopt's README names, "
            "its energies agree with coopt's; other versions differ): "
            "`./run_timeloop.sh --accelergy` (outputs in `out-accelergy/<layer>/`, cycles compared only)."]
    if notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(out) + "\n"


def _breakdown_md(rec: TrialRecord) -> list[str]:
    """Energy per inference and area per component, outer level first."""
    parts = component_breakdown(rec)
    e_total = sum(p.energy_uj for p in parts) or 1.0
    a_total = sum(p.area_mm2 for p in parts) or 1.0
    shown = [p for p in parts if p.energy_uj or p.area_mm2 >= 1e-4]        # wiring placeholders cost nothing
    out = ["", "## Energy and area by component", "",
           "Per inference, over the mapped layers (leakage included); area of all instances (off-chip "
           "memory has no area on the chip).", ""]
    out += _table(["component", "instances", "energy (µJ)", "energy share", "area (mm²)", "area share"],
                  [[p.component, p.instances, p.energy_uj, f"{100 * p.energy_uj / e_total:.1f} %",
                    p.area_mm2 if p.area_mm2 else "off-chip", f"{100 * p.area_mm2 / a_total:.1f} %"] for p in shown])
    return out


def _script(rec: TrialRecord, stems: list[str]) -> str:
    """run_timeloop.sh: every mapped layer through timeloop-model, then Timeloop vs coopt, PASS/FAIL."""
    expected = "\n".join(f"{s} {l.cycles} {l.energy_pj!r}" for l, s in zip(rec.layers, stems) if _mapped(l))
    return f"""#!/bin/sh
# Runs timeloop-model on every mapped layer of trial {rec.number}, each in its own output folder
# (Timeloop cannot run two instances in one folder), then compares Timeloop's cycles and energy
# with coopt's: PASS within {TOLERANCE:.1%}.  Exit status 0 when every layer passes, 1 otherwise,
# 2 when timeloop-model is not installed.
#   ./run_timeloop.sh              coopt's ERT.yaml/ART.yaml -> out/<layer>/
#   ./run_timeloop.sh --accelergy  Accelergy estimates        -> out-accelergy/<layer>/ (cycles compared)
set -u
cd "$(dirname "$0")"
if ! command -v timeloop-model >/dev/null 2>&1; then
  echo "run_timeloop.sh: timeloop-model not found on PATH: install Timeloop (Docker image timeloopaccelergy/timeloop-accelergy-pytorch, or build https://github.com/NVlabs/timeloop) and re-run" >&2
  exit 2
fi
out=out
tables="../../ERT.yaml ../../ART.yaml"
energy=1
if [ "${{1:-}}" = "--accelergy" ]; then out=out-accelergy; tables=""; energy=0; fi
tol={TOLERANCE}
status=0
printf '%-28s %14s %14s %14s %14s  %s\\n' layer "coopt cycles" "Timeloop" "coopt pJ" "Timeloop pJ" result
while read -r layer cycles pj; do
  [ -n "$layer" ] || continue
  mkdir -p "$out/$layer"
  if ! (cd "$out/$layer" && {timeloop_command('$layer', tables=False, prefix='../../')} $tables \
        >timeloop-model.log 2>&1); then
    printf '%-28s %14s %14s %14s %14s  %s\\n' "$layer" "$cycles" - "$pj" - "ERROR (see $out/$layer/timeloop-model.log)"
    status=1
    continue
  fi
  awk -v layer="$layer" -v cycles="$cycles" -v pj="$pj" -v tol="$tol" -v energy="$energy" '
    /^Summary Stats/ {{ s = 1 }}
    s && /^Cycles:/ {{ c = $2 }}
    s && /^(Actual )?Computes =/ {{ n = $NF }}
    s && /^fJ\\/Compute/ {{ f = 1 }}
    s && f && $1 == "Total" {{ t = $3 }}
    function rel(a, b) {{ d = a - b; if (d < 0) d = -d; return b == 0 ? d : d / b }}
    END {{
      if (c == "" || t == "") {{ printf "%-28s %14s %14s %14s %14s  %s\\n", layer, cycles, "?", pj, "?", "FAIL (no summary in the stats file)"; exit 1 }}
      e = t * n / 1000
      ok = rel(c, cycles) <= tol && (!energy || rel(e, pj) <= tol)
      printf "%-28s %14.0f %14.0f %14.6g %14.6g  %s\\n", layer, cycles, c, pj, e, (ok ? "PASS" : "FAIL") (energy ? "" : " (cycles only)")
      exit ok ? 0 : 1
    }}' "$out/$layer/timeloop-model.stats.txt" || status=1
done <<'LAYERS'
{expected}
LAYERS
exit $status
"""


def _files(rec: TrialRecord, budgets: dict, objectives: list, same: list[int] = ()) -> dict[str, str]:
    """Relative path -> text of everything one trial folder holds."""
    arch = arch_from_yaml(rec.arch_yaml["architecture"])
    classes = _own_classes(rec)
    tables = arch_tables(arch, classes, using=rec.energy_method)   # the tables the study used
    stems = _stems(rec.layers)
    notes = _notes(rec, stems, arch)
    components = components_yaml(arch, classes)
    written = {c["name"] for c in components["compound_components"]["classes"]}
    files = {"arch.yaml": dumps_accelergy(with_numeric_version(with_required_actions(
                 rec.arch_yaml, arch, compound=written if classes else None))),
             "components.yaml": dumps_accelergy(components),
             "ERT.yaml": dumps_yaml(ert_yaml(arch, tables)), "ART.yaml": dumps_yaml(art_yaml(arch, tables))}
    for layer, stem in zip(rec.layers, stems):
        files[f"prob/{stem}.yaml"] = dumps_yaml(layer.problem_yaml)
        if _mapped(layer):
            files[f"map/{stem}.yaml"] = dumps_yaml(layer.mapping_yaml)
    summary = _summary(rec, stems, notes, tables.source, budgets, objectives)
    summary["same_objectives"] = list(same)
    files["summary.json"] = json.dumps(_strict(summary), indent=1) + "\n"
    files["summary.md"] = _markdown(rec, stems, notes, budgets)
    files["run_timeloop.sh"] = _script(rec, stems)
    if rec.spec:                                   # a spec-backed search: the design as a v4 spec too
        from coopt.export.v4 import v4_files
        files.update(v4_files(rec, stems))
    return files


def _own_classes(rec: TrialRecord) -> list:
    """The component classes of a spec-backed trial's own files (as its trial was estimated with them);
    a template's trial has none (coopt's shipped classes)."""
    if not rec.spec:
        return []
    from coopt.arch.spec_template import SpecTemplate
    from coopt.design import component_classes
    raw, sources = SpecTemplate.from_json(rec.spec).load(dict(rec.template_params))
    return component_classes(raw, sources)


def _inside(path: Path, root: Path) -> None:
    real = path.resolve()
    if not real.is_relative_to(root):
        raise CooptError(f"refusing to write {path}: it resolves to {real}, outside {root}")


def _check_target(target: Path, root: Path, force: bool) -> None:
    _inside(target, root)
    if target.is_symlink():
        raise CooptError(f"refusing to write through the link {target} -> {target.resolve()}: "
                         f"exports are plain folders inside {root}")
    if target.exists() and not target.is_dir():
        raise CooptError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise CooptError(f"{target} already exists and is not empty; use force=True (--force) to replace it")


def _write(target: Path, files: dict[str, str], root: Path) -> Path:
    """Write into a temporary sibling, then swap it in (never half an export)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        for rel, text in files.items():
            path = tmp / rel
            _inside(path, tmp.resolve())
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        for script in ("run_timeloop.sh", "v4/run_v4.sh"):
            if (tmp / script).is_file():
                (tmp / script).chmod(0o755)
        tmp.chmod(0o755)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _known(records: dict[int, TrialRecord], study_dir: Path) -> str:
    if not records:
        return f"the study at {study_dir} has no trial records"
    nums = sorted(records)
    shown = ", ".join(map(str, nums[:30])) + (f", ... ({len(nums)} in all)" if len(nums) > 30 else "")
    return f"known trials: {shown}"


def export_trials(study_dir: Path, numbers: list[int], out_dir: Path, *, force: bool = False,
                  study: str | None = None) -> list[Path]:
    """Write ``out_dir/trial-<n>/`` for each trial number; return the folders written.  Each summary names
    the trials with the same objective values when the design is on the study's front.

    Everything is checked (trial numbers, targets) before anything is written.
    """
    study_dir = Path(study_dir)
    records = {r.number: r for r in read_records(study_dir)}
    wanted = list(dict.fromkeys(int(n) for n in numbers))
    for n in wanted:
        if n not in records:
            raise CooptError(f"trial {n} not found in {study_dir}; {_known(records, study_dir)}")
    if Path(out_dir).is_symlink() and not force:
        output_dir(out_dir, force=False)          # names the link (or the loop) and refuses it
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CooptError(f"cannot create the export folder {out_dir}: {exc.strerror or exc}") from None
    root = Path(out_dir).resolve()
    budgets, objectives = _study_settings(study_dir)
    same = front_equivalents(list(records.values()), objectives) if objectives else {}
    plans = [(root / f"trial-{n}", _files(records[n], budgets, objectives, same.get(n, []))) for n in wanted]
    for target, _ in plans:
        _check_target(target, root, force)
    try:
        written = [_write(target, files, root) for target, files in plans]
    except OSError as exc:
        raise CooptError(f"cannot write the export: {exc.strerror or exc}", file=exc.filename or str(out_dir),
                         key="--out") from None
    write_index(root, study, force=force)
    return written

def _study_settings(study_dir: Path) -> tuple[dict, list]:
    """The study's budgets and objectives (from its study.json; none for a bare folder of records)."""
    meta = Path(study_dir) / "study.json"
    if not meta.is_file():
        return {}, []
    settings = json.loads(meta.read_text()).get("settings", {})
    return dict(settings.get("budgets") or {}), [tuple(o) for o in settings.get("objectives") or []]


def write_index(root: Path, study: str | None = None, force: bool = False) -> tuple[Path, Path] | None:
    """``index.csv`` and ``index.md`` comparing every exported design in ``root`` (objectives,
    parameters, headroom against each budget), rebuilt from the folders' summary.json files, in the
    order of the front (best first on the first objective).  Written whole (atomically); a link in
    their place is refused without ``force`` and replaced, never written through, with it."""
    import pandas as pd

    from coopt.outputs import atomic_write_text
    for name in ("index.csv", "index.md"):
        if (root / name).is_symlink() and not force:
            raise CooptError("is a symbolic link; refusing to write through it", file=str(root / name),
                             key="--out", expected="a folder coopt export wrote, or --force to replace the link")

    summaries = []
    for folder in sorted(root.glob("trial-*"), key=lambda p: (len(p.name), p.name)):
        path = folder / "summary.json"
        if folder.is_dir() and not folder.is_symlink() and path.is_file():
            summaries.append((folder.name, json.loads(path.read_text())))
    if not summaries:
        return None
    objectives = next((s["study_objectives"] for _, s in summaries if s.get("study_objectives")), [])
    named = {o[0] for o in objectives}
    metrics = [o[0] for o in objectives] + [m for m in ("energy_uj", "throughput_ips", "latency_ms", "area_mm2",
                                                        "power_mw", "onchip_kib") if m not in named]
    params = list(dict.fromkeys(k for _, s in summaries for k in s["params"]))
    if objectives:
        first, direction = objectives[0]
        sign = 1 if direction == "minimize" else -1
        summaries.sort(key=lambda x: (not x[1]["feasible"], sign * (x[1]["metrics"].get(first) or 0), x[1]["trial"]))
    rows = []
    for name, s in summaries:
        row = {"trial": s["trial"], "folder": name, "feasible": s["feasible"]}
        row.update({m: s["metrics"].get(m) for m in metrics})
        row.update({k: s["params"].get(k) for k in params})
        row.update({f"headroom_{k}": v for k, v in (s.get("headroom") or {}).items()})
        row["same_objectives"] = " ".join(f"t{n:03d}" for n in s.get("same_objectives") or [])
        rows.append(row)
    df = pd.DataFrame(rows)
    csv_path, md_path = root / "index.csv", root / "index.md"
    atomic_write_text(csv_path, df.to_csv(index=False), key="--out")
    arrows = {o[0]: (" ↓" if o[1] == "minimize" else " ↑") for o in objectives}
    import datetime

    from coopt import __version__
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Exported designs" + (f" of study `{study}`" if study else ""), "",
             f"Written {made} by coopt {__version__}, best first on the first objective.", "",
             f"{len(df)} designs.  Objectives are marked ↓ (lower is better) or ↑ (higher is better); "
             "`headroom_<budget>` is the budget minus the value (positive: room left).  Each folder holds "
             "`summary.md` and `run_timeloop.sh`.", ""]
    lines += _table([f"{c}{arrows.get(c, '')}" for c in df.columns], [])
    digits = {m: column_digits([row.get(m) for row in rows]) for m in metrics}   # entries stay apart
    for row in rows:
        cells = [f"[{v}]({v}/summary.md)" if k == "folder" else str(v) if k in params or k == "same_objectives"
                 else fmt(v, digits[k]) if k in digits else _fmt(v) for k, v in row.items()]
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write_text(md_path, "\n".join(lines) + "\n", key="--out")
    return csv_path, md_path
