"""Timeloop's nest analysis in closed form, vectorised over a batch of mappings.

The literal walk (``coopt.model.walk``) visits iterations #0 and #1 of every
loop (Timeloop's uniform extrapolation).  Along that walk a child tile is
reloaded in full, reloaded minus a sliding-window overlap, or kept, by
Timeloop's "same stride" rule.  Working the rule through the binary-counter
order of the walk gives, for a child tile S under the temporal loops above
it (innermost first) with ``a`` the innermost loop that moves S:

    A = |S| * (1 + sum_{j>a, reset} w_j) + (|S| - overlap(T_a)) * (w_a + sum_{j>a, same} w_j)

where loop j's step moves S by ``T_j = t_j - sum_{i<j} t_i`` (its own stride
minus the strides of the loops it resets), ``w_j = (n_j - 1) * prod_{i>j} n_i``
counts its steps, and a step is *same* when ``T_j == T_a``, *zero* when
``T_j == 0`` (no transfer) and *reset* otherwise (a full reload).  Spatial
fan-out multiplies accesses by the number of distinct deltas the children
need (multicast groups).  Tests check this against the walk on random
mappings.

Link transfers between neighbouring PEs need the previous step's deltas:
where a step could coincide with a neighbour offset the step classes are
replayed with each step's link profile (``_links_tiles``).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from coopt.arch.spec import Architecture
from coopt.errors import SpecError
from coopt.model import jit
from coopt.model.batch import MappingBatch
from coopt.model.collapse import NestStats
from coopt.workload.problem import Problem

HAVE_NUMBA = jit.AVAILABLE     # tests set it False to force the numpy path

class ProblemArrays:
    """Projection of each data space as a [P, C, D] coefficient tensor (C = max coordinates)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        dims = problem.dims
        self.D = len(dims)
        self.P = len(problem.dataspaces)
        self.C = max(len(ds.projection) for ds in problem.dataspaces)
        coef = np.zeros((self.P, self.C, self.D), dtype=np.int64)
        self.valid_coord = np.zeros((self.P, self.C), dtype=bool)
        for p, ds in enumerate(problem.dataspaces):
            for c, coord in enumerate(ds.projection):
                self.valid_coord[p, c] = True
                for cname, d in coord:
                    coef[p, c, dims.index(d)] += problem.coef(cname)
        self.coef = coef
        self.relevant = (coef != 0).any(axis=1)                             # [P,D]
        self._coef_flat = np.ascontiguousarray(coef.reshape(self.P * self.C, self.D).T)   # [D, P*C]
        # each dimension feeds at most one coordinate of a data space (true for CONV shapes)
        self.single_coord = bool(((coef != 0).sum(axis=1) <= 1).all())
        self.read_write = np.array([ds.read_write for ds in problem.dataspaces])
        # Moves of a tile are integer vectors bounded by the tensor's extent; encode each
        # as one integer (balanced mixed radix) so that equal codes mean equal moves.
        full = np.einsum("pcd,d->pc", coef, np.array([problem.bounds[d] for d in dims]) - 1) + 1
        self.half = int(2 * full.max() + 1)
        self.radix = 2 * self.half + 1
        if self.radix ** self.C >= 2 ** 62:
            raise SpecError(f"layer {problem.name} is too large to model exactly (a data space spans "
                            f"{int(full.max()):,} along one coordinate)", key="problem.instance",
                            expected="smaller dimension bounds")
        weights = self.radix ** np.arange(self.C, dtype=np.int64)
        self.codes = np.einsum("pcd,c->pd", coef, weights)                 # [P,D]
        self._sparse = None

    @property
    def sparse(self):
        """The non-zero terms of ``coef`` (``kernel.sparse_coef``), for the compiled kernels."""
        if self._sparse is None:
            from coopt.model.kernel import sparse_coef
            self._sparse = sparse_coef(self.coef)
        return self._sparse

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Move codes [..., P] back to vectors [..., P, C]."""
        out = np.empty(codes.shape + (self.C,), dtype=np.int64)
        x = codes.astype(np.int64)
        for c in range(self.C):
            digit = (x + self.half) % self.radix - self.half
            out[..., c] = digit
            x = (x - digit) // self.radix
        return out

    def spans(self, extents: np.ndarray) -> np.ndarray:
        """Points per data-space coordinate of a dense box, extents [..., D] -> [..., P, C].

        An integer matrix product: exact, and numpy runs it without BLAS threads, which would
        fight the worker processes for the cores.
        """
        flat = (extents.reshape(-1, self.D) - 1) @ self._coef_flat
        return flat.reshape(extents.shape[:-1] + (self.P, self.C)) + 1

    def sizes(self, extents: np.ndarray) -> np.ndarray:
        """Dense-box tile sizes for extents [..., D] -> [..., P]."""
        return np.prod(self.spans(extents), axis=-1)


@lru_cache(maxsize=65536)
def _distinct_sums(terms: tuple[tuple[int, int], ...]) -> int:
    """How many distinct values sum_q i_q * step_q takes for 0 <= i_q < count_q."""
    values = {0}
    for step, count in terms:
        values = {v + i * step for v in values for i in range(count)}
    return len(values)


def nest_stats(pa: ProblemArrays, arch: Architecture, mb: MappingBatch) -> NestStats:
    """Nest-analysis statistics of every mapping in the batch (exactly Timeloop's).

    Compiled (``kernel.prep_rows`` + ``kernel.walk_totals``) when numba is there; the numpy
    form below is the readable reference, and the tests hold the two equal.
    """
    if HAVE_NUMBA and jit.enabled():
        return _nest_stats_compiled(pa, arch, mb)
    return nest_stats_numpy(pa, arch, mb)


def nest_stats_numpy(pa: ProblemArrays, arch: Architecture, mb: MappingBatch) -> NestStats:
    """``nest_stats`` with every row through the numpy reference form."""
    prep = _prep_numpy(pa, mb)
    master = prep["master"]
    msize = np.where(master[:, :, None], pa.sizes(prep["mid"]), 0)
    total, weighted, link = _walk_totals_numpy(pa, arch, prep)
    fan, repl = prep["fan"], prep["repl"]
    return NestStats(size=prep["size"].astype(np.float64), total=total, weighted=weighted, link=link,
                     msize=msize.astype(np.float64), master=master,
                     fanout=fan.astype(np.float64), repl=repl.astype(np.float64),
                     xexp=prep["xexp"].astype(np.float64), yexp=prep["yexp"].astype(np.float64),
                     compute=prep["compute"], compute_repl=(repl[:, 0] * fan[:, 0]).astype(np.float64))


def _prep_numpy(pa: ProblemArrays, mb: MappingBatch) -> dict:
    """The closed form's per-mapping set-up: extents, tiles, fan-outs, compacted temporal loops."""
    B, L, D = mb.tf.shape
    # Extents: below level l (prev), after its spatial fan-out (mid) and after it (ext).
    level_f = mb.sf * mb.tf
    ext = np.cumprod(level_f, axis=1)                                      # [B,L,D]
    prev = ext // level_f
    mid = prev * mb.sf
    ext_coord = pa.spans(ext)                                              # [B,L,P,C]
    size = np.prod(ext_coord, axis=-1)                                     # [B,L,P]

    # Loops in nest order: per level its D spatial then its D temporal loops.  Every
    # dimension appears once in each permutation, so a loop's stride (the extent of its
    # dimension below it) is a lookup, not a running product.
    sdim, tdim = mb.sperm, mb.tperm
    sn = np.take_along_axis(mb.sf, sdim, axis=2)                           # [B,L,D] by position
    tn = np.take_along_axis(mb.tf, tdim, axis=2)
    svs = np.take_along_axis(prev, sdim, axis=2)
    tvs = np.take_along_axis(mid, tdim, axis=2)

    # Spatial fan-out per level.
    fan = np.prod(mb.sf, axis=2)                                           # [B,L]
    is_x = np.arange(D)[None, None, :] < mb.split[:, :, None]
    fx = np.prod(np.where(is_x, sn, 1), axis=2)
    fy = fan // fx
    above = lambda a: np.concatenate([np.cumprod(a[:, ::-1], axis=1)[:, ::-1][:, 1:],
                                      np.ones((B, 1), dtype=a.dtype)], axis=1)
    repl, xexp, yexp = above(fan), above(fx), above(fy)

    # Non-trivial temporal loops, innermost first, compacted to J columns.
    tn_all = tn.reshape(B, L * D)
    live = tn_all >= 2
    order = np.argsort(~live, axis=1, kind="stable")
    J = max(1, int(live.sum(axis=1).max()))
    order = order[:, :J]
    nj = np.take_along_axis(tn_all, order, axis=1)
    livej = np.take_along_axis(live, order, axis=1)
    nj = np.where(livej, nj, 1)
    dimj = np.take_along_axis(tdim.reshape(B, L * D), order, axis=1)
    vj = np.take_along_axis(tvs.reshape(B, L * D), order, axis=1)
    levj = np.where(livej, np.repeat(np.arange(L), D)[order], -1)
    compute = np.prod(nj, axis=1).astype(np.float64)
    return dict(nj=nj, levj=levj, dimj=dimj, vj=vj, size=size, ext_coord=ext_coord, fan=fan, master=fan > 1,
                compute=compute, sdim=sdim, sn=sn, svs=svs, split=mb.split, sf=mb.sf, prev=prev, mid=mid,
                repl=repl, xexp=xexp, yexp=yexp)


def physical_fanouts(arch: Architecture) -> np.ndarray:
    """[L,2] each level's physical (X, Y) fan-out, for the compiled link-transfer counts."""
    return np.array([arch.fanout(li) for li in range(len(arch.storage))], dtype=np.int64).reshape(-1, 2)


def _nest_stats_compiled(pa: ProblemArrays, arch: Architecture, mb: MappingBatch) -> NestStats:
    """``nest_stats`` with the set-up and the walk totals (link transfers included) compiled."""
    from coopt.model.kernel import master_sizes, prep_rows, walk_totals

    B, L, D = mb.tf.shape
    P, C = pa.P, pa.C
    i64 = np.int64
    tf, tperm, sf, sperm, split = (np.ascontiguousarray(a, dtype=i64) for a in
                                   (mb.tf, mb.tperm, mb.sf, mb.sperm, mb.split))
    ext, prev, mid, sn, svs = (np.empty((B, L, D), dtype=i64) for _ in range(5))
    ext_coord = np.empty((B, L, P, C), dtype=i64)
    size = np.empty((B, L, P), dtype=i64)
    fan, fx, repl, xexp, yexp = (np.empty((B, L), dtype=i64) for _ in range(5))
    nj, dimj, vj, levj = (np.empty((B, L * D), dtype=i64) for _ in range(4))
    compute = np.empty(B)
    J = prep_rows(tf, tperm, sf, sperm, split, *pa.sparse, ext, prev, mid, ext_coord, size, sn, svs, fan, fx,
                  repl, xexp, yexp, nj, dimj, vj, levj, compute)
    nj, dimj, vj, levj = nj[:, :J], dimj[:, :J], vj[:, :J], levj[:, :J]
    msize = np.zeros((B, L, P), dtype=i64)
    master_sizes(mid, fan, *pa.sparse, msize)
    total = np.zeros((B, L, P))
    weighted = np.zeros((B, L, P))
    link = np.zeros((B, L, P))
    sizef = size.astype(np.float64)
    walk_totals(nj, levj, pa.codes, dimj, vj, sizef, ext_coord, pa.coef, *pa.sparse, sf, prev, fan,
                compute, sperm, sn, svs, pa.half, pa.radix, total, weighted, link, split, physical_fanouts(arch))
    return NestStats(size=sizef, total=total, weighted=weighted, link=link,
                     msize=msize.astype(np.float64), master=fan > 1,
                     fanout=fan.astype(np.float64), repl=repl.astype(np.float64),
                     xexp=xexp.astype(np.float64), yexp=yexp.astype(np.float64), compute=compute,
                     compute_repl=(repl[:, 0] * fan[:, 0]).astype(np.float64))


# ----------------------------------------------------------------------------- link transfers

def multicast_groups(pa: ProblemArrays, sf: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """[B,L,P] distinct offsets, in each data space, among a level's spatial instances.

    Without two fanned-out dimensions in one coordinate, the product of the fan-outs of the
    dimensions the data space depends on; otherwise counted (sliding windows across PEs).
    """
    coef, C, D = pa.coef, pa.C, pa.D
    groups = np.prod(np.where(pa.relevant[None, None], sf[:, :, None, :], 1), axis=3).astype(np.float64)
    fed = np.einsum("pcd,bld->blpc", (coef != 0).astype(np.int64), (sf > 1).astype(np.int64))
    for b, li, p in zip(*np.nonzero((fed > 1).any(axis=3))):
        g = 1
        for c in range(C):
            terms = tuple(sorted((int(coef[p, c, d] * prev[b, li, d]), int(sf[b, li, d]))
                                 for d in range(D) if coef[p, c, d] and sf[b, li, d] > 1))
            g *= _distinct_sums(terms) if len(terms) > 1 else (terms[0][1] if terms else 1)
        groups[b, li, p] = g
    return groups


def _walk_totals_numpy(pa: ProblemArrays, arch: Architecture, prep: dict):
    """The walk totals with numpy over a (sub-)batch, link transfers counted exactly."""
    nj, levj, dimj, vj = prep["nj"], prep["levj"], prep["dimj"], prep["vj"]
    size, ext_coord, fan = prep["size"], prep["ext_coord"], prep["fan"]
    master, compute, sdim, sn, svs, split = (prep["master"], prep["compute"], prep["sdim"], prep["sn"],
                                             prep["svs"], prep["split"])
    coef = pa.coef
    B, L, P = size.shape
    groups = multicast_groups(pa, prep["sf"], prep["prev"])
    tcode = vj[:, :, None] * pa.codes.T[dimj]      # a tile's move per loop and data space, as one integer
    total = np.zeros((B, L, P))
    weighted = np.zeros((B, L, P))
    link = np.zeros((B, L, P))
    phys = [arch.fanout(li) for li in range(L)]
    for li in range(L):
        # Loops of levels below li sit in the leading columns; skip the columns no row needs.
        c0 = min(int(np.min(np.argmax(np.concatenate([levj >= li, np.ones((B, 1), bool)], axis=1), axis=1))),
                 levj.shape[1] - 1)
        lj, nj_, tc, dj, vj_ = levj[:, c0:], nj[:, c0:], tcode[:, c0:], dimj[:, c0:], vj[:, c0:]
        Jl = lj.shape[1]
        jidx = np.arange(Jl)[None, :, None]
        inside = lj >= li                                                  # loops above the child
        n_li = np.where(inside, nj_, 1)
        t_li = np.where(inside[:, :, None], tc, 0)
        T = t_li - (np.cumsum(t_li, axis=1) - t_li)                        # a step's move, [B,J,P]
        suffix = np.cumprod(n_li[:, ::-1], axis=1)[:, ::-1]
        w = ((n_li - 1) * (suffix // n_li)).astype(np.float64)             # steps of each loop
        G = groups[:, li]
        F = fan[:, li, None].astype(np.float64)
        first = np.argmax(inside, axis=1)                                  # innermost loop above child
        if li == 0:
            # The child is one MAC operand: nothing is reused across steps.
            total[:, 0] = G * compute[:, None]
            weighted[:, 0] = F * compute[:, None]
            a = overlap = tight = None
            steps_ok = np.broadcast_to((inside & (n_li >= 2))[:, :, None], T.shape)
        else:
            moving = inside[:, :, None] & (t_li != 0)
            has_a = moving.any(axis=1)                                     # [B,P]
            a = np.argmax(moving, axis=1)
            Ta = np.take_along_axis(t_li, a[:, None, :], axis=1)           # [B,1,P]
            after_a = (jidx > a[:, None, :]) & inside[:, :, None]
            zero = T == 0
            same = T == Ta
            wb = w[:, :, None]
            same_w = (wb * (after_a & same)).sum(axis=1)
            reset_w = (wb * (after_a & ~zero & ~same)).sum(axis=1)
            wa = np.take_along_axis(w, a, axis=1)
            # overlap of the child tile with itself moved by T_a (sliding windows)
            da = np.take_along_axis(dj, a, axis=1)                         # [B,P]
            va = np.take_along_axis(vj_, a, axis=1)
            ta_vec = coef[np.arange(P)[None, :], :, da] * va[:, :, None]   # [B,P,C]
            overlap = np.prod(np.maximum(0, ext_coord[:, li - 1] - np.abs(ta_vec)), axis=2)
            child = size[:, li - 1].astype(np.float64)
            A = child * (1 + reset_w) + (child - overlap) * (wa + same_w)
            A = np.where(has_a, A, child)
            total[:, li] = G * A
            weighted[:, li] = F * A
            # Links need every step to follow a step that moved data: the moving loop must be
            # the innermost non-trivial one above the child.
            tight = has_a & (a == first[:, None])
            steps_ok = tight[:, None, :] & ((after_a & ~zero) | (jidx == a[:, None, :]))
        if not master[:, li].any():
            continue
        # Could some step's move equal the offset between two instances of this fan-out?
        ok = steps_ok & master[:, li, None, None]
        rb, rj, rp = np.nonzero(ok)
        if not len(rb):
            continue
        Tk = pa.decode(T[rb, rj, rp])                                      # [K,C] moves to check
        rows = np.unique(rb)
        feeders = _feeders(coef.transpose(2, 0, 1)[sdim[rows, li]] * svs[rows, li][:, :, None, None], sn[rows, li])
        where = np.searchsorted(rows, rb)
        hit = _maybe_link(Tk, *(f[where, rp] for f in feeders))            # [K]
        flagged = np.zeros((B, P), dtype=bool)
        flagged[rb[hit], rp[hit]] = True
        for b, p in zip(*np.nonzero(flagged)):
            sstep = coef.transpose(2, 0, 1)[sdim[b, li]][:, p, :] * svs[b, li][:, None]       # [D,C]
            geom = _geometry(phys[li], split[b, li], sn[b, li], sstep)
            Tv = pa.decode(T[b, :, p])
            if li == 0:
                t_, l_, w_ = _links_compute(geom, Tv, (n_li[b] >= 2) & inside[b], w[b], G[b, p], F[b, 0])
            else:
                t_, l_, w_ = _links_tiles(geom, Tv, n_li[b] >= 2, w[b], int(a[b, p]), G[b, p], F[b, 0],
                                          float(size[b, li - 1, p]), float(overlap[b, p]), bool(tight[b, p]))
            total[b, li, p], link[b, li, p], weighted[b, li, p] = t_, l_, w_

    return total, weighted, link


def _feeders(sstep, sn):
    """Per row, data space and coordinate: how many fanned-out loops feed it, the move of the
    (single) feeder, its count; and whether some fanned-out loop feeds nothing (shared data).

    sstep [R,D,P,C] (each spatial loop's move), sn [R,D] (its count) -> four [R,P,...] arrays.
    """
    live = (sn > 1)[:, :, None, None] & (sstep != 0)
    nfeed = live.sum(axis=1)                                               # [R,P,C]
    step = np.where(live, sstep, 0).sum(axis=1)
    count = np.where(live, sn[:, :, None, None], 1).max(axis=1)
    idle = ((sn > 1)[:, :, None] & ~(sstep != 0).any(axis=3)).any(axis=1)  # [R,P]
    return nfeed, step, count, idle


def _maybe_link(T, nfeed, step, count, idle) -> np.ndarray:
    """[K]: could move T[k] be the offset between two instances of the fan-out?

    Conservative (never misses): per coordinate the move must be a multiple of the one
    spatial loop feeding it, within its range; coordinates fed by several loops pass; a zero
    move matches only instances sharing an offset.
    """
    s_ = np.where(step == 0, 1, step)
    fits_one = (T % s_ == 0) & (np.abs(T) // np.abs(s_) < count)
    per_coord = np.where(nfeed == 0, T == 0, np.where(nfeed == 1, fits_one, True))
    return per_coord.all(axis=1) & ((T != 0).any(axis=1) | idle)


def _geometry(phys, split, sn, sstep):
    """Hashable description of one fan-out: mesh size and each loop's (end, axis, move)."""
    loops = []
    fx = fy = 1
    for pos in range(len(sn)):
        if sn[pos] > 1:
            is_x = pos < split
            loops.append((int(sn[pos]), is_x, tuple(int(v) for v in sstep[pos])))
            if is_x:
                fx *= int(sn[pos])
            else:
                fy *= int(sn[pos])
    return (max(phys[0], fx), max(phys[1], fy), tuple(loops))


@lru_cache(maxsize=4096)
def _instances(geom):
    """Offsets of every instance and its mesh neighbours, as Timeloop lays them out."""
    h_size, v_size, loops = geom
    ends = [e for e, _, _ in loops]                  # innermost first
    F = int(np.prod(ends)) if ends else 1
    C = len(loops[0][2]) if loops else 0
    offsets = np.zeros((F, C), dtype=np.int64)
    for lin in range(F):
        rem = lin
        for e, _, mv in loops:                       # innermost loop is least significant
            offsets[lin] += (rem % e) * np.array(mv, dtype=np.int64)
            rem //= e
    neighbours = []
    for i in range(F):
        h, v = i % h_size, i // h_size
        cand = []
        if v >= 1:
            cand.append((v - 1) * h_size + h)
        if v < v_size - 1:
            cand.append((v + 1) * h_size + h)
        if h >= 1:
            cand.append(v * h_size + h - 1)
        if h < h_size - 1:
            cand.append(v * h_size + h + 1)
        neighbours.append([j for j in cand if j < F])
    return offsets, neighbours


@lru_cache(maxsize=4096)
def _neighbour_pairs(geom):
    """The instance offsets and every (instance, mesh neighbour) pair as two index arrays."""
    offsets, neighbours = _instances(geom)
    src = np.array([i for i, nb in enumerate(neighbours) for _ in nb], dtype=np.int64)
    dst = np.array([j for nb in neighbours for j in nb], dtype=np.int64)
    return offsets, src, dst


@lru_cache(maxsize=65536)
def _link_profile(geom, move: tuple) -> tuple[int, int]:
    """(instances that find their data at a neighbour, distinct offsets among the others)."""
    offsets, src, dst = _neighbour_pairs(geom)
    mv = np.array(move, dtype=np.int64)
    linked = np.zeros(len(offsets), dtype=bool)
    if len(src):
        # instance i finds its data at a neighbour j when offsets[j] - offsets[i] == move
        linked[src[((offsets[dst] - offsets[src]) == mv).all(axis=1)]] = True
    rest = offsets[~linked]
    distinct = len({tuple(r) for r in rest})
    return int(linked.sum()), distinct


def _step(acc, weight, delta, G, F, profile):
    """Timeloop takes links at a step only when they lower the parent's accesses."""
    if profile is not None:
        k, g2 = profile
        if k and g2 < G:
            acc[0] += weight * g2 * delta
            acc[1] += weight * k * delta
            acc[2] += weight * (F - k) * delta
            return
    acc[0] += weight * G * delta
    acc[2] += weight * F * delta


def _links_compute(geom, T, nontriv, w, G, F):
    """Level-0 fan-out: one operand per MAC per step, compared with the neighbours' last one."""
    acc = [G * 1.0, 0.0, F * 1.0]                    # the first step
    for j in range(len(T)):
        if nontriv[j]:
            _step(acc, w[j], 1.0, G, F, _link_profile(geom, tuple(int(x) for x in T[j])))
    return tuple(acc)


def _links_tiles(geom, T, nontriv, w, a, G, F, size, overlap, tight):
    """Fan-out above a buffer: replay the closed form's step classes, checking links at each.

    The steps alternate: an a-step, then a step of an outer loop j (same / reset / zero),
    then an a-step...  A link needs the previous step's delta to have the same shape.
    """
    acc = [G * size, 0.0, F * size]                  # the first step: whole tile, no history
    da = size - overlap                              # what an a-step delivers
    whole = overlap == 0                             # a's delta is a whole tile
    ta = tuple(int(x) for x in T[a])
    prof_a = _link_profile(geom, ta) if tight else None
    outer = [j for j in range(a + 1, len(T)) if nontriv[j]]
    n_a_minus_1 = w[a] / (1.0 + sum(w[j] for j in outer))    # w_a = (n_a - 1) * prod_{i>a} n_i
    _step(acc, n_a_minus_1, da, G, F, prof_a if whole else None)
    for j in outer:
        tj = tuple(int(x) for x in T[j])
        after = n_a_minus_1 * w[j]                   # the a-steps that follow a step of loop j
        if not any(tj):                              # zero: no data now, none to forward next
            _step(acc, after, da, G, F, None)
        elif tj == ta:                               # same stride: sliding on
            _step(acc, w[j], da, G, F, prof_a)
            _step(acc, after, da, G, F, prof_a)
        else:                                        # reset: a whole new tile
            _step(acc, w[j], size, G, F, _link_profile(geom, tj) if (tight and whole) else None)
            _step(acc, after, da, G, F, prof_a if whole else None)
    return tuple(acc)
