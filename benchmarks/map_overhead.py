"""Fixed cost of one ``coopt map`` call, beyond the work its budget asks for.

On the ResNet-50 conv2_x reference layer (tests/reference_data/mapper), runs
``coopt map --budget B`` as a command for several budgets and reports wall and
CPU seconds (process start included); then, in one warm process, times
``search()`` at the same budgets (compiled kernels on, as in a long-lived
worker) and fits time = fixed + per-evaluation x evaluations: the per-call
fixed cost; and the first search of a fresh process (default policy).  The baseline is ``--baseline-tree DIR``
(another checkout) timed the same way in the same run, if given.

    python benchmarks/map_overhead.py [--budgets 200,1500,6000] [--baseline-tree DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "tests" / "reference_data" / "mapper" / "resnet50-conv2x-3x3-eyeriss-like"


def command(tree: Path, budget: int) -> tuple[float, float, int]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "coopt.cli", "map", str(CASE / "input.yaml"), str(CASE / "ERT.yaml"),
                          str(CASE / "ART.yaml"), "--budget", str(budget), "--json"], env=env, cwd=tree,
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), json.loads(out.stdout)["mappings_evaluated"]


def _child(budgets: list[int]) -> None:
    from coopt.inputs import load_inputs
    from coopt.mapper.constraints import constraints_from_inputs
    from coopt.mapper.search import search

    inp = load_inputs([str(CASE / "input.yaml"), str(CASE / "ERT.yaml"), str(CASE / "ART.yaml")])
    cons = constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources)
    t0 = time.process_time()
    search(inp.problem, inp.arch, inp.tables, cons, budget=budgets[0], seed=99)
    first = time.process_time() - t0
    rows = []
    for rep in range(3):
        for b in budgets:
            t = time.process_time()
            r = search(inp.problem, inp.arch, inp.tables, cons, budget=b, seed=rep * 1000 + b)
            rows.append((r.stats.evaluated, time.process_time() - t))
    print(json.dumps({"first": first, "rows": rows}))


def warm(tree: Path, budgets: list[int]) -> dict:
    """The first search of a fresh process (default policy) and the per-call cost once warm
    (compiled kernels forced on: a long-lived worker's state)."""
    runs = {}
    for mode in ("", "1"):
        env = {**os.environ, "PYTHONPATH": str(tree), "COOPT_JIT": mode}
        out = subprocess.run([sys.executable, __file__, "--budgets", ",".join(map(str, budgets)), "--_child"],
                             env=env, cwd=tree, capture_output=True, text=True, check=True)
        runs[mode] = json.loads(out.stdout)
    d = {**runs["1"], "first": runs[""]["first"]}
    n = np.array([r[0] for r in d["rows"]], dtype=float)
    t = np.array([r[1] for r in d["rows"]])
    slope, fixed = np.polyfit(n, t, 1)
    return {"first": d["first"], "fixed": fixed, "per_eval_us": slope * 1e6}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="200,1500,6000")
    ap.add_argument("--baseline-tree", type=Path, default=None)
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    if args._child:
        _child(budgets)
        return
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    trees = [("this checkout", ROOT)] + ([("baseline", args.baseline_tree.resolve())] if args.baseline_tree else [])
    for label, tree in trees:
        for b in budgets:
            wall, cpu, n = command(tree, b)
            print(f"[{label}] coopt map --budget {b}: {wall:.2f} s wall, {cpu:.2f} s CPU, {n} evaluations")
        w = warm(tree, budgets)
        print(f"[{label}] in one process: first search {w['first']:.3f} s CPU; then per call "
              f"{w['fixed'] * 1e3:.1f} ms fixed + {w['per_eval_us']:.1f} us per evaluation")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
