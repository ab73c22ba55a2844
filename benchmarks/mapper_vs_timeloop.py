"""coopt's mapper vs Timeloop's mapper on the reference mapper runs (tests/reference_data/mapper).

For every case: the same architecture, layer, constraints and metric (the case's
``mapper.optimization_metric(s)``, [delay, energy] in all of them) and the case's
own ERT/ART; coopt's best mapping is compared with Timeloop's best, both
evaluated by coopt's model (which reproduces Timeloop's numbers exactly:
tests/test_fidelity.py).  Lexicographic by the case's metric: fewer cycles
wins; equal cycles -> less energy.  Also prints wall times (Timeloop's from the
case's wall_time.txt, measured on a shared 2-core machine: a loose figure).

    python benchmarks/mapper_vs_timeloop.py [--budget 6000] [--seeds 3]
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from coopt.backends.timeloop_stats import parse_stats, total_energy_pj
from coopt.energy.accelergy_io import read_tables
from coopt.inputs import load_inputs
from coopt.mapper.constraints import constraints_from_inputs
from coopt.mapper.search import parse_metric, search

ROOT = Path(__file__).resolve().parents[1] / "tests" / "reference_data" / "mapper"


def wall_seconds(case: Path) -> float | None:
    f = case / "wall_time.txt"
    if not f.exists():
        return None
    m = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", f.read_text())
    h, mnt, sec = m.groups()
    return int(h or 0) * 3600 + int(mnt) * 60 + float(sec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=6000)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    print(f"{'case':36s} {'seed':>4s} {'cycles coopt/TL':>22s} {'energy ratio':>12s} {'EDP ratio':>10s} "
          f"{'verdict':>8s} {'coopt s':>8s} {'TL s':>7s}")
    worse = 0
    for case in sorted(ROOT.iterdir()):
        inp = load_inputs([case / "input.yaml"])
        tables = inp.tables.merged(read_tables(case / "ERT.yaml", case / "ART.yaml"))
        cons = constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources)
        block = inp.raw.get("mapper") or {}
        metric = parse_metric(block.get("optimization_metrics") or block.get("optimization_metric"))
        ref = parse_stats(case / "timeloop-mapper.stats.txt")
        e_ref, c_ref = total_energy_pj(ref), ref["cycles"]
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            r = search(inp.problem, inp.arch, tables, cons, metric=metric, budget=args.budget, seed=seed)
            dt = time.perf_counter() - t0
            e, c = r.eval.energy_pj, r.eval.cycles
            if c < c_ref or (c == c_ref and e <= e_ref * (1 + 1e-9)):
                verdict = "better" if (c < c_ref or e < e_ref * (1 - 1e-6)) else "equal"
            else:
                verdict, worse = "WORSE", worse + 1
            tl = wall_seconds(case)
            print(f"{case.name:36s} {seed:4d} {c:>10,}/{c_ref:<11,} {e / e_ref:12.4f} {e * c / (e_ref * c_ref):10.4f} "
                  f"{verdict:>8s} {dt:8.2f} {tl if tl else float('nan'):7.0f}")
    print(f"cases worse than Timeloop: {worse}")


if __name__ == "__main__":
    main()
