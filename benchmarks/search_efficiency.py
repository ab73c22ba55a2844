"""Search efficiency on search_spaces/edge.yaml: hypervolume against a reference front, per trial count.

The edge space (~350,000 designs) cannot be enumerated, so the reference front
is the Pareto front of every distinct design this benchmark has evaluated (the
sampler runs' designs plus ``--extra`` uniformly random ones).  Each sampler
run is an Optuna study answered through ask/tell with ``set_constraint``
exactly as the study workers do; after 50, 100, 200 trials its feasible
front's hypervolume is divided by the reference front's.

Design evaluations (the whole ResNet-50 mapped by the native mapper) are
cached on disk, one JSON file per (design, mapper budget), so that the
reference, every sampler run and later re-runs share them; ``--pack`` folds the
cache into one JSON-lines file (the data kept under ``benchmarks/data/``), which
is read back as cache.  Everything is seeded: a sampler seed gives the same
designs, a design the same numbers.

``tpe-mf`` is the multi-fidelity scheme of ``coopt search --screen-budget``
(coopt/study/screening.py) on top of TPE: every design is first mapped with a
cheap mapper budget (``--cheap-budget``); only a design whose cheap result,
made ``--mf-slack`` better in every objective, is not dominated by the
full-budget front found so far gets the full budget; the sampler is told the
full result when there is one, else the cheap one.  Its cost is counted in
full-budget design equivalents.

    python benchmarks/search_efficiency.py [--samplers tpe,nsga2,random,tpe-mf] [--seeds 0-4]
        [--trials 200] [--extra 0] [--workers 2] [--sampler-options JSON] [--cache DIR] [--pack FILE]
        [--report FILE]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import hashlib
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from coopt.study.front import hypervolume, nondominated
from coopt.study.samplers import make_sampler
from coopt.study.screening import could_enter_front
from coopt.study.space import load_space
from coopt.study.trial import evaluate_design

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "edge.yaml"
DATA = ROOT / "benchmarks" / "data"
CHECKPOINTS = (50, 100, 200)
# The stored evaluations (benchmarks/data, 2026-11-30) were made with the built-in energy tables and the
# cache is not keyed by estimator, so this benchmark always uses them (worker processes inherit it).
os.environ["COOPT_ENERGY"] = "builtin"


# ----------------------------------------------------------------------------- the design cache

def design_key(params: dict, budget: int) -> str:
    return json.dumps({"params": params, "budget": budget}, sort_keys=True)


class Cache:
    """One JSON file per evaluated (design, budget) under ``root``, plus packed JSON-lines files."""

    def __init__(self, root: Path, packed: list[Path]):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.mem: dict[str, dict] = {}
        for path in packed:
            if path.exists():
                for line in path.read_text().splitlines():
                    if line.strip():
                        e = json.loads(line)
                        self.mem[design_key(e["params"], e["budget"])] = e

    def _file(self, key: str) -> Path:
        return self.root / (hashlib.sha1(key.encode()).hexdigest() + ".json")

    def get(self, key: str) -> dict | None:
        if key in self.mem:
            return self.mem[key]
        f = self._file(key)
        if f.exists():
            self.mem[key] = json.loads(f.read_text())
            return self.mem[key]
        return None

    def put(self, key: str, entry: dict) -> None:
        self.mem[key] = entry
        f = self._file(key)
        tmp = f.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry, sort_keys=True))
        tmp.replace(f)

    def all_entries(self) -> list[dict]:
        for f in self.root.glob("*.json"):
            e = json.loads(f.read_text())
            self.mem.setdefault(design_key(e["params"], e["budget"]), e)
        return list(self.mem.values())


def evaluate(cache: Cache, sp, params: dict, budget: int) -> dict:
    key = design_key(params, budget)
    hit = cache.get(key)
    if hit is not None:
        return hit
    t0 = time.process_time()
    options = dataclasses.replace(sp.mapper, budget=budget)
    rec = evaluate_design(0, params, sp.template.name, sp.template_params(params), sp.dataflow, sp.network,
                          options, sp.budgets, sp.objectives)
    entry = {"params": params, "budget": budget, "objectives": rec.objectives, "feasible": rec.feasible,
             "violations": rec.violations,
             "metrics": {k: rec.metrics[k] for k in ("energy_uj", "throughput_ips", "area_mm2", "power_mw",
                                                     "onchip_kib")},
             "cpu_s": round(time.process_time() - t0, 3)}
    cache.put(key, entry)
    return entry


# ----------------------------------------------------------------------------- one sampler run

def run_study(sampler: str, seed: int, trials: int, cache_dir: str, packed: list[str], budget: int,
              cheap_budget: int, slack: float, runs_dir: str, options: dict | None = None) -> dict:
    """One seeded study of ``trials`` trials; writes its trace (design per trial) as it goes.
    ``options`` override the space's ``sampler_options`` for this sampler."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sp = load_space(SPACE)
    if options:
        name = sampler.removesuffix("-mf")
        sp.sampler_options = {**sp.sampler_options, name: {**(sp.sampler_options.get(name) or {}), **options}}
    cache = Cache(Path(cache_dir), [Path(p) for p in packed])
    mf = sampler.endswith("-mf")
    study = optuna.create_study(directions=[d for _, d in sp.objectives],
                                sampler=make_sampler(sampler.removesuffix("-mf"), sp, seed, trials))
    directions = [d for _, d in sp.objectives]
    trace = {"sampler": sampler, "seed": seed, "trials": trials, "budget": budget, "designs": [],
             "full": [], "cost": 0.0}
    out = Path(runs_dir) / f"{sampler}-seed{seed}-t{trials}.json"
    front_pts: list[list[float]] = []
    for _ in range(trials):
        t = study.ask()
        params = sp.suggest(t)
        if mf:
            cheap = evaluate(cache, sp, params, cheap_budget)
            trace["cost"] += cheap_budget / budget
            if could_enter_front(cheap["objectives"], cheap["violations"], front_pts, directions, slack):
                rec = evaluate(cache, sp, params, budget)
                trace["cost"] += 1.0
                full = True
            else:
                rec, full = cheap, False
        else:
            rec = evaluate(cache, sp, params, budget)
            trace["cost"] += 1.0
            full = True
        if full and rec["feasible"]:
            front_pts.append(rec["objectives"])
        for k, v in sorted(rec["violations"].items()):
            t.set_constraint(k, v)
        study.tell(t, rec["objectives"])
        trace["designs"].append(params)
        trace["full"].append(full)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(trace))
        tmp.replace(out)                # atomic: a concurrent report never reads half a file
    return trace


