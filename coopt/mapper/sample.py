"""Random valid mappings, drawn directly as a MappingBatch (fast, seeded).

Each prime factor of each dimension goes to a random (level, spatial or
temporal) slot; a spatial factor that would overflow the level's X or Y
fan-out is moved to the level's temporal loops instead.  Loop orders, the
X/Y split and (where allowed) bypass are drawn uniformly.  Used by the
random-pruned search, the tests and the throughput benchmark.
"""
from __future__ import annotations

import numpy as np

from coopt.arch.spec import Architecture
from coopt.model.batch import MappingBatch
from coopt.workload.problem import Problem


def prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def random_batch(problem: Problem, arch: Architecture, n: int, rng: np.random.Generator,
                 *, bypass: bool = True) -> MappingBatch:
    """``n`` random mappings; the outermost level always keeps every tensor."""
    D, L, P = len(problem.dims), len(arch.storage), len(problem.dataspaces)
    tf = np.ones((n, L, D), dtype=np.int64)
    sf = np.ones((n, L, D), dtype=np.int64)
    sperm = np.argsort(rng.random((n, L, D)), axis=2)
    tperm = np.argsort(rng.random((n, L, D)), axis=2)
    split = rng.integers(0, D + 1, size=(n, L))
    # axis of each dimension's spatial loop at each level: X if its position < split
    pos = np.argsort(sperm, axis=2)                        # position of dim d in sperm
    is_x = pos < split[:, :, None]
    fan = np.array([arch.fanout(li) for li in range(L)])   # [L,2]
    cap_x = np.broadcast_to(fan[None, :, 0], (n, L)).copy()
    cap_y = np.broadcast_to(fan[None, :, 1], (n, L)).copy()
    rows = np.arange(n)
    for d, dim in enumerate(problem.dims):
        primes = prime_factors(problem.bounds[dim])
        for p in rng.permutation(primes):
            slot = rng.integers(0, 2 * L, size=n)
            lvl, spatial = slot // 2, slot % 2 == 1
            x = is_x[rows, lvl, d]
            room = np.where(x, cap_x[rows, lvl], cap_y[rows, lvl]) >= p
            put_s = spatial & room
            sf[rows[put_s], lvl[put_s], d] *= p
            xs = put_s & x
            ys = put_s & ~x
            cap_x[rows[xs], lvl[xs]] //= p
            cap_y[rows[ys], lvl[ys]] //= p
            tf[rows[~put_s], lvl[~put_s], d] *= p
    keep = np.ones((n, L, P), dtype=bool)
    if bypass and L > 1:
        keep[:, :-1] = rng.random((n, L - 1, P)) < 0.6
    return MappingBatch(tf=tf, tperm=tperm, sf=sf, sperm=sperm, split=split, keep=keep)
