"""Whole ResNet-50 on the Eyeriss-like template (row stationary): mapping wall time.

Maps all 24 unique layers with 1 worker and with 2 workers in the same run and
prints both wall times, the speed-up and the network totals.  Goal: <= 10 s on
this 2-core machine.

    python benchmarks/network_time.py [--budget 6000]
"""
from __future__ import annotations

import argparse
import time

from coopt.backends.base import MapperOptions
from coopt.design import design_from_template
from coopt.backends.network import map_network
from coopt.workload.networks import resnet50


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    design = design_from_template("eyeriss_like")
    net = resnet50()
    times = {}
    for workers in (1, 2):
        # distinct seeds keep the per-process result cache from answering the second run
        opts = MapperOptions(metric=("edp",), budget=args.budget, seed=args.seed + workers)
        t0 = time.perf_counter()
        result = map_network(net, design.arch, design.tables, design.targets, opts, workers=workers)
        times[workers] = time.perf_counter() - t0
        print(f"workers={workers}: {times[workers]:.2f} s  energy {result.energy_uj:,.1f} uJ  "
              f"latency {result.latency_cycles:,} cycles  feasible={result.feasible}")
    print(f"ResNet-50 on {design.label}: {times[2]:.2f} s with 2 workers "
          f"({times[1] / times[2]:.2f}x over 1 worker)")


if __name__ == "__main__":
    main()