def evaluate_extra(index_seed: int, n: int, cache_dir: str, packed: list[str], budget: int) -> int:
    """``n`` uniformly random designs (seeded) for the reference front."""
    sp = load_space(SPACE)
    cache = Cache(Path(cache_dir), [Path(p) for p in packed])
    rng = random.Random(index_seed)
    for _ in range(n):
        params = {p.name: rng.choice(p.values()) for p in sp.params}
        evaluate(cache, sp, params, budget)
    return n


# ----------------------------------------------------------------------------- report

def front_hv(entries: list[dict], directions, reference) -> float:
    feas = [e["objectives"] for e in entries if e["feasible"]]
    if not feas:
        return 0.0
    pts = np.array(feas)
    return hypervolume(pts[nondominated(pts, directions)], directions, reference)


def report(cache: Cache, runs_dir: Path, budget: int, checkpoints=CHECKPOINTS) -> dict:
    sp = load_space(SPACE)
    directions = [d for _, d in sp.objectives]
    full = [e for e in cache.all_entries() if e["budget"] == budget]
    ref_hv = front_hv(full, directions, sp.reference)
    by_key = {design_key(e["params"], budget): e for e in full}
    feasible = [e for e in full if e["feasible"]]
    feas = np.array([e["objectives"] for e in feasible])
    mask = nondominated(feas, directions) if len(feas) else np.zeros(0, bool)
    ref_front = [e for e, k in zip(feasible, mask) if k]
    rows: dict[str, dict[int, list]] = {}
    costs: dict[str, dict[int, list]] = {}
    for f in sorted(runs_dir.glob("*.json")):
        tr = json.loads(f.read_text())
        for cp in checkpoints:
            if cp > len(tr["designs"]):
                continue
            seen = [by_key[design_key(p, budget)] for p, full_ in zip(tr["designs"][:cp], tr["full"][:cp])
                    if full_ and design_key(p, budget) in by_key]
            rows.setdefault(tr["sampler"], {}).setdefault(cp, []).append(front_hv(seen, directions, sp.reference) / ref_hv)
            costs.setdefault(tr["sampler"], {}).setdefault(cp, []).append(sum(tr["full"][:cp]))
    out = {"space": str(SPACE.relative_to(ROOT)), "budget": budget, "distinct_designs": len(full),
           "feasible_designs": int(len(feas)), "reference_hypervolume": ref_hv,
           "reference_front": [{"params": e["params"], "objectives": e["objectives"]}
                               for e in sorted(ref_front, key=lambda e: e["objectives"][0])],
           "hv_fraction": {s: {str(cp): v for cp, v in d.items()} for s, d in rows.items()},
           "full_evaluations": {s: {str(cp): v for cp, v in d.items()} for s, d in costs.items()}}
    return out


