"""coopt's energy/area estimates vs real Accelergy 0.4 on tests/reference_data/accelergy, and their cost.

Per design, the worst relative error of a dynamic action energy, of a
leakage and of an area, for ``--energy accelergy`` (the default: the design's
own components.yaml expanded to CACTI/Library/NeuroSim primitives) and for
``--energy builtin`` (coopt's closed-form tables).  Then the cost of one
design's tables: cold (empty estimate cache: CACTI/NeuroSim run), warm from
the disk cache (a fresh process, as a new study worker) and warm in-process
(a worker's next trial).

    python benchmarks/energy_accelergy.py
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coopt.energy import primitives
from coopt.energy.accelergy import estimate_arch
from coopt.energy.accelergy_io import read_art, read_ert
from coopt.energy.estimate import estimate
from coopt.energy.report import load_arch

ROOT = Path(__file__).resolve().parents[1] / "tests" / "reference_data" / "accelergy"


def _errors(tables, ert, art):
    worst = {"dynamic": (0.0, ""), "leak": (0.0, ""), "area": (0.0, "")}
    for comp, actions in ert.items():
        for action, ref in actions.items():
            got = tables.ert.get(comp, {}).get(action, 0.0)
            r = abs(got - ref) / ref if ref else abs(got)
            kind = "leak" if action == "leak" else "dynamic"
            worst[kind] = max(worst[kind], (r, f"{comp}.{action} {got:.4g}/{ref:.4g}"))
        ref = art[comp]
        r = abs(tables.art.get(comp, 0.0) - ref) / ref if ref else 0.0
        worst["area"] = max(worst["area"], (r, f"{comp} {tables.art.get(comp, 0.0):.4g}/{ref:.4g}"))
    return worst


def main():
    designs = sorted(p for p in ROOT.iterdir() if p.is_dir())
    print("worst relative error against Accelergy 0.4 (entry: coopt/Accelergy)")
    for method in ("accelergy", "builtin"):
        overall = {"dynamic": (0.0, ""), "leak": (0.0, ""), "area": (0.0, "")}
        print(f"-- --energy {method}")
        for d in designs:
            arch = load_arch(d / "arch.yaml")
            tables = (estimate_arch(arch, [d / "components.yaml"]).tables if method == "accelergy"
                      else estimate(arch))
            w = _errors(tables, read_ert(d / "ERT.yaml"), read_art(d / "ART.yaml"))
            print(f"{d.name:24s} " + "  ".join(f"{k} {v[0]:8.2%} ({v[1]})" for k, v in w.items()))
            overall = {k: max(overall[k], (w[k][0], f"{d.name}: {w[k][1]}")) for k in w}
        print("worst: " + "; ".join(f"{k} {v[0]:.2%} ({v[1]})" for k, v in overall.items()))

    print("\ncost of one design's tables (eyeriss-like designs, the study's shape)")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["COOPT_ESTIMATES_DIR"] = tmp
        for d in designs:
            arch = load_arch(d / "arch.yaml")
            comps = [d / "components.yaml"]
            primitives.clear_memo()
            t0 = time.perf_counter()
            estimate_arch(arch, comps)
            cold = time.perf_counter() - t0
            misses = primitives.STATS["misses"]
            disk, memo = [], []
            for _ in range(20):
                primitives.clear_memo()
                t0 = time.perf_counter()
                estimate_arch(arch, comps)
                disk.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                estimate_arch(arch, comps)
                memo.append(time.perf_counter() - t0)
            print(f"{d.name:24s} cold {cold:6.2f} s ({misses} primitive estimates)   "
                  f"warm from disk {statistics.median(disk) * 1e3:6.2f} ms   "
                  f"warm in-process {statistics.median(memo) * 1e3:6.2f} ms")
        d = designs[0]
        code = ("import time; from coopt.energy.accelergy import estimate_arch; "
                "from coopt.energy.report import load_arch; a = load_arch({!r}); t = time.perf_counter(); "
                "estimate_arch(a, [{!r}]); print((time.perf_counter() - t) * 1e3)").format(
                    str(d / "arch.yaml"), str(d / "components.yaml"))
        first = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout) for _ in range(3)]
        print(f"first call in a fresh process (disk cache warm, {d.name}): {statistics.median(first):.1f} ms")

        print("\ncold CACTI cost per distinct SRAM (empty cache)")
        for width, depth, node in ((64, 2048, "22nm"), (64, 16384, "45nm"), (128, 8192, "65nm"),
                                   (64, 32768, "32nm"), (64, 4096, "28nm"), (64, 65536, "16nm")):
            primitives.clear_memo()
            t0 = time.perf_counter()
            e = primitives.estimate_primitive("SRAM", {"width": width, "depth": depth, "technology": node})
            print(f"  SRAM {depth:6d} x {width:3d} bit at {node}: {time.perf_counter() - t0:6.2f} s "
                  f"(read {e.actions['read']:.4g} pJ, {e.area:.4g} um^2)")


if __name__ == "__main__":
    main()
