"""Bring-your-own-network costs: reading ONNX models, and `coopt network` on one vs the built-in.

1. Parsing ResNet-50 v1.5 from ONNX (built with onnx.helper, weights as external data that is
   never opened): wall seconds in process, best and median of --repeat (goal: <= 1 s).
2. A 500 MB model (ten fully connected layers, 125M parameters stored inline in the file):
   parse wall time and the reading process's peak RSS, in a fresh process (goal: <= 2 s, <= 300 MB).
3. ``coopt network`` (the defaults: eyeriss_like, --budget 6000, --workers 2) on the ONNX ResNet-50
   vs ``--network resnet50``, alternating, --repeat times each: wall and CPU seconds (the CPU time
   is the steadier figure on a shared machine), median ratios (goal: within 10 %).  Same energies
   asserted.

    python benchmarks/onnx_network.py [--repeat 5] [--budget 6000] [--skip-big]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))          # the test suite's ONNX builders


def parse_times(path: str, repeat: int) -> list[float]:
    from coopt.workload import get_network
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        get_network(path)
        out.append(time.perf_counter() - t0)
    return out


def big_model(folder: Path) -> str:
    """An MLP of ten 2048 x 6104 fully connected layers with inline weights: a 500 MB file."""
    import onnx_models as om

    g = om.Graph("big", {"x": [1, 2048]}, weights_inline=True)
    x = "x"
    for i in range(10):
        x = g.op("Gemm", [x, g.weight(f"fc{i}.weight", [6104 if i % 2 == 0 else 2048, 2048 if i % 2 == 0 else 6104])],
                 f"fc{i}", transB=1)
    path = folder / "big.onnx"
    om.save(g.model(x), path)
    return str(path)


# Peak RSS from /proc's VmHWM: getrusage's ru_maxrss would include the parent's pages at fork time.
_RSS = """
import sys, time
t0 = time.perf_counter()
from coopt.workload import get_network
net = get_network(sys.argv[1])
dt = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(dt, int(hwm) / 1024, net.macs)
"""


def fresh_parse(path: str) -> tuple[float, float, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _RSS, path], env=env, capture_output=True, text=True, check=True)
    s, rss, macs = out.stdout.split()
    return float(s), float(rss), int(macs)


def cli_time(network: str, budget: int) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (the command and its worker processes) and the energy."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "coopt.cli", "network", "--network", network, "--budget",
                          str(budget), "--json"], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, json.loads(out.stdout)["energy_uj"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--budget", type=int, default=6000)
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args()
    import onnx_models as om

    with tempfile.TemporaryDirectory() as tmp:
        path = om.save(om.resnet50(), Path(tmp) / "resnet50.onnx")
        times = parse_times(path, args.repeat)
        s, rss, _ = fresh_parse(path)
        print(f"parse ResNet-50 ONNX in process: best {min(times):.3f} s, median {statistics.median(times):.3f} s; "
              f"in a fresh process with its imports (coopt, onnx): {s:.3f} s, peak RSS {rss:,.0f} MB")
        if not args.skip_big:
            big = big_model(Path(tmp))
            size = Path(big).stat().st_size / 1e6
            s, rss, _ = fresh_parse(big)
            print(f"parse {size:,.0f} MB model in a fresh process: {s:.2f} s, peak RSS {rss:,.0f} MB "
                  "(imports included)")
        cli_time("resnet50", args.budget)                         # warm the kernel and energy caches
        builtin, onnx_ = [], []
        for _ in range(args.repeat):
            *t, e_b = cli_time("resnet50", args.budget)
            builtin.append(t)
            *t, e_o = cli_time(path, args.budget)
            onnx_.append(t)
            assert e_b == e_o, (e_b, e_o)
        for i, what in enumerate(("wall", "CPU")):
            b, o = statistics.median(t[i] for t in builtin), statistics.median(t[i] for t in onnx_)
            print(f"coopt network --budget {args.budget}, {what} time: built-in resnet50 median {b:.2f} s, "
                  f"ONNX median {o:.2f} s, ratio {o / b:.3f}")
        print(f"same energy: {e_b:,.1f} uJ")


if __name__ == "__main__":
    main()
