"""Study throughput on search_spaces/edge.yaml: trials per minute with 1 and 2 Ray workers.

Each trial maps all of ResNet-50 on one design (the space's mapper budget).
Runs a fresh study per worker count (random sampler, same seed) in a
temporary folder and prints trials/minute, both over the whole run (Ray start,
MLflow, everything) and in steady state (first to last finished trial).

    python benchmarks/study_throughput.py [--trials 8]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from coopt.study.runner import StudyConfig, run_study

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "edge.yaml"


def measure(workers: int, trials: int, root: str) -> tuple[float, float]:
    stamps = []
    cfg = StudyConfig(space_path=str(SPACE), study=f"throughput-{workers}", trials=trials, workers=workers,
                      sampler="random", seed=0, root=root,
                      tracking_uri=f"sqlite:///{root}/mlflow.db")
    t0 = time.perf_counter()
    run_study(cfg, on_progress=lambda p: stamps.append((p.done, time.perf_counter())))
    total = time.perf_counter() - t0
    done = [t for n, t in stamps if n > 0]
    steady = (len(done) - 1) / (done[-1] - done[0]) * 60 if len(done) > 1 else float("nan")
    return trials / total * 60, steady


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        os.chdir(root)
        res = {w: measure(w, args.trials, root) for w in (1, 2)}
    for w, (overall, steady) in res.items():
        print(f"workers={w}: {overall:.1f} trials/min overall, {steady:.1f} trials/min steady state")
    print(f"speed-up 2 vs 1 worker: {res[2][0] / res[1][0]:.2f}x overall, {res[2][1] / res[1][1]:.2f}x steady")


if __name__ == "__main__":
    main()
