"""Plain-text reports of evaluations (what the CLI prints; no logic lives here)."""
from __future__ import annotations

from coopt.arch.spec import Architecture
from coopt.model.evaluate import MappingEval
from coopt.workload.problem import Problem


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    line = "-" * len(fmt(header))
    return "\n".join([fmt(header), line] + [fmt(r) for r in rows])


def evaluation_text(r: MappingEval, problem: Problem, arch: Architecture, energy_source: str) -> str:
    dims = " ".join(f"{d}={problem.bounds[d]}" for d in problem.dims)
    out = [f"{problem.name} ({dims}) on {arch.name}   [native engine, energies: {energy_source}]"]
    if not r.valid:
        out.append(f"INVALID MAPPING: {r.reason}")
    # an invalid mapping with more spatial instances than the array has: no meaningful utilisation
    util = f"{100 * r.utilization:.2f}%" if r.utilization <= 1 else "n/a (the mapping overflows the PE array)"
    out.append(f"MACs: {r.macs:,}   Cycles: {r.cycles:,}   Utilization: {util}")
    out.append(f"Energy: {r.energy_pj:,.2f} pJ = {r.energy_pj / 1e6:.4f} uJ   ({1000 * r.pj_per_mac:.2f} fJ/MAC)")
    out.append(f"Area: {r.area_um2 / 1e6:.4f} mm^2")
    rows = []
    names = [ds.name for ds in problem.dataspaces]
    for lvl in r.levels:
        counts = []
        for n in names:
            d = lvl.dataspaces[n]
            counts.append(f"{d['reads']}/{d['fills']}/{d['updates']}" if d["reads"] or d["fills"] or d["updates"]
                          else "-")
        rows.append([lvl.name, f"{lvl.energy_pj:,.2f}", f"{1000 * lvl.energy_pj / r.macs:.2f}",
                     f"{lvl.cycles:,}"] + counts)
    rows.append(["MAC", f"{r.mac_energy_pj:,.2f}", f"{1000 * r.mac_energy_pj / r.macs:.2f}",
                 f"{r.compute_cycles:,}"] + [""] * len(names))
    header = ["level", "energy pJ", "fJ/MAC", "cycles"] + [f"{n} r/f/u (per instance)" for n in names]
    out.append("")
    out.append(_table(rows, header))
    return "\n".join(out)


def not_mapped_lines(not_mapped) -> list[str]:
    """What a user's model holds beyond the mapped layers: one line per operation kind (and reason)."""
    if not not_mapped:
        return []
    nodes, elements = sum(n.count for n in not_mapped), sum(n.elements for n in not_mapped)
    rows = [[n.op, f"{n.count:,}", f"{n.elements:,}", n.reason] for n in not_mapped]
    return ["", f"not mapped (outside the totals): {nodes:,} nodes, {elements:,} element operations", "",
            _table(rows, ["op", "nodes", "element ops", "why (mapped kinds only)"])]


def network_text(result, label: str, not_mapped=()) -> str:
    """Per-layer table, network totals, and the operations of a user's model that were not mapped."""
    rows = []
    for l in result.layers:
        if l.found:
            e = l.eval
            rows.append([l.name, str(l.count), f"{e.energy_pj / 1e6:,.3f}", f"{e.cycles:,}",
                         f"{100 * e.utilization:.1f}%", f"{e.pj_per_mac:.3f}", f"{l.evaluated:,}", f"{l.seconds:.2f}"])
        else:
            rows.append([l.name, str(l.count), "-", "-", "-", "-", f"{l.evaluated:,}", f"{l.seconds:.2f}"])
    header = ["layer", "count", "energy uJ", "cycles", "util", "pJ/MAC", "evaluated", "seconds"]
    out = [f"{result.network} on {label}: {len(result.layers)} unique layers, "
           f"{sum(l.count for l in result.layers)} in all, {result.macs:,} MACs", "", _table(rows, header), ""]
    if result.feasible:
        out += [f"energy per inference : {result.energy_uj:,.1f} uJ ({result.energy_pj / result.macs:.3f} pJ/MAC)",
                f"latency              : {result.latency_cycles:,} cycles = {result.latency_s * 1e3:.3f} ms "
                f"at {result.arch.clock_hz / 1e6:.0f} MHz",
                f"throughput           : {result.throughput_ips:,.2f} inferences/s",
                f"area                 : {result.area_mm2:.3f} mm^2",
                f"average power        : {result.power_mw:,.1f} mW",
                f"mapping time         : {result.seconds:.1f} s"]
    else:
        out += ["NOT FEASIBLE:"] + [f"  {r}" for r in result.infeasible_reasons()]
    return "\n".join(out + not_mapped_lines(not_mapped))


def pareto_text(study: str, front, objectives, n_trials: int, n_feasible: int,
                same: dict[int, list[int]] | None = None, hypervolume: float | None = None) -> str:
    """The front as a table: trial, parameters, energy, throughput, area, power, and the trials each entry
    stands for (``same``: other designs with the same objectives, or the same design again).  Each column
    shows the digits that keep its entries apart (``coopt.numbers.column_digits``)."""
    from coopt.numbers import column_digits, fmt

    if not front:
        return f"study {study}: {n_trials} trials, {n_feasible} feasible, no Pareto front yet"
    same = same or {}
    pnames = list(dict.fromkeys(k for r in front for k in r.params))
    metrics = [("energy_uj", "energy uJ"), ("throughput_ips", "inf/s"), ("area_mm2", "area mm2"),
               ("power_mw", "power mW"), ("onchip_kib", "on-chip KiB")]
    digits = {m: column_digits([r.metrics.get(m) for r in front]) for m, _ in metrics}
    header = ["trial"] + pnames + [h for _, h in metrics] + ["same objectives"]
    rows = [[str(r.number)] + [str(r.params.get(p, "-")) for p in pnames] +
            [fmt(r.metrics.get(m), digits[m]) for m, _ in metrics] +
            [",".join(map(str, same.get(r.number, []))) or "-"]
            for r in front]
    objs = ", ".join(f"{d} {n}" for n, d in objectives)
    hv = "" if hypervolume is None else f", hypervolume {fmt(hypervolume)}"
    return (f"study {study}: {n_trials} trials, {n_feasible} feasible; Pareto front ({objs}): "
            f"{len(front)} designs{hv}\n\n" + _table(rows, header))


