"""Sampler quality on search_spaces/tiny.yaml against the true Pareto front.

Evaluates every design of the tiny space (128) to get the true feasible front
and its hypervolume, then runs nsga2, tpe and random with the same trial
budget (30 % of the space by default) and the same seeds, each trial answered
from that table through Optuna's ask/tell with set_constraint exactly as the
study workers do, and prints each sampler's hypervolume as a fraction of the
true front's.  Goal: >= 0.98 for the best sampler, every model-based sampler
above random.

    python benchmarks/search_quality.py [--fraction 0.3] [--seeds 5] [--workers 2]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import itertools
import time
from pathlib import Path

import numpy as np

from coopt.study.front import front_hypervolume
from coopt.study.samplers import make_sampler
from coopt.study.space import load_space
from coopt.study.trial import evaluate_design

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "tiny.yaml"


def _evaluate(args):
    i, params = args
    sp = load_space(SPACE)
    return evaluate_design(i, params, sp.template.name, sp.template_params(params), sp.dataflow, sp.network,
                           sp.mapper, sp.budgets, sp.objectives)


def enumerate_space(workers: int):
    sp = load_space(SPACE)
    names = [p.name for p in sp.params]
    points = [dict(zip(names, combo)) for combo in itertools.product(*(p.values() for p in sp.params))]
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        records = list(pool.map(_evaluate, list(enumerate(points)), chunksize=4))
    return sp, records


def run_sampler(sp, table, name: str, seed: int, trials: int):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=[d for _, d in sp.objectives],
                                sampler=make_sampler(name, sp, seed, trials))
    seen = []
    for _ in range(trials):
        t = study.ask()
        params = sp.suggest(t)
        rec = table[tuple(sorted(params.items()))]
        for k, v in sorted(rec.violations.items()):
            t.set_constraint(k, v)
        study.tell(t, rec.objectives)
        seen.append(rec)
    return front_hypervolume(seen, sp.objectives, sp.reference)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fraction", type=float, default=0.3)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    sp, records = enumerate_space(args.workers)
    table = {tuple(sorted(r.params.items())): r for r in records}
    true_hv = front_hypervolume(records, sp.objectives, sp.reference)
    trials = max(1, round(args.fraction * len(records)))
    print(f"tiny space: {len(records)} designs ({sum(r.feasible for r in records)} feasible) evaluated in "
          f"{time.perf_counter() - t0:.1f} s; true front hypervolume {true_hv:.6g}; {trials} trials per run")
    results = {}
    for name in ("nsga2", "tpe", "random"):
        fr = [run_sampler(sp, table, name, seed, trials) / true_hv for seed in range(args.seeds)]
        results[name] = fr
        print(f"{name:7s} hypervolume / true: mean {np.mean(fr):.4f}  min {np.min(fr):.4f}  max {np.max(fr):.4f}  "
              f"(seeds 0-{args.seeds - 1})")
    best = max(results, key=lambda k: np.mean(results[k]))
    above = all(np.mean(results[k]) > np.mean(results["random"]) for k in ("nsga2", "tpe"))
    print(f"best sampler: {best} ({np.mean(results[best]):.4f} of the true front); "
          f"model-based samplers above random: {'yes' if above else 'NO'}")


if __name__ == "__main__":
    main()