def print_report(r: dict, checkpoints=CHECKPOINTS) -> None:
    print(f"reference: {r['distinct_designs']} distinct designs at mapper budget {r['budget']} "
          f"({r['feasible_designs']} feasible), front of {len(r['reference_front'])} designs, "
          f"hypervolume {r['reference_hypervolume']:.6g}")
    print(f"{'sampler':10s} " + " ".join(f"{'@' + str(cp) + ' mean (min-max, n)':>28s}" for cp in checkpoints))
    for s, d in sorted(r["hv_fraction"].items()):
        cells = []
        for cp in checkpoints:
            v = d.get(str(cp))
            cells.append(f"{np.mean(v):.3f} ({np.min(v):.3f}-{np.max(v):.3f}, {len(v)})" if v else "-")
        print(f"{s:10s} " + " ".join(f"{c:>28s}" for c in cells))
    for s, d in sorted(r["full_evaluations"].items()):
        if s.endswith("-mf"):
            print(f"{s}: full-budget evaluations per run " +
                  ", ".join(f"@{cp}: {np.mean(v):.0f}" for cp, v in ((int(k), v) for k, v in d.items())))


def pack(cache: Cache, path: Path) -> int:
    entries = sorted(cache.all_entries(), key=lambda e: design_key(e["params"], e["budget"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
    return len(entries)


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samplers", default="tpe,nsga2,random")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--extra", type=int, default=0, help="uniformly random designs added to the reference")
    ap.add_argument("--budget", type=int, default=None, help="mapper budget (default: the space's)")
    ap.add_argument("--cheap-budget", type=int, default=300)
    ap.add_argument("--mf-slack", type=float, default=0.05)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sampler-options", default="{}", help='JSON, e.g. {"local_fraction": 0.5} (use its own --runs)')
    ap.add_argument("--cache", default=str(DATA / "search_efficiency_cache"))
    ap.add_argument("--packed", default=str(DATA / "edge_designs.jsonl"),
                    help="packed evaluations read as cache (and written by --pack)")
    ap.add_argument("--runs", default=str(DATA / "search_efficiency_runs"))
    ap.add_argument("--pack", action="store_true", help="fold the cache into --packed and stop")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--checkpoints", default="50,100,200", help="trial counts to report")
    ap.add_argument("--report", default=str(DATA / "search_efficiency.json"))
    args = ap.parse_args()
    sp = load_space(SPACE)
    budget = args.budget or sp.mapper.budget
    cache = Cache(Path(args.cache), [Path(args.packed)])
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    if args.pack:
        print(f"packed {pack(cache, Path(args.packed))} evaluations into {args.packed}")
        return
    if not args.report_only:
        t0 = time.perf_counter()
        jobs = []
        with cf.ProcessPoolExecutor(max_workers=args.workers) as pool:
            for seed in _seeds(args.seeds):              # seed-major: partial runs cover every sampler
                for s in args.samplers.split(","):
                    jobs.append(pool.submit(run_study, s, seed, args.trials, args.cache, [args.packed], budget,
                                            args.cheap_budget, args.mf_slack, str(runs),
                                            json.loads(args.sampler_options)))
            chunk = 50
            for i in range(0, args.extra, chunk):
                jobs.append(pool.submit(evaluate_extra, 1000 + i, min(chunk, args.extra - i), args.cache,
                                        [args.packed], budget))
            for fut in cf.as_completed(jobs):
                r = fut.result()
                if isinstance(r, dict):
                    print(f"  {r['sampler']} seed {r['seed']}: {len(r['designs'])} trials "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    cps = tuple(int(x) for x in args.checkpoints.split(","))
    r = report(cache, runs, budget, cps)
    Path(args.report).write_text(json.dumps(r, indent=1))
    print_report(r, cps)


if __name__ == "__main__":
    main()
