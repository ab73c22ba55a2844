"""Representation formats over a whole batch of mappings: plans, metadata units, checks, as numpy arrays.

The same arithmetic as ``formats.py`` row by row -- ``check_formats``,
``format_failures``, ``_plan``/``_assign`` and ``tensor_formats`` (Timeloop's
representation-analyzer.cpp ApplyRanksOuterToInner, CalculateExpectedOccupancy,
format-models/*.cpp GetOccupancy; sparse-analysis.cpp CheckFormatModelsAndMapping)
-- with the same floors, ceilings and summation order, on [batch, ...] arrays,
so that the mapper ranks thousands of mappings per layer without a Python
loop per mapping (tests/test_sparse_batch_formats.py holds the two equal).

A mapping's loops are laid out as one row of slots, innermost first: per
storage level its spatial loops (spatial_permutation order) then its
temporal ones (permutation order), as ``formats._loops`` lists them.  A
rank's fiber is the tile of the loops between two slot positions, and the
cumulative per-dimension extents along the slots give it in one division.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coopt.model.sparse.formats import COMPRESSED, VECTOR_WIDTH_THRESHOLDS, _aligned, _word_bits


@dataclass
class BatchFormat:
    """One formatted (level, tensor) over the batch; ranks innermost first, as ``TensorFormat``."""

    li: int
    t: int
    n: int                      # ranks
    compressed: bool
    active: np.ndarray          # [B] the level keeps the tensor (else Timeloop finds no tile to format)
    child: np.ndarray           # [B] nearest lower level keeping the tensor, -1 for none
    fiber: np.ndarray           # [B,n] plan: points one fiber spans
    below: np.ndarray           # [B,n] plan: points one element covers
    tile: np.ndarray            # [B,n] plan: points of the rank's tile
    fail: np.ndarray            # [B] "more compression ranks needed" (an invalid mapping)
    unsup: np.ndarray           # [B] SparseUnsupported raised while planning
    density: np.ndarray | None = None     # [B] expected density of the tile
    md_units: np.ndarray | None = None    # [B,n,2] expected [metadata, payload] units
    max_units: np.ndarray | None = None   # [B,n,2] at the largest occupancy
    word_bits: np.ndarray | None = None   # [B,n,2]


def pysum(terms):
    """CPython 3.12's ``sum`` of floats (Neumaier's compensated summation), elementwise over arrays."""
    f = None
    c = 0.0
    for x in terms:
        if f is None:
            f = 0.0 + x
            continue
        t = f + x
        c = c + np.where(np.abs(f) >= np.abs(x), (f - t) + x, (x - t) + f)
        f = t
    if f is None:
        return 0.0
    return np.where((c != 0) & np.isfinite(c), f + c, f)


class _Slots:
    """The batch's loops as slot columns, innermost first, and the cumulative extents along them.

    Columns whose loop is trivial in every row are dropped (``formats._loops``
    drops factor-1 loops too), which leaves a few dozen; ``ends[l]`` counts
    the columns at levels below l.
    """

    def __init__(self, problem, mb):
        B, L, D = mb.tf.shape
        self.B, self.L, self.D = B, L, D
        rows = np.arange(B)
        # the (level, spatial|temporal) blocks with some loop above 1, level by level, spatial first
        some = np.stack([mb.sf.max(axis=0).max(axis=1) > 1, mb.tf.max(axis=0).max(axis=1) > 1], axis=1)  # [L,2]
        lv, kind = np.nonzero(some)
        sel = kind * L + lv
        fac = np.concatenate([mb.sf, mb.tf], axis=1)[:, sel]                   # [B,K,D]
        perm = np.concatenate([mb.sperm, mb.tperm], axis=1)[:, sel]
        fac = np.take_along_axis(fac, perm, axis=2)
        keep = (fac > 1).any(axis=0)                                           # [K,D]
        self.dim = perm[:, keep]
        self.fac = fac[:, keep]
        self.level = np.repeat(lv, keep.sum(axis=1))
        self.S = S = len(self.level)
        self.nontrivial = self.fac > 1
        self.ends = np.searchsorted(self.level, np.arange(L + 1))        # ends[l]: columns at levels < l
        self.pos = np.arange(S)
        # cum[p]: per-dimension extents of the columns before p (int32: each is at most a bound, <= 2**20)
        self.cum = np.ones((S + 1, B, D), dtype=np.int32)
        self.cum[np.arange(1, S + 1)[:, None], rows[None, :], self.dim.T] = self.fac.T
        for q in range(1, S + 1):                  # numpy's cumprod along this axis is several times slower
            np.multiply(self.cum[q - 1], self.cum[q], out=self.cum[q])
        self.rows = rows
        self.problem = problem
        self.dims = {d: i for i, d in enumerate(problem.dims)}
        self._coef: dict = {}

    def tile(self, ds, ext):
        """``problem.tile_size`` over rows of per-dimension extents [..., D]: prod(1 + (extents - 1) @ coef)."""
        w = self._coef.get(ds.name)
        if w is None:
            w = self._coef[ds.name] = np.zeros((self.D, len(ds.projection)), dtype=np.int64)
            for j, coord in enumerate(ds.projection):
                for c, d in coord:
                    w[self.dims[d], j] += self.problem.coef(c)
        return np.prod(1 + (ext - 1) @ w, axis=-1)

    def at(self, p):
        """Per row, the extents of its columns before position ``p`` (an array)."""
        return self.cum[p, self.rows].astype(np.int64)

    def upto(self, ds, level):
        """Per row, the tile of all loops at levels 0..``level`` (``level`` an array; -1 gives 1)."""
        return self.tile(ds, self.at(self.ends[np.asarray(level) + 1]))


def _children(keep, li, t):
    child = np.full(keep.shape[0], -1)
    for k in range(li):
        child = np.where(keep[:, k, t], k, child)
    return child


def _gather(arr, idx):
    return np.take_along_axis(arr, np.maximum(idx, 0)[:, None], axis=1)[:, 0]


def _plan(sl: _Slots, ds, t, li, ranks, child, t_child, plans):
    """formats._plan over the batch: the child's ranks below (pre-tiling), the level's own loops above.

    ``t_child``: the child's whole tile per row (one rank holding it when the child has no format).
    """
    B, n, D = sl.B, len(ranks), sl.D
    rows = np.arange(B)
    fiber = np.ones((B, n), dtype=np.int64)
    below = np.ones((B, n), dtype=np.int64)
    tile = np.ones((B, n), dtype=np.int64)
    unsup = np.zeros(B, dtype=bool)
    fail = np.zeros(B, dtype=bool)
    n_inner = np.where(child >= 0, 1, 0)
    fiber[:, 0] = np.where(child >= 0, t_child, 1)
    tile[:, 0] = fiber[:, 0]
    for k, pk in plans.items():                        # a formatted child: its own plan's ranks
        on = child == k
        if not on.any():
            continue
        m = min(pk.n, n)
        fiber[on, :m], below[on, :m], tile[on, :m] = pk.fiber[on, :m], pk.below[on, :m], pk.tile[on, :m]
        n_inner = np.where(on, pk.n, n_inner)
        unsup |= on & pk.unsup
        fail |= on & pk.fail
    lo = child + 1
    rel = np.zeros(D + 1, dtype=bool)
    for d in ds.dims():
        rel[sl.dims[d]] = True
    valid = (sl.level[None, :] >= lo[:, None]) & ((sl.level <= li)[None, :] & sl.nontrivial) & rel[sl.dim]

    def prev_table(mask):          # [B,S+1]: the last masked slot before each position, -1 for none
        out = np.full((B, sl.S + 1), -1)
        if mask.any():
            out[:, 1:] = np.maximum.accumulate(np.where(mask, sl.pos, -1), axis=1)
        return out

    prev = None
    last = valid[:, ::-1].argmax(axis=1)
    i = np.where(valid.any(axis=1), sl.S - 1 - last, -1)          # the outermost of the level's own loops
    lo_first = sl.ends[lo]                             # the level's own loops start here
    for r in range(n - 1, -1, -1):                     # formats._assign, outermost rank first
        rank = ranks[n - 1 - r]
        run = r >= n_inner
        if not run.any():
            continue
        top = i
        unsup |= run & (top < 0)
        tc = np.maximum(top, 0)
        if rank.flattened is not None:
            flat = np.zeros(D + 1, dtype=bool)
            flat[[sl.dims[d] for d in rank.flattened if d in sl.dims]] = True
            flat = flat[sl.dim]
            unsup |= run & (top >= 0) & ~flat[rows, tc]
            other = valid & ~flat
            nxt = _gather(prev_table(other), tc) if other.any() else np.full(B, -1)
        else:
            prev = prev_table(valid) if prev is None else prev
            nxt = _gather(prev, tc)
        nxt = np.where(top < 0, -1, nxt)
        i = np.where(run, nxt, i)
        upto_top = sl.at(tc + 1)
        f = sl.tile(ds, upto_top // sl.at(np.maximum(nxt + 1, lo_first)))
        tl = sl.tile(ds, upto_top)
        fiber[:, r] = np.where(run, f, fiber[:, r])
        tile[:, r] = np.where(run, tl, tile[:, r])
    for r in range(n):                                 # each assigned rank's element: the rank under it
        below[:, r] = np.where(r >= n_inner, tile[:, r - 1] if r else 1, below[:, r])
    fail |= i >= 0
    return fiber, below, tile, fail, unsup


def _p_empty(n, k, tile):
    """formats._p_empty: with exact >= 0 its floor is 0 exactly when exact < 1 (then 1 - (exact - 0))."""
    exact = n * (k / tile)
    return np.where(exact < 1, 1 - exact, 0.0)


def _units(fmt, fibers_max, fiber, cur, below, k, tile):
    """format-models/*.cpp GetOccupancy, as formats._units."""
    if fmt == "UB":
        x = fibers_max * fiber
        return x, x
    fibers = fibers_max * (1 - _p_empty(cur, k, tile))
    nz = 1 - _p_empty(below, k, tile)
    if fmt == "CP":
        md = np.ceil(fiber * nz) * fibers
        return md, md
    if fmt == "RLE":
        md = fiber * nz * fibers
        return md, md
    if fmt == "B":
        return fibers * fiber, fibers * np.ceil(fiber * nz)
    return np.zeros_like(fibers), fibers * (fiber + 1)         # UOP


def _occupancy(f: BatchFormat, ranks, spec, tensor, meta, utilized):
    """formats.tensor_formats' expected and largest units per rank, over the batch.

    Its (at most two) fixed-structured occupancies, floor and ceil of the
    expected nonzeros, are the leading axis of every array here.
    """
    B, n = f.fiber.shape
    tile = np.maximum(utilized, 1).astype(np.float64)
    empty = (f.fiber == 1) & (np.arange(n) != n - 1)
    exact = utilized * spec.density(tensor)
    lo = np.floor(exact)
    pc = exact - lo
    k = np.stack([lo, np.ceil(exact)])                     # [2,B]
    p = np.stack([1 - pc, pc])
    per = np.zeros((2, B, n, 2))
    fibers = np.ones((2, B))
    cur = utilized
    for r in range(n - 1, -1, -1):
        m, pl = _units(ranks[n - 1 - r].format, fibers, f.fiber[:, r], cur, f.below[:, r], k, tile)
        if empty[:, r].any():
            m, pl = np.where(empty[:, r], 0.0, m), np.where(empty[:, r], 0.0, pl)
        per[:, :, r, 0] = m
        per[:, :, r, 1] = pl
        fibers = fibers * f.fiber[:, r]
        cur = f.below[:, r]
    nonzero = (per != 0).any(axis=3)                        # [2,B,n]
    o, b = np.nonzero(nonzero.any(axis=2))
    per[o, b, np.argmax(nonzero, axis=2)[o, b], 1] = 0.0   # the innermost rank's payload is the data
    second = (pc > 0)[:, None, None]
    units = 0.0 + p[0][:, None, None] * per[0]
    f.md_units = np.where(second, units + p[1][:, None, None] * per[1], units)
    f.max_units = np.where(second, per[1], per[0])
    nnz = 0.0 + p[0] * k[0]
    nnz = np.where(pc > 0, nnz + p[1] * k[1], nnz)
    f.density = np.where(utilized != 0, nnz / tile, 0.0)
    bits = np.array([[_word_bits(ranks[n - 1 - r].metadata_word_bits, meta),
                      _word_bits(ranks[n - 1 - r].payload_word_bits, meta)] for r in range(n)], dtype=np.int64)
    f.word_bits = np.where(empty[..., None], 0, bits[None])


def format_failures(spec, problem, arch, keep) -> np.ndarray:
    """formats.format_failures per row: True where Timeloop rejects the mapping."""
    names = [lvl.name for lvl in arch.storage]
    B, L, _ = keep.shape
    fail = np.zeros(B, dtype=bool)
    for t, ds in enumerate(problem.dataspaces):
        if not any(COMPRESSED[r.format] for (_, tt), ranks in spec.formats.items() if tt == ds.name
                   for r in ranks):
            continue                                    # nothing compressed above anything: no failure
        pc = np.full(B, -1, dtype=np.int8)              # parent compressed: -1 none yet, 0, 1
        pr = np.full(B, -1)
        for li in range(L - 1, -1, -1):
            k = keep[:, li, t]
            ranks = spec.formats.get((names[li], ds.name), ())
            comp = any(COMPRESSED[r.format] for r in ranks)
            meta = spec.metadata.get(names[li])
            from_comp = k & (pc == 1)
            if not comp and not (meta and meta.decompression_supported):
                fail |= from_comp
            if ds.read_write and not comp and not (meta and meta.compression_supported):
                fail |= from_comp
            if comp:
                fail |= from_comp & (pr < len(ranks))
            pc = np.where(k, int(comp), pc)
            pr = np.where(k, len(ranks) if comp else -1, pr)
    return fail


def _check(spec, problem, names, keep, li, t, ranks, child, child_tile) -> np.ndarray:
    """formats.check_formats for one format over the batch: rows it raises SparseUnsupported on."""
    tensor = problem.dataspaces[t].name
    B, L, _ = keep.shape
    bad = np.zeros(B, dtype=bool)
    for k in range(li + 1, L):
        if (names[k], tensor) not in spec.formats:
            bad |= keep[:, k, t]
    for k in range(li):
        child_ranks = spec.formats.get((names[k], tensor))
        if child_ranks is not None and not _aligned(child_ranks, ranks):
            bad |= child == k
    has = child >= 0
    if not any(COMPRESSED[r.format] for r in ranks):
        bad |= has
    bad |= has & (child_tile == 1)
    d = spec.densities.get(tensor)
    if d is not None and d.distribution != "fixed_structured":
        bad[:] = True
    bad |= has & (np.floor(child_tile * spec.density(tensor)) == 0)
    return bad


def vectorisable(spec, arch) -> bool:
    """False where the row-by-row path would stop on something outside Timeloop's tables (a KeyError)."""
    for (level, _), ranks in spec.formats.items():
        lvl = next(x for x in arch.storage if x.name == level)
        if any(COMPRESSED[r.format] for r in ranks) and lvl.block_size > 1 \
                and lvl.block_size not in VECTOR_WIDTH_THRESHOLDS:
            return False
    return True


def batch_formats(spec, problem, arch, mb, utilized) -> tuple[dict, np.ndarray]:
    """``{(level index, tensor index): BatchFormat}`` and the rows check_formats or planning refuse."""
    names = [lvl.name for lvl in arch.storage]
    keep = mb.keep
    sl = _Slots(problem, mb)
    B = len(mb)
    bad = np.zeros(B, dtype=bool)
    tensors = [ds.name for ds in problem.dataspaces]
    out: dict = {}
    for (level, tensor), ranks in sorted(spec.formats.items(), key=lambda kv: names.index(kv[0][0])):
        li, t = names.index(level), tensors.index(tensor)
        ds = problem.dataspaces[t]
        active = keep[:, li, t]
        child = _children(keep, li, t)
        plans = {k: f for (k, tt), f in out.items() if tt == t}
        t_child = sl.upto(ds, child)
        fiber, below, tile, fail, unsup = _plan(sl, ds, t, li, ranks, child, t_child, plans)
        f = BatchFormat(li, t, len(ranks), any(COMPRESSED[r.format] for r in ranks), active, child,
                        fiber, below, tile, fail, unsup)
        _occupancy(f, ranks, spec, tensor, spec.metadata.get(level), utilized[:, li, t])
        bad |= active & (unsup | _check(spec, problem, names, keep, li, t, ranks, child, t_child))
        out[li, t] = f
    return {k: out[k] for k in sorted(out, key=lambda k: list(spec.formats).index((names[k[0]], tensors[k[1]])))}, bad


def vector_ratio(f: BatchFormat, tile, block: int, density: float):
    """formats.vector_ratio over the batch (BufferLevel::ComputeVectorAccesses' correction)."""
    B = len(tile)
    d = f.density
    if not f.compressed or block <= 1:
        return np.ones(B)
    plain = (tile == 0) | (d >= 1.0)
    idx = np.where(d >= 0.1, np.floor(d / 0.1) - 1, 0).astype(np.int64)
    thr = np.array(VECTOR_WIDTH_THRESHOLDS[block])[np.clip(idx, 0, 9)]
    plain |= thr <= tile // block
    exact = tile * density
    lo = np.floor(exact)
    pc = exact - lo
    hi = np.ceil(exact)
    terms = [np.where(lo >= 1, np.ceil(lo / block) * (1 - pc), 0.0),
             np.where((pc > 0) & (hi >= 1), np.ceil(hi / block) * pc, 0.0)]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = pysum(terms) / (tile * d / block)
    return np.where(plain, 1.0, r)
