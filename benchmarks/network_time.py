"""Whole ResNet-50 on the Eyeriss-like template (row stationary): the cost of one design.

Three measurements, each against a baseline measured in the same run:

1. In process, one core, CPU time (``time.process_time``) of mapping all 24 unique
   layers at ``--budget`` (1500: what one study trial does), with the compiled
   kernels vs the numpy/Python reference paths (``COOPT_JIT=0``; same numbers).
2. ``coopt network --budget B --workers 1`` as a command (process start included):
   wall time; and ``--budget 6000 --workers 2`` vs ``--workers 1``.
3. The energies, which the speed-ups must not change.

    python benchmarks/network_time.py [--budget 1500] [--repeat 3] [--no-cli] [--baseline-tree DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def in_process(budget: int, seeds: list[int], mode: str, tree: Path = ROOT) -> tuple[list[float], list[float]]:
    """CPU seconds and energies (uJ) per design, with COOPT_JIT=mode and the coopt of ``tree``, in a
    fresh process (so that no result cache or loaded kernel carries over from another mode)."""
    # the built-in energy tables: the figures compare with trees that had no other estimator
    env = {**os.environ, "PYTHONPATH": str(tree), "COOPT_JIT": mode, "COOPT_ENERGY": "builtin"}
    out = subprocess.run([sys.executable, __file__, "--budget", str(budget), "--repeat", str(len(seeds)),
                          "--_child"], env=env, capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    return d["times"], d["energies"]


def _child(budget: int, seeds: list[int]) -> None:
    from coopt.backends.base import MapperOptions
    from coopt.design import design_from_template
    try:
        from coopt.backends.network import map_network
    except ImportError:                  # a baseline tree from before the engines moved
        from coopt.mapper.network import map_network
    from coopt.workload.networks import resnet50

    design = design_from_template("eyeriss_like")
    net = resnet50()
    # warm-up (not timed): loads the compiled kernels (the neighbour moves too: budget > 256 random
    # samples) and the per-process caches of shapes, as in a study worker after its first trial
    map_network(net, design.arch, design.tables, design.targets,
                MapperOptions(metric=("edp",), budget=600, seed=10_000), workers=1)
    times, energies = [], []
    for seed in seeds:
        t0 = time.process_time()
        r = map_network(net, design.arch, design.tables, design.targets,
                        MapperOptions(metric=("edp",), budget=budget, seed=seed), workers=1)
        times.append(time.process_time() - t0)
        energies.append(r.energy_uj)
    print(json.dumps({"times": times, "energies": energies}))


def cli(budget: int, workers: int, tree: Path = ROOT) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (the command and its workers) and energy of ``coopt network``
    as a fresh process; CPU time says more than wall time on a loaded machine."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COOPT_ENERGY": "builtin"}   # the tables the baseline had
    env.pop("COOPT_JIT", None)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "coopt.cli", "network", "--budget", str(budget), "--workers",
                          str(workers), "--json"], env=env, capture_output=True, text=True, check=True, cwd=tree)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, json.loads(out.stdout)["energy_uj"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=1500)
    ap.add_argument("--repeat", type=int, default=3, help="designs timed per mode (seeds 0..N-1)")
    ap.add_argument("--no-cli", action="store_true", help="skip the command-line timings")
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="another coopt checkout (e.g. `git worktree add /tmp/base <commit>`) timed the same way")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    seeds = list(range(args.repeat))
    if args._child:
        _child(args.budget, seeds)
        return
    from coopt.model import jit

    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.baseline_tree:
        base, e_base = in_process(args.budget, seeds, "", args.baseline_tree.resolve())
    if jit.AVAILABLE:
        fast, e_fast = in_process(args.budget, seeds, "1")
    ref, e_ref = in_process(args.budget, seeds, "0")
    print(f"one ResNet-50 design at budget {args.budget}, one core, CPU s per design (seeds {seeds}):")
    print(f"  reference paths (COOPT_JIT=0): median {statistics.median(ref):.3f}  min {min(ref):.3f}")
    if jit.AVAILABLE:
        print(f"  compiled kernels:              median {statistics.median(fast):.3f}  min {min(fast):.3f}  "
              f"({statistics.median(ref) / statistics.median(fast):.2f}x)")
        same = all(abs(a - b) <= 1e-9 * abs(b) for a, b in zip(e_fast, e_ref))
        print(f"  energies (uJ) {', '.join(f'{e:,.1f}' for e in e_fast)}: same on both paths: {same}")
        print(f"  => about {60 / statistics.median(fast):.0f} designs per minute per core")
        if args.baseline_tree:
            same = all(abs(a - b) <= 1e-9 * abs(b) for a, b in zip(e_fast, e_base))
            print(f"  baseline tree {args.baseline_tree}: median {statistics.median(base):.3f}  min {min(base):.3f}; "
                  f"compiled here {statistics.median(base) / statistics.median(fast):.2f}x faster; "
                  f"same energies: {same}")
    if args.no_cli:
        return
    trees = [("this checkout", ROOT)] + ([("baseline", args.baseline_tree.resolve())] if args.baseline_tree else [])
    for label, tree in trees:
        w1, c1, e1 = cli(args.budget, 1, tree)
        print(f"[{label}] coopt network --budget {args.budget} --workers 1: {w1:.2f} s wall, {c1:.2f} s CPU "
              f"(process start included), {e1:,.1f} uJ")
        t1, _, _ = cli(6000, 1, tree)
        t2, c2, f2 = cli(6000, 2, tree)
        print(f"[{label}] coopt network --budget 6000: --workers 1 {t1:.2f} s, --workers 2 {t2:.2f} s wall "
              f"({t1 / t2:.2f}x), {c2:.2f} s CPU; {f2:,.1f} uJ")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
