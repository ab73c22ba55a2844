"""Find the best mapping of one layer: random sampling, then local search, all batched.

``hybrid`` (default): draw random valid mappings, keep an elite set, and
climb from it with batches of neighbours until the evaluation budget is spent
or nothing improves for a while.  ``random``: sampling only (Timeloop's
random-pruned search without its victory condition).  ``exhaustive``: every
mapping of a small space.  All seeded; the model is the vectorised native one.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from coopt.arch.spec import Architecture
from coopt.energy.tables import EnergyTables
from coopt.errors import CooptError
from coopt.mapper.constraints import MapConstraints
from coopt.mapper.space import MapSpace
from coopt.model import jit
from coopt.model.batch import MappingBatch
from coopt.model.cost import ArchCosts
from coopt.model.evaluate import MappingEval, evaluate
from coopt.model.fused import evaluate_batch
from coopt.model.mapping import Mapping
from coopt.workload.problem import Problem

METRICS = ("energy", "delay", "edp")


def parse_metric(metric) -> tuple[str, ...]:
    """'edp' | 'energy' | 'delay' | a list such as ['delay', 'energy'] (lexicographic)."""
    items = [metric] if isinstance(metric, str) else list(metric or [])
    if not items:
        items = ["edp"]
    out = []
    for m in items:
        m = str(m).strip().lower()
        if m in ("cycles", "latency"):
            m = "delay"
        if m not in METRICS:
            raise CooptError(f"unknown metric {m!r}", key="metric", expected=f"one of {list(METRICS)} or a list")
        out.append(m)
    return tuple(out)


def _order(energy, cycles, metric: tuple[str, ...]) -> np.ndarray:
    cols = {"energy": energy, "delay": cycles, "edp": energy * cycles}
    keys = [cols[m] for m in metric] + [energy, cycles]
    return np.lexsort(tuple(reversed(keys)))


@dataclass
class SearchStats:
    sampled: int = 0          # mappings drawn or proposed
    pruned: int = 0           # rejected before evaluation (fan-out, caps, capacity)
    duplicates: int = 0
    evaluated: int = 0        # model evaluations
    valid: int = 0            # evaluated and valid
    seconds: float = 0.0


@dataclass
class MapperResult:
    mapping: Mapping | None
    eval: MappingEval | None
    metric: tuple[str, ...]
    stats: SearchStats = field(default_factory=SearchStats)
    reason: str = ""

    @property
    def found(self) -> bool:
        return self.mapping is not None


class _Evaluator:
    def __init__(self, space: MapSpace, tables: EnergyTables):
        self.space = space
        self.costs = ArchCosts(space.arch, tables)

    def __call__(self, mb: MappingBatch):
        return evaluate_batch(self.space.pa, self.space.arch, self.costs, mb)


class _Pool:
    """The best distinct mappings seen so far."""

    def __init__(self, size: int, metric):
        self.size, self.metric = size, metric
        self.mb: MappingBatch | None = None
        self.energy = np.zeros(0)
        self.cycles = np.zeros(0)

    def add(self, mb, energy, cycles):
        if not len(mb):
            return False
        best_before = self.best_key()
        if self.mb is None:
            allmb, e, c = mb, energy, cycles
        else:
            allmb = MappingBatch.concat([self.mb, mb])
            e, c = np.concatenate([self.energy, energy]), np.concatenate([self.cycles, cycles])
        idx = _order(e, c, self.metric)[: self.size]
        self.mb, self.energy, self.cycles = allmb.take(idx), e[idx], c[idx]
        return self.best_key() != best_before

    def best_key(self):
        if self.mb is None or not len(self.energy):
            return None
        return (float(self.energy[0]), float(self.cycles[0]))


@dataclass
class _Run:
    """What a strategy drives: the mapspace, the seeded generator, the budget, and ``run(batch)``
    (dedupe, prefilter, evaluate, keep the best; True when the best improved)."""
    space: MapSpace
    rng: np.random.Generator
    budget: int
    run: Callable[[MappingBatch], bool]
    stats: SearchStats
    pool: _Pool
    out_of_time: Callable[[], bool]


def _exhaustive(r: _Run) -> None:
    for chunk in enumerate_space(r.space, limit=max(r.budget, 1)):
        r.run(chunk)


def _sample_until(r: _Run, target: int) -> None:
    attempts = 0
    while r.stats.evaluated < target and attempts < 40 and not r.out_of_time():
        r.run(r.space.sample(min(2048, max(256, target - r.stats.evaluated)), r.rng))
        attempts += 1


def _random(r: _Run) -> None:
    _sample_until(r, r.budget)


def _hybrid(r: _Run) -> None:
    if space_size_hint(r.space) <= r.budget:
        # a space smaller than the budget is searched completely
        small = list(enumerate_space(r.space, limit=r.budget + 1))
        if sum(len(c) for c in small) <= r.budget:
            for chunk in small:
                r.run(chunk)
            return
    _sample_until(r, max(256, r.budget // 3))
    stale = 0
    while r.stats.evaluated < r.budget and stale < 6 and r.pool.mb is not None and not r.out_of_time():
        parents = r.pool.mb.take(np.arange(min(16, len(r.pool.mb))))
        per = max(8, min(256, (r.budget - r.stats.evaluated) // max(1, len(parents)) // 2))
        improved = r.run(r.space.neighbours(parents, r.rng, per))
        stale = 0 if improved else stale + 1


# The implementations of the strategies named in coopt.mapper.options.STRATEGIES (same keys; tested).
STRATEGY_RUNNERS: dict[str, Callable[[_Run], None]] = {"hybrid": _hybrid, "random": _random,
                                                       "exhaustive": _exhaustive}


def search(problem: Problem, arch: Architecture, tables: EnergyTables, constraints: MapConstraints, *,
           metric="edp", budget: int = 6000, seed: int = 0, strategy: str = "hybrid",
           timeout: float | None = None) -> MapperResult:
    """Best mapping of ``problem`` on ``arch`` by ``metric`` within ``budget`` model evaluations."""
    metric = parse_metric(metric)
    t0 = time.perf_counter()
    jit.request(budget)
    stats = SearchStats()
    try:
        space = MapSpace(problem, arch, constraints)
    except CooptError as e:
        return MapperResult(None, None, metric, stats, reason=e.message)
    sparse = getattr(tables, "sparse", None)            # coopt.model.sparse.batch.SparseTables
    if sparse is not None and sparse.formats:
        space.leave_capacity_to_the_model({level for level, _ in sparse.formats})
    rng = np.random.default_rng(seed)
    ev = _Evaluator(space, tables)
    pool = _Pool(48, metric)
    seen: set[bytes] = set()
    reasons = {"fanout": 0, "capacity": 0, "model": 0}

    def run(mb: MappingBatch) -> bool:
        stats.sampled += len(mb)
        keys = space.keys(mb)
        fresh = [i for i, k in enumerate(keys) if k not in seen and not seen.add(k)]    # first of each key
        stats.duplicates += len(mb) - len(fresh)
        if not fresh:
            return False
        fresh = np.array(fresh)
        pf = space.prefilter(mb.take(fresh))
        reasons["fanout"] += int((~pf.fanout).sum())
        reasons["capacity"] += int((pf.fanout & ~pf.capacity).sum())
        stats.pruned += int((~pf.ok).sum())
        if not pf.ok.any():
            return False
        mb = mb.take(fresh[pf.ok])
        energy, cycles, valid = ev(mb)
        stats.evaluated += len(mb)
        stats.valid += int(valid.sum())
        reasons["model"] += int((~valid).sum())
        keep = np.nonzero(valid)[0]
        return pool.add(mb.take(keep), energy[keep], cycles[keep])

    def out_of_time():
        return timeout is not None and time.perf_counter() - t0 > timeout

    runner = STRATEGY_RUNNERS.get(strategy)
    if runner is None:
        raise CooptError(f"unknown search strategy {strategy!r}", key="strategy",
                         expected=" or ".join(STRATEGY_RUNNERS))
    runner(_Run(space, rng, budget, run, stats, pool, out_of_time))
    stats.seconds = time.perf_counter() - t0
    if pool.mb is None or not len(pool.energy):
        why = max(reasons, key=reasons.get) if stats.sampled else "none"
        text = {"fanout": "no mapping fits the fan-outs and factor constraints",
                "capacity": "every candidate tile overflows a buffer (is a scratchpad too small for any tile?)",
                "model": "every evaluated mapping was invalid",
                "none": "the mapspace is empty"}[why]
        return MapperResult(None, None, metric, stats,
                            reason=f"no valid mapping: {text} ({stats.sampled} tried, {stats.pruned} pruned)")
    best = pool.mb.mapping(0, [l.name for l in arch.storage], problem.dims, space.ds_names)
    result = evaluate(problem, arch, tables, best, arch_costs=ev.costs)
    return MapperResult(best, result, metric, stats)


# ----------------------------------------------------------------------------- exhaustive

def _factorizations(n: int, k: int):
    """Ordered ways to write n as a product of k factors."""
    if k == 1:
        yield (n,)
        return
    for d in range(1, n + 1):
        if n % d == 0:
            for rest in _factorizations(n // d, k - 1):
                yield (d,) + rest


@lru_cache(maxsize=4096)
def _count_factorizations(n: int, k: int) -> int:
    """How many ordered ways to write n as a product of k factors (= len(_factorizations))."""
    if k == 1:
        return 1
    return sum(_count_factorizations(n // d, k - 1) for d in range(1, n + 1) if n % d == 0)


def space_size_hint(space: MapSpace) -> int:
    total = 1
    for d in range(space.D):
        rest = int(np.prod(space.primes[d])) if space.primes[d] else 1
        total *= _count_factorizations(rest, max(1, len(space.free_slots[d])))
    return total


def enumerate_space(space: MapSpace, limit: int, chunk: int = 4096):
    """Every tiling x loop order (of non-trivial loops) x split x bypass choice, in chunks."""
    D, L, P = space.D, space.L, space.P
    per_dim = []
    for d in range(D):
        rest = int(np.prod(space.primes[d])) if space.primes[d] else 1
        slots = space.free_slots[d] or [(L - 1, 0)]
        per_dim.append([(slots, f) for f in _factorizations(rest, len(slots))])
    free_keep = [(li, p) for li in range(L) for p in range(P) if space.keep_fixed[li, p] == 0]
    rows = []
    count = 0
    for combo in itertools.product(*per_dim):
        tf = np.where(space.fix_t > 0, space.fix_t, 1).copy()
        sf = np.where(space.fix_s > 0, space.fix_s, 1).copy()
        for d, (slots, facs) in enumerate(combo):
            for (li, sp), f in zip(slots, facs):
                (sf if sp else tf)[li, d] *= f
        for tperm in _level_orders(space, tf, temporal=True):
            for sperm, split in _spatial_orders(space, sf):
                for bits in itertools.product([True, False], repeat=len(free_keep)):
                    keep = space.keep_fixed == 1
                    for (li, p), b in zip(free_keep, bits):
                        keep[li, p] = b
                    rows.append((tf, tperm, sf, sperm, split, keep))
                    count += 1
                    if len(rows) == chunk:
                        yield _stack(rows)
                        rows = []
                    if count >= limit:
                        if rows:
                            yield _stack(rows)
                        return
    if rows:
        yield _stack(rows)


def _stack(rows):
    return MappingBatch(*(np.array([r[i] for r in rows]) for i in range(6)))


def _level_orders(space: MapSpace, tf, temporal: bool):
    """All distinct orders of the non-trivial loops of every level (constraints honoured)."""
    per_level = []
    for li in range(space.L):
        lc = space.cons.levels[li]
        nontriv = [d for d in range(space.D) if tf[li, d] > 1]
        fixed_pre = [d for d in lc.t_prefix]
        fixed_suf = [d for d in lc.t_suffix]
        free = [d for d in nontriv if d not in fixed_pre and d not in fixed_suf]
        opts = []
        for order in itertools.permutations(free):
            full = fixed_pre + list(order) + fixed_suf
            full += [d for d in range(space.D) if d not in full]
            opts.append(full)
        per_level.append(opts)
    for combo in itertools.product(*per_level):
        yield np.array(combo)


def _spatial_orders(space: MapSpace, sf):
    per_level = []
    for li in range(space.L):
        lc = space.cons.levels[li]
        if lc.s_order is not None:
            per_level.append([(lc.s_order, lc.split if lc.split is not None else space.D)])
            continue
        nontriv = [d for d in range(space.D) if sf[li, d] > 1]
        opts = []
        for order in itertools.permutations(nontriv):
            for split in range(len(order) + 1):
                if lc.split is not None and split != lc.split:
                    continue
                full = list(order) + [d for d in range(space.D) if d not in order]
                opts.append((full, split))
        per_level.append(opts or [(list(range(space.D)), space.D)])
    for combo in itertools.product(*per_level):
        yield np.array([c[0] for c in combo]), np.array([c[1] for c in combo])