def trial_line(p) -> str:
    """A finished trial in one line (``coopt search`` off a terminal): ``trial 7/50 t007 11x16 glb2048 8b
    800MHz: energy µJ 1,234, inf/s 12.52, area mm² 1.03; feasible; front 3``."""
    from coopt.numbers import fmt
    from coopt.study.front import is_mapped
    from coopt.tracking.present import SHORT, run_name

    rec = p.last
    values = ", ".join(f"{SHORT.get(n, n)} {fmt(rec.metrics.get(n))}" for n in p.objectives) \
        if is_mapped(rec) else "not mapped"
    state = "feasible" if rec.feasible else "infeasible" + (f" ({rec.reasons[0]})" if rec.reasons else "")
    return f"trial {p.done}/{p.total} {run_name(rec)}: {values}; {state}; front {p.front_size}"


def verify_text(checks, engine: str, tolerance: float) -> str:
    """Per trial and layer: native vs reference energy and cycles, ratios, flags."""
    out = []
    for check, logged in checks:
        r = check.ratios
        head = f"trial {check.number}: " + ("FLAGGED" if check.flagged else "ok") + \
            f" (tolerance {100 * tolerance:.1f} %)" + ("" if logged else "  [no MLflow run to log to]")
        rows = []
        for l in check.layers:
            fmt = lambda v, f: "-" if v is None else f.format(v)
            rows.append([l.layer, str(l.count), f"{l.native_energy_pj:,.0f}", f"{l.native_cycles:,}",
                         fmt(l.model_energy_pj, "{:,.0f}"), fmt(l.model_cycles, "{:,}"),
                         fmt(l.model_energy_ratio, "{:.4f}"), fmt(l.mapper_energy_pj, "{:,.0f}"),
                         fmt(l.mapper_cycles, "{:,}"), l.error or ""])
        header = ["layer", "count", "native pJ", "native cycles", f"{engine} model pJ", f"{engine} cycles",
                  "ratio", f"{engine} mapper pJ", "mapper cycles", "error"]
        totals = "  ".join(f"{k} {v:.4f}" for k, v in r.items())
        out += [head, _table(rows, header), f"totals: {totals}", ""]
    return "\n".join(out)


def compare_rows(recs, breakdowns) -> list[tuple[str, list[list[str]]]]:
    """Sections of a side-by-side comparison of designs: (title, rows), each row a label and one cell per
    design.  ``breakdowns``: per design, ``coopt.study.breakdown.component_breakdown``'s list (or None)."""
    from coopt.numbers import column_digits, fmt

    def row(label, values):
        digits = column_digits(values)
        return [label] + [fmt(v, digits) if isinstance(v, float) else "–" if v is None else fmt(v) for v in values]

    params = list(dict.fromkeys(k for r in recs for k in r.params))
    totals = [("energy µJ", "energy_uj"), ("inferences/s", "throughput_ips"), ("latency ms", "latency_ms"),
              ("area mm²", "area_mm2"), ("power mW", "power_mw"), ("on-chip KiB", "onchip_kib")]
    sections = [("parameters", [row(k, [r.params.get(k) for r in recs]) for k in params]),
                ("totals", [row(label, [float(r.metrics[m]) if r.feasible or m in ("area_mm2", "onchip_kib")
                                        else None for r in recs]) for label, m in totals]
                 + [["feasible"] + ["yes" if r.feasible else "no" for r in recs]])]
    from coopt.tracking.present import used_components

    share = [{p.component: p for p in (b or [])} for b in breakdowns]
    comps = used_components(breakdowns)
    sections.append(("energy per component (µJ per inference)",
                     [row(c, [s[c].energy_uj if c in s else None for s in share]) for c in comps]))
    sections.append(("area per component (mm²; off-chip memory has none)",
                     [row(c + (" (off-chip)" if all(s.get(c) is None or not s[c].area_mm2 for s in share) else ""),
                          [s[c].area_mm2 if c in s else None for s in share]) for c in comps]))
    layers = list(dict.fromkeys(layer.name for r in recs for layer in r.layers))
    per = [{layer.name: layer for layer in r.layers} for r in recs]
    sections.append(("energy per layer (µJ, all its executions)", [
        row(n, [p[n].count * p[n].energy_pj / 1e6 if n in p and p[n].found else None for p in per]) for n in layers]))
    sections.append(("cycles per layer (all its executions)", [
        row(n, [p[n].count * p[n].cycles if n in p and p[n].found else None for p in per]) for n in layers]))
    return sections


def compare_text(study: str, recs, breakdowns) -> str:
    """``coopt compare``: the designs side by side, one column each."""
    from coopt.tracking.present import run_name

    names = [run_name(r) for r in recs]
    out = [f"study {study}: {len(recs)} designs side by side", ""]
    for title, rows in compare_rows(recs, breakdowns):
        if rows:
            out += [title, _table(rows, [""] + names), ""]
    return "\n".join(out).rstrip() + "\n"
