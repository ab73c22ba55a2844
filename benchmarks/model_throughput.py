"""Native-model throughput: mapping evaluations per second on one core.

For each unique ResNet-50 layer on the Eyeriss-like template (default
parameters), draws random valid mappings and evaluates them
  * with the model as the mapper runs it (``fused.evaluate_batch``: one compiled pass
    per mapping through nest analysis in closed form, collapse and costs),
  * with the array chain the mapper used before (``nest_stats`` -> ``collapse`` ->
    ``evaluate_costs``: the same compiled nest and collapse kernels over batch-sized
    arrays, costs in numpy), same mappings,
  * with the numpy reference path (``--numpy`` mappings per layer), and
  * with the literal walk of Timeloop's nest analysis (``--walk``; 0 skips it),
then prints mappings/s (CPU time, kernels loaded before timing) and the ratios, all
measured in this run.  All four agree number for number (tests/test_model_fused.py,
tests/test_nest_closed_form.py); Timeloop's own mapper evaluated about 40 valid
mappings per CPU-second on this machine.

``--baseline-tree DIR`` also runs DIR's own copy of this benchmark (another checkout, e.g.
``git archive <commit> | tar -x -C DIR``) on the same layers, batch and seed, after this
one, and prints the ratio.

    python benchmarks/model_throughput.py [--batch 20000] [--walk 10] [--layers 24] [--seed 0]
                                          [--baseline-tree DIR]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from coopt.arch.template import load_template  # noqa: E402
from coopt.energy.estimate import estimate  # noqa: E402
from coopt.mapper.sample import random_batch  # noqa: E402
from coopt.model.collapse import collapse  # noqa: E402
from coopt.model.cost import ArchCosts, evaluate_costs  # noqa: E402
from coopt.model import jit  # noqa: E402
from coopt.model.evaluate import evaluate  # noqa: E402
from coopt.model.fused import evaluate_batch  # noqa: E402
from coopt.model.nest import ProblemArrays, nest_stats  # noqa: E402
from coopt.workload.networks import resnet50  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=20000, help="mappings per layer for the vectorised model")
    ap.add_argument("--walk", type=int, default=10, help="mappings per layer for the literal walk")
    ap.add_argument("--layers", type=int, default=24, help="how many unique layers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--numpy", type=int, default=2000,
                    help="mappings per layer through the numpy reference path (0: skip)")
    ap.add_argument("--baseline-tree", type=Path, default=None, help="another checkout timed the same way")
    args = ap.parse_args()
    jit.enable()                      # the model as the mapper runs it in a network or a study

    arch = load_template("eyeriss_like").instantiate({})
    tables = estimate(arch)
    ac = ArchCosts(arch, tables)
    rng = np.random.default_rng(args.seed)
    net = resnet50()
    fast_n = fast_t = walk_n = walk_t = np_n = np_t = chain_t = 0.0
    # warm-up (not timed): loads the compiled kernels, so the first layer is not charged for it
    warm = net.layers[0].problem
    wmb = random_batch(warm, arch, 64, np.random.default_rng(args.seed + 1))
    wpa = ProblemArrays(warm)
    wns = nest_stats(wpa, arch, wmb)
    evaluate_costs(wns, collapse(wns, wmb.keep, wpa.read_write), ac)
    evaluate_batch(wpa, arch, ac, wmb)
    print(f"{'layer':28s} {'model map/s':>12s} {'walk map/s':>11s} {'ratio':>8s}")
    for entry in net.layers[: args.layers]:
        prob = entry.problem
        pa = ProblemArrays(prob)
        mb = random_batch(prob, arch, args.batch, rng)
        t0 = time.process_time()
        evaluate_batch(pa, arch, ac, mb)
        dt = time.process_time() - t0
        t0 = time.process_time()
        ns = nest_stats(pa, arch, mb)
        evaluate_costs(ns, collapse(ns, mb.keep, pa.read_write), ac)
        chain_t += time.process_time() - t0
        if args.numpy:
            sub = mb.take(np.arange(min(args.numpy, len(mb))))
            os.environ["COOPT_JIT"] = "0"
            t2 = time.process_time()
            ns0 = nest_stats(pa, arch, sub)
            evaluate_costs(ns0, collapse(ns0, sub.keep, pa.read_write), ac)
            np_t += time.process_time() - t2
            np_n += len(sub)
            os.environ.pop("COOPT_JIT")
        names = [d.name for d in prob.dataspaces]
        targets = [lvl.name for lvl in arch.storage]
        t1 = time.process_time()
        for b in range(args.walk):
            evaluate(prob, arch, tables, mb.mapping(b, targets, prob.dims, names), arch_costs=ac, engine="walk")
        wt = time.process_time() - t1
        fast_n, fast_t, walk_n, walk_t = fast_n + len(mb), fast_t + dt, walk_n + args.walk, walk_t + wt
        print(_row(entry.name, len(mb) / dt, args.walk / wt if args.walk else None))
    f, w = fast_n / fast_t, (walk_n / walk_t if walk_n else None)
    print(_row("ALL", f, w))
    if w is None:
        print(f"model: {f:,.0f} mappings/s on one core (literal walk not run: --walk 0)")
    else:
        print(f"model: {f:,.0f} mappings/s on one core; literal walk: {w:,.1f} mappings/s; "
              f"ratio {f / w:,.0f}x")
    print(f"array chain (batch arrays, numpy costs; same mappings): {fast_n / chain_t:,.0f} mappings/s; "
          f"one pass per mapping {f / (fast_n / chain_t):.2f}x")
    if np_n:
        print(f"numpy reference path (same mappings, first {args.numpy} per layer): {np_n / np_t:,.0f} mappings/s; "
              f"compiled {f / (np_n / np_t):.2f}x")
    if args.baseline_tree:
        base = _baseline(args.baseline_tree.resolve(), args)
        print(f"baseline tree {args.baseline_tree} (its own benchmark, same layers, batch, seed): {base:,.0f} mappings/s; "
              f"this checkout {f / base:.2f}x")


def _baseline(tree: Path, args) -> float:
    """Mappings/s that ``tree``'s own model_throughput.py reports (its 'ALL' row)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, str(tree / "benchmarks" / "model_throughput.py"), "--walk", "0",
                          "--numpy", "0", "--batch", str(args.batch), "--layers", str(args.layers),
                          "--seed", str(args.seed)], env=env, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"^ALL\s+([\d,]+)", out, re.M).group(1).replace(",", ""))


def _row(name: str, fast: float, walk: float | None) -> str:
    if walk is None:
        return f"{name:28s} {fast:12,.0f} {'-':>11s} {'-':>8s}"
    return f"{name:28s} {fast:12,.0f} {walk:11,.1f} {fast / walk:8,.0f}x"


if __name__ == "__main__":
    main()
