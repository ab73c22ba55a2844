"""The mapspace of one layer on one architecture under constraints, as batch operations.

Draws random mappings, proposes neighbours of good ones (move a prime factor
between loops, reorder a level's loops, change a spatial split, toggle a
bypass), rejects what cannot fit (fan-outs, factor caps, capacities) before
any model evaluation, and puts mappings in a canonical form (trivial loops
carry no order) so that duplicates are caught.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from coopt.arch.spec import Architecture
from coopt.errors import MappingError
from coopt.mapper.constraints import MapConstraints
from coopt.mapper.sample import prime_factors
from coopt.model import jit
from coopt.model.batch import MappingBatch
from coopt.model.nest import ProblemArrays
from coopt.workload.problem import Problem

HAVE_NUMBA = jit.AVAILABLE     # tests set it False to force the Python reference loops


def _compiled(flag: bool | None) -> bool:
    """Compiled loops unless told otherwise (``flag``), numba is missing or the policy says not yet."""
    return flag if flag is not None else (HAVE_NUMBA and jit.enabled())


def mk():
    """The compiled loops (imported on first use: importing numba costs time)."""
    from coopt.mapper import kernel
    return kernel

@dataclass
class Prefilter:
    ok: np.ndarray          # [B] passes every cheap check
    fanout: np.ndarray      # [B] spatial factors fit the fan-outs
    capacity: np.ndarray    # [B] tiles fit the buffers


class MapSpace:
    def __init__(self, problem: Problem, arch: Architecture, constraints: MapConstraints):
        self.problem, self.arch, self.cons = problem, arch, constraints
        self.pa = ProblemArrays(problem)
        D, L, P = len(problem.dims), len(arch.storage), len(problem.dataspaces)
        self.D, self.L, self.P = D, L, P
        self.ds_names = [d.name for d in problem.dataspaces]
        bounds = np.array([problem.bounds[d] for d in problem.dims], dtype=np.int64)
        self.bounds = bounds
        fan = np.array([arch.fanout(li) for li in range(L)], dtype=np.int64)   # [L,2]
        self.fan_x, self.fan_y = fan[:, 0], fan[:, 1]
        # fixed factors (0 = free) and caps; a level without fan-out has no spatial freedom
        self.fix_t = np.zeros((L, D), dtype=np.int64)
        self.fix_s = np.zeros((L, D), dtype=np.int64)
        self.cap_t = np.full((L, D), np.iinfo(np.int64).max // 4, dtype=np.int64)
        self.cap_s = np.full((L, D), np.iinfo(np.int64).max // 4, dtype=np.int64)
        self.keep_fixed = np.zeros((L, P), dtype=np.int8)      # 1 keep, -1 bypass, 0 free
        self.min_util = np.array([lvl.min_utilization for lvl in arch.storage])
        self.min_t = np.ones((L, D), dtype=np.int64)            # '>=' factors (Timeloop's min factors)
        self.min_s = np.ones((L, D), dtype=np.int64)
        for li, lc in enumerate(constraints.levels):
            for d, v in lc.t_fixed.items():
                self.fix_t[li, d] = v
            for d, v in lc.s_fixed.items():
                self.fix_s[li, d] = v
            for d, v in lc.t_max.items():
                self.cap_t[li, d] = v
            for d, v in lc.s_max.items():
                self.cap_s[li, d] = v
            for d, v in lc.t_min.items():
                self.min_t[li, d] = v
            for d, v in lc.s_min.items():
                self.min_s[li, d] = v
            for p, name in enumerate(self.ds_names):
                if name in lc.keep:
                    self.keep_fixed[li, p] = 1
                elif name in lc.bypass:
                    self.keep_fixed[li, p] = -1
            if self.fan_x[li] * self.fan_y[li] == 1:
                self.fix_s[li] = np.where(self.fix_s[li] == 0, 1, self.fix_s[li])
        self.keep_fixed[L - 1] = np.where(self.keep_fixed[L - 1] == 0, 1, self.keep_fixed[L - 1])
        # what is left of each dimension after fixed factors, as primes
        fixed_prod = np.prod(np.where(self.fix_t > 0, self.fix_t, 1), axis=0) * \
            np.prod(np.where(self.fix_s > 0, self.fix_s, 1), axis=0)
        self.primes: list[list[int]] = []
        for d, dim in enumerate(problem.dims):
            if bounds[d] % fixed_prod[d]:
                raise MappingError(f"fixed factors of {dim} multiply to {fixed_prod[d]}, which does not divide "
                                   f"the layer's {dim}={bounds[d]}: no valid mapping", key=f"constraints.{dim}")
            rest = int(bounds[d] // fixed_prod[d])
            free = (self.fix_t[:, d] == 0).sum() + (self.fix_s[:, d] == 0).sum()
            if rest > 1 and free == 0:
                raise MappingError(f"every factor of {dim} is fixed and they multiply to {fixed_prod[d]}, "
                                   f"not {bounds[d]}: no valid mapping", key=f"constraints.{dim}")
            self.primes.append(prime_factors(rest))
        # per level the free slots (level, spatial?) of every dimension
        self.free_slots = []
        for d in range(D):
            slots = [(li, 1) for li in range(L) if self.fix_s[li, d] == 0] + \
                    [(li, 0) for li in range(L) if self.fix_t[li, d] == 0]
            self.free_slots.append(slots)
        self.capacity = np.array([np.inf if lvl.effective_size is None else lvl.effective_size
                                  for lvl in arch.storage], dtype=np.float64)
        self._util_floor = np.where(np.isfinite(self.capacity), self.capacity, 0) * self.min_util
        # per-layer constants of the compiled fill loops, computed once
        self._t_slots = [[li for li in range(L) if self.fix_t[li, d] == 0] for d in range(D)]
        self._groups: dict[tuple, tuple] = {}
        self._sf_reset = np.where(self.fix_s > 0, self.fix_s, 1)
        self._tf_reset = np.where(self.fix_t > 0, self.fix_t, 1)
        self._spatial_levels = [li for li in range(L) if self.fan_x[li] * self.fan_y[li] > 1]
        self._split_free = np.array([lc.split is None and self.fan_x[li] > 1 and self.fan_y[li] > 1
                                     for li, lc in enumerate(constraints.levels)], dtype=bool)
        # the prime moves' constants per dimension: free slots' levels and kinds, distinct primes
        self._movable = [d for d in range(D) if self.primes[d] and len(self.free_slots[d]) > 1]
        self._slot_arrays = [(np.array([s[0] for s in self.free_slots[d]]),
                              np.array([s[1] for s in self.free_slots[d]], dtype=bool),
                              np.array(sorted(set(self.primes[d])))) for d in range(D)]
        self._primes_desc = [sorted(self.primes[d], reverse=True) for d in range(D)]
        self._nconsts: tuple | None = None
        self._packed = _pack_per_dimension(self._t_slots, self._primes_desc, self._movable, self._slot_arrays)
        self._t_pinned = np.zeros((L, D), dtype=bool)       # temporal loops held by an order prefix/suffix
        for li, lc in enumerate(constraints.levels):
            self._t_pinned[li, list(lc.t_prefix) + list(lc.t_suffix)] = True
        self._fan_total = float(np.prod(self.fan_x.astype(np.float64) * self.fan_y))
        self._partial_spatial = [li for li, lc in enumerate(constraints.levels)
                                 if lc.s_order is None and (lc.s_prefix or lc.s_suffix)]
        self._has_floors = bool((self.min_t > 1).any() or (self.min_s > 1).any() or constraints.min_parallelism > 0
                                or self._partial_spatial)
        self._consts = {
            "free_s": self.fix_s == 0,
            "fixed_t": np.prod(self._tf_reset, axis=0),
            "fan": np.stack([self.fan_x, self.fan_y], axis=1),
            "caps_s": np.minimum(self.cap_s, 1 << 40),
        }

    # ------------------------------------------------------------------ permutations
    def _perms(self, rng, n, prefix_of, suffix_of):
        """Random permutations per level honouring fixed innermost prefixes and outermost suffixes."""
        D, L = self.D, self.L
        keys = rng.random((n, L, D))
        for li in range(L):
            pre, suf = prefix_of(li), suffix_of(li)
            for rank, d in enumerate(pre):
                keys[:, li, d] = -10.0 + rank * 1e-3
            for rank, d in enumerate(suf):
                keys[:, li, d] = 10.0 + rank * 1e-3
        return np.argsort(keys, axis=2)

    def _spatial_perms(self, rng, n):
        perm = self._perms(rng, n, lambda li: self.cons.levels[li].s_prefix,
                           lambda li: self.cons.levels[li].s_suffix)
        split = rng.integers(0, self.D + 1, size=(n, self.L))
        for li, lc in enumerate(self.cons.levels):
            if lc.split is not None:
                split[:, li] = lc.split
            elif self.fan_y[li] == 1:
                split[:, li] = self.D          # only X fans out
            elif self.fan_x[li] == 1:
                split[:, li] = 0
        return perm, split

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, rng: np.random.Generator, *, fill: float = 0.75) -> MappingBatch:
        """``n`` random mappings that honour every constraint (fan-outs included).

        Spatial factors are drawn first, per (level, axis): with probability ``fill``
        among the choices that use the most instances (utilisation drives delay),
        else among all that fit.  The remaining primes go to random temporal loops.
        """
        D, L = self.D, self.L
        sperm, split = self._spatial_perms(rng, n)
        tperm = self._perms(rng, n, lambda li: self.cons.levels[li].t_prefix,
                            lambda li: self.cons.levels[li].t_suffix)
        tf = np.broadcast_to(self._tf_reset, (n, L, D)).copy()
        sf = np.broadcast_to(np.where(self.fix_s > 0, self.fix_s, 1), (n, L, D)).copy()
        is_x = np.argsort(sperm, axis=2) < split[:, :, None]
        self._fill_spatial(sf, is_x, rng, np.arange(n), range(L), fill)
        self._fill_temporal(tf, sf, rng, np.arange(n))
        keep = self._sample_keep(rng, n)
        return self.canonical(MappingBatch(tf=tf, tperm=tperm, sf=sf, sperm=sperm, split=split, keep=keep))

    def _rest(self, sf):
        """[n, D] what remains of each dimension after fixed and spatial factors."""
        return self.bounds[None, :] // (self._consts["fixed_t"][None, :] * np.prod(sf, axis=1))

    def _fill_spatial(self, sf, is_x, rng, rows, levels, fill, *, compiled: bool | None = None):
        """Choose the free spatial factors of ``levels`` for ``rows`` (in place).

        The random draws are made here; the per-row choice runs compiled
        (``coopt.mapper.kernel``) or, as the reference, in plain Python.
        """
        levels = tuple(levels)
        groups, _ = self._level_groups(levels)
        if not groups:
            return
        rows = np.asarray(rows, dtype=np.int64)
        orders = rng.permuted(np.tile(np.arange(len(groups)), (len(rows), 1)), axis=1)
        coins = rng.random((len(rows), len(groups))) < fill
        picks = rng.random((len(rows), len(groups)))
        self._fill_spatial_drawn(sf, is_x, rows, levels, orders, coins, picks, compiled=compiled)

    def _fill_spatial_drawn(self, sf, is_x, rows, levels: tuple, orders, coins, picks, *, compiled=None):
        """:meth:`_fill_spatial` with its random draws given ([rows, groups] each), so that rows drawn one
        at a time (neighbour moves) are filled in one call."""
        groups, garr = self._level_groups(levels)
        if _compiled(compiled):
            c = self._consts
            mk().fill_spatial_rows(sf, is_x, np.asarray(rows, dtype=np.int64), garr, orders, coins, picks,
                                   c["free_s"], c["fixed_t"], self.bounds, c["fan"], c["caps_s"])
            return
        self._fill_spatial_py(sf, is_x, np.asarray(rows).tolist(), groups, orders.tolist(), coins.tolist(),
                              picks.tolist())

    def _level_groups(self, levels: tuple):
        return self._groups.get(levels) or self._groups.setdefault(levels, self._make_groups(levels))

    def _make_groups(self, levels: tuple):
        """The (level, axis) pairs of ``levels`` that fan out, as a list and as an array."""
        groups = [(li, ax) for li in levels for ax in (0, 1)
                  if (self.fan_x[li] if ax == 0 else self.fan_y[li]) > 1]
        return groups, np.array(groups, dtype=np.int64).reshape(-1, 2)

    def _fill_spatial_py(self, sf, is_x, rows, groups, orders, coins, picks):
        """Plain-Python reference of the per-row spatial choice (the option lists are cached)."""
        D = self.D
        free_s = (self.fix_s == 0).tolist()
        fixed_t = self._consts["fixed_t"].tolist()
        bounds = self.bounds.tolist()
        fan = [(int(self.fan_x[li]), int(self.fan_y[li])) for li in range(self.L)]
        caps_s = np.minimum(self.cap_s, 1 << 40).tolist()
        sf_rows = sf[rows].tolist()
        x_rows = is_x[rows].tolist()
        for k, b in enumerate(rows):
            srow, xrow = sf_rows[k], x_rows[k]
            rest = []
            for d in range(D):
                used = 1
                for li in range(self.L):
                    used *= srow[li][d]
                rest.append(bounds[d] // (fixed_t[d] * used))
            for g in orders[k]:
                li, ax = groups[g]
                want_x = ax == 0
                dims = [d for d in range(D) if free_s[li][d] and xrow[li][d] == want_x]
                if not dims:
                    continue
                other = 1
                for d in range(D):
                    if xrow[li][d] == want_x and not free_s[li][d]:
                        other *= srow[li][d]
                cap = fan[li][ax] // max(1, other)
                opts, n_best = _spatial_options(cap, tuple(rest[d] * srow[li][d] for d in dims),
                                                tuple(caps_s[li][d] for d in dims))
                pool = n_best if coins[k][g] else len(opts)
                choice = opts[min(pool - 1, int(picks[k][g] * pool))]
                for d, f in zip(dims, choice):
                    rest[d] = rest[d] * srow[li][d] // f
                    srow[li][d] = f
            sf[b] = srow

    def _fill_temporal(self, tf, sf, rng, rows, *, compiled: bool | None = None):
        """Spread what remains of each dimension over its free temporal loops (in place)."""
        n = len(rows)
        sub_tf = np.broadcast_to(self._tf_reset, (n, self.L, self.D)).copy()
        rest = self._rest(sf[rows])
        if _compiled(compiled):
            k = self._packed
            mk().fill_temporal_drawn(rng, sub_tf, rest, k["t_slots"], k["nt_slots"], k["primes_desc"],
                                     k["nprimes_desc"], self.cap_t)
            tf[rows] = sub_tf
            return
        idx = np.arange(n)
        for d in range(self.D):
            slots = [li for li in range(self.L) if self.fix_t[li, d] == 0]
            if not slots:
                continue
            lv = np.array(slots)
            for p in rng.permutation(self._primes_desc[d]):
                has = rest[:, d] % p == 0
                room = sub_tf[:, lv, d] * p <= self.cap_t[lv, d]
                score = np.where(room, rng.random((n, len(slots))), -1.0)
                pick = np.argmax(score, axis=1)
                pick = np.where(score[idx, pick] < 0, len(slots) - 1, pick)
                rr = idx[has]
                sub_tf[rr, lv[pick[has]], d] *= p
                rest[has, d] //= p
        tf[rows] = sub_tf

    def _sample_keep(self, rng, n):
        keep = rng.random((n, self.L, self.P)) < 0.6
        keep = np.where(self.keep_fixed == 1, True, np.where(self.keep_fixed == -1, False, keep))
        return keep

    # ------------------------------------------------------------------ neighbours
    def neighbours(self, parents: MappingBatch, rng: np.random.Generator, per_parent: int) -> MappingBatch:
        """Mutations of each parent: factor moves, loop reorders, split changes, bypass toggles."""
        mb = parents.take(np.repeat(np.arange(len(parents)), per_parent))      # new arrays: changed in place
        kind = rng.choice(6, size=len(mb), p=[0.40, 0.12, 0.25, 0.05, 0.08, 0.10])
        if _compiled(None):
            mk().neighbour_moves(rng, kind, mb.tf, mb.sf, mb.tperm, mb.sperm, mb.split, mb.keep,
                                 *self._neighbour_consts())
        else:
            self._neighbour_moves_py(mb, kind, rng)
        return self.canonical(mb)

    def _neighbour_consts(self) -> tuple:
        """The layer's constants that ``kernel.neighbour_moves`` takes after the rows (computed once)."""
        if self._nconsts is None:
            k, c = self._packed, self._consts
            levels = self._spatial_levels
            groups = [self._level_groups((li,))[1] for li in levels]
            level_groups = np.zeros((len(levels), 2, 2), dtype=np.int64)
            for i, g in enumerate(groups):
                level_groups[i, :len(g)] = g
            self._nconsts = (k["movable"], k["slot_lv"], k["slot_sp"], k["nslots"], k["uprimes"], k["nuprimes"],
                             self._t_pinned, self._split_free, np.ascontiguousarray(self.keep_fixed, dtype=np.int64),
                             np.array(levels, dtype=np.int64), level_groups,
                             np.array([len(g) for g in groups], dtype=np.int64), self._sf_reset, c["free_s"],
                             c["fixed_t"], self.bounds, c["fan"], c["caps_s"],
                             self._tf_reset, k["t_slots"], k["nt_slots"],
                             k["primes_desc"], k["nprimes_desc"], self.cap_t)
        return self._nconsts

    def _neighbour_moves_py(self, mb: MappingBatch, kind: np.ndarray, rng) -> None:
        """The moves of ``neighbours``, the plain reference of ``kernel.neighbour_moves`` (in place)."""
        tf, sf, tperm, sperm, split, keep = mb.tf, mb.sf, mb.tperm, mb.sperm, mb.split, mb.keep
        rows = np.arange(len(mb))
        # 0: move one prime of one dimension between two free slots (1: two such moves)
        self._move_primes(tf, sf, rng, rows[kind == 0], 1)
        self._move_primes(tf, sf, rng, rows[kind == 1], 2)
        # 2: swap two loops of one level's temporal order (prefix/suffix stay put)
        r2 = rows[kind == 2]
        if len(r2):
            t2 = tperm[r2]
            live = (np.take_along_axis(tf[r2], t2, axis=2) > 1) & ~self._t_pinned[np.arange(self.L)[None, :, None], t2]
            self._swap_loops_py(tperm, rng, r2, live, live.sum(axis=2))
        # 3: move a spatial split by one (unless fixed)
        r3 = rows[kind == 3]
        if len(r3):
            li = rng.integers(0, self.L, size=len(r3))
            step = rng.choice([-1, 1], size=len(r3))
            free = self._split_free[li]
            split[r3[free], li[free]] = np.clip(split[r3[free], li[free]] + step[free], 0, self.D)
        # 4: toggle one free keep flag
        r4 = rows[kind == 4]
        if len(r4):
            li = rng.integers(0, self.L, size=len(r4))
            pv = rng.integers(0, self.P, size=len(r4))
            free = self.keep_fixed[li, pv] == 0
            keep[r4[free], li[free], pv[free]] ^= True
        # 5: redraw one level's spatial factors, then the temporal factors of every dimension
        r5 = rows[kind == 5]
        spatial_levels = self._spatial_levels
        if len(r5) and spatial_levels:
            is_x = np.zeros(tf.shape, dtype=bool)                   # read for the redrawn rows only
            is_x[r5] = np.argsort(sperm[r5], axis=2) < split[r5][:, :, None]
            # the draws of _fill_spatial row by row (same stream), then the rows filled level by level
            ngroups = np.array([len(self._level_groups((li,))[0]) for li in spatial_levels])   # >= 1 each
            which, orders, coins, picks = _draw_spatial_redraws_py(rng, len(r5), ngroups)
            levels = np.array(spatial_levels)[which]
            sf[r5, levels] = self._sf_reset[levels]
            for i, li in enumerate(spatial_levels):
                mine = np.flatnonzero(which == i)
                if len(mine):
                    g = ngroups[i]
                    self._fill_spatial_drawn(sf, is_x, r5[mine], (li,), orders[mine, :g], coins[mine, :g],
                                             picks[mine, :g], compiled=False)
            self._fill_temporal(tf, sf, rng, r5, compiled=False)

    def _swap_loops_py(self, tperm, rng, r2, live, n_live):
        """Kind-2 moves, the reference: per row a level, then two of its live loops swapped."""
        for k, r in enumerate(r2.tolist()):
            li = int(rng.integers(0, self.L))
            if n_live[k, li] < 2:
                continue
            x, y = rng.choice(np.flatnonzero(live[k, li]), size=2, replace=False)
            tperm[r, li, x], tperm[r, li, y] = tperm[r, li, y], tperm[r, li, x]

    def _move_primes(self, tf, sf, rng, rows, times):
        """Kind-0/1 moves, the reference: ``times`` rounds of moving one prime of a random dimension."""
        movable = self._movable
        if not movable or not len(rows):
            return
        for _ in range(times):
            dsel = rng.choice(movable, size=len(rows))
            for d in np.unique(dsel):
                rr = rows[dsel == d]
                slots = self.free_slots[d]
                lv, sp, primes = self._slot_arrays[d]
                p = primes[rng.integers(0, len(primes), size=len(rr))]
                rand = rng.random((len(rr), len(slots)))
                dst = rng.integers(0, len(slots) - 1, size=len(rr))
                vals = np.where(sp[None, :], sf[rr][:, lv, d], tf[rr][:, lv, d])    # [m,S]
                has = (vals % p[:, None] == 0) & (vals > 1)
                src = np.argmax(np.where(has, rand, -1), axis=1)
                ok = has[np.arange(len(rr)), src]
                dst = np.where(dst >= src, dst + 1, dst)
                rr, src, dst, p = rr[ok], src[ok], dst[ok], p[ok]
                for which, arr in ((True, sf), (False, tf)):
                    m = sp[src] == which
                    arr[rr[m], lv[src[m]], d] //= p[m]
                    m = sp[dst] == which
                    arr[rr[m], lv[dst[m]], d] *= p[m]

    # ------------------------------------------------------------------ checks and canonical form
    def leave_capacity_to_the_model(self, level_names) -> None:
        """No capacity or minimum-utilisation prefilter at these levels: under sparsity a formatted tensor
        occupies its compressed tile there, which the sparse model checks (``model/sparse/capacity.py``);
        the dense tile would reject mappings that fit compressed."""
        for li, lvl in enumerate(self.arch.storage):
            if lvl.name in level_names:
                self.capacity[li], self._util_floor[li] = np.inf, 0.0

    def prefilter(self, mb: MappingBatch, *, compiled: bool | None = None) -> Prefilter:
        """Fan-outs, factor caps and floors, least parallelism and buffer capacities: everything checkable
        without the model."""
        pre = self._prefilter(mb, compiled=compiled)
        if self._has_floors:
            floors = (mb.sf >= self.min_s).all(axis=(1, 2)) & (mb.tf >= self.min_t).all(axis=(1, 2))
            if self.cons.min_parallelism > 0:      # Uber's cumulative fan-out utilisation
                floors &= np.prod(mb.sf.reshape(len(mb), -1), axis=1) >= self.cons.min_parallelism * self._fan_total
            for li in self._partial_spatial:       # a partial spatial permutation (canonical forms may move it)
                lc = self.cons.levels[li]
                floors &= _order_ok(mb.sperm[:, li], mb.sf[:, li], lc.s_prefix, lc.s_suffix)
            pre = Prefilter(ok=pre.ok & floors, fanout=pre.fanout & floors, capacity=pre.capacity)
        return pre

    def _prefilter(self, mb: MappingBatch, *, compiled: bool | None = None) -> Prefilter:
        if _compiled(compiled):
            B = len(mb)
            fan_ok, cap_ok, util_ok = (np.zeros(B, dtype=bool) for _ in range(3))
            mk().prefilter_rows(mb.tf, mb.sf, mb.sperm, mb.split, mb.keep, self.pa.coef, self.fan_x, self.fan_y,
                           self.cap_s, self.cap_t, self.capacity, self._util_floor, fan_ok, cap_ok, util_ok)
            return Prefilter(ok=fan_ok & cap_ok & util_ok, fanout=fan_ok, capacity=cap_ok)
        is_x = np.argsort(mb.sperm, axis=2) < mb.split[:, :, None]
        x = np.prod(np.where(is_x, mb.sf, 1), axis=2)
        y = np.prod(np.where(is_x, 1, mb.sf), axis=2)
        fan_ok = ((x <= self.fan_x) & (y <= self.fan_y)).all(axis=1)
        caps_ok = ((mb.sf <= self.cap_s) & (mb.tf <= self.cap_t)).all(axis=(1, 2))
        ext = np.cumprod(mb.sf * mb.tf, axis=1)
        size = self.pa.sizes(ext).astype(np.float64)                        # [B,L,P]
        used = np.where(mb.keep, size, 0).sum(axis=2)
        cap_ok = (used <= self.capacity).all(axis=1)
        util_ok = (used >= np.where(np.isfinite(self.capacity), self.capacity, 0) * self.min_util).all(axis=1)
        return Prefilter(ok=fan_ok & caps_ok & cap_ok & util_ok, fanout=fan_ok & caps_ok, capacity=cap_ok)

    def canonical(self, mb: MappingBatch, *, compiled: bool | None = None) -> MappingBatch:
        """Trivial loops last (in dimension order): Timeloop ignores them, so this changes nothing; then the
        constrained temporal orders imposed again (a loop of a permutation's prefix that was trivial, and so
        sorted last, may have gained a factor since)."""
        out = self._canonical(mb, compiled=compiled)
        for li, lc in enumerate(self.cons.levels):
            if lc.t_prefix or lc.t_suffix:
                out.tperm[:, li] = self._pinned_order(out.tf[:, li], out.tperm[:, li], lc.t_prefix, lc.t_suffix)
        return out

    def _pinned_order(self, tf, tperm, prefix, suffix):
        """[B, D] orders: non-trivial prefix loops innermost in prefix order, the other non-trivial loops
        as they were, the non-trivial suffix loops outermost, trivial loops last in dimension order."""
        D = self.D
        key = np.argsort(tperm, axis=1).astype(np.float64)          # a dimension's current position
        for rank, d in enumerate(prefix):
            key[:, d] = -2 * D + rank
        for rank, d in enumerate(suffix):
            key[:, d] = 2 * D + rank
        key = np.where(tf > 1, key, 4 * D + np.arange(D)[None, :])
        return np.argsort(key, axis=1, kind="stable")

    def _canonical(self, mb: MappingBatch, *, compiled: bool | None = None) -> MappingBatch:
        if _compiled(compiled):
            tperm, sperm, split = mk().canonical_rows(mb.tf, mb.tperm, mb.sf, mb.sperm, mb.split)
            for li, lc in enumerate(self.cons.levels):
                if lc.s_order is not None:
                    sperm[:, li] = lc.s_order
                    split[:, li] = mb.split[:, li]
            return MappingBatch(tf=mb.tf, tperm=tperm, sf=mb.sf, sperm=sperm, split=split, keep=mb.keep)
        D = self.D
        pos = np.arange(D)[None, None, :]
        tn = np.take_along_axis(mb.tf, mb.tperm, axis=2)
        key = np.where(tn > 1, pos, D + mb.tperm)
        tperm = np.take_along_axis(mb.tperm, np.argsort(key, axis=2, kind="stable"), axis=2)
        sn = np.take_along_axis(mb.sf, mb.sperm, axis=2)
        is_y = pos >= mb.split[:, :, None]
        skey = np.where(sn > 1, pos + D * is_y, 2 * D + mb.sperm)
        order = np.argsort(skey, axis=2, kind="stable")
        sperm = np.take_along_axis(mb.sperm, order, axis=2)
        split = ((sn > 1) & ~is_y).sum(axis=2)
        # keep the constrained full orders and splits exactly as given
        for li, lc in enumerate(self.cons.levels):
            if lc.s_order is not None:
                sperm[:, li] = lc.s_order
                split[:, li] = mb.split[:, li]
        return MappingBatch(tf=mb.tf, tperm=tperm, sf=mb.sf, sperm=sperm, split=split, keep=mb.keep)

    def keys(self, mb: MappingBatch) -> list[bytes]:
        """Hashable identity of each (canonical) row: factors as 32-bit, orders, splits and keep flags as
        8-bit numbers (factors divide dimensions of at most 2^20, orders and splits count dimensions), so
        a key is a quarter of the row's int64 bytes and hashes that much faster."""
        B = len(mb)
        parts = [mb.tf.astype(np.int32).reshape(B, -1).view(np.uint8),
                 mb.sf.astype(np.int32).reshape(B, -1).view(np.uint8),
                 mb.tperm.astype(np.uint8).reshape(B, -1), mb.sperm.astype(np.uint8).reshape(B, -1),
                 mb.split.astype(np.uint8), mb.keep.reshape(B, -1).astype(np.uint8)]
        flat = np.concatenate(parts, axis=1)
        return flat.view(np.dtype((np.void, flat.shape[1]))).ravel().tolist()


def _order_ok(perm: np.ndarray, factors: np.ndarray, prefix, suffix) -> np.ndarray:
    """[B] rows whose non-trivial loops (``perm`` innermost first) begin with the prefix's non-trivial
    loops and end with the suffix's, each in the given order."""
    live = factors > 1                                                    # [B, D]
    pos = np.argsort(perm, axis=1)                                        # position of each dimension
    rank = (live[:, None, :] & (pos[:, None, :] < pos[:, :, None])).sum(axis=2)   # among live loops
    ok = np.ones(len(perm), dtype=bool)
    n_live = live.sum(axis=1)
    for dims, from_end in ((list(prefix), False), (list(suffix), True)):
        if not dims:
            continue
        lv = live[:, dims]                                                # [B, k] in the given order
        idx = np.cumsum(lv, axis=1) - 1                                   # wanted rank among them
        if from_end:
            idx = idx + (n_live - lv.sum(axis=1))[:, None]
        ok &= np.where(lv, rank[:, dims] == idx, True).all(axis=1)
    return ok


@lru_cache(maxsize=16384)
def _spatial_options(cap: int, rests: tuple, caps: tuple) -> tuple[list, int]:
    """Spatial factor tuples (one divisor of each rest, within caps) whose product fits ``cap``,
    largest product first, and how many share the largest product."""
    opts = [()]
    for r, c in zip(rests, caps):
        divs = [f for f in range(1, min(r, c, cap) + 1) if r % f == 0]
        opts = [o + (f,) for o in opts for f in divs if int(np.prod(o + (f,))) <= cap]
    prods = [int(np.prod(o)) for o in opts]
    order = sorted(range(len(opts)), key=lambda i: -prods[i])
    opts = [opts[i] for i in order]
    best = prods[order[0]]
    return opts, sum(1 for i in order if prods[i] == best)


def _draw_spatial_redraws_py(rng, n: int, ngroups: np.ndarray):
    """Kind-5 neighbour moves' draws, the reference of ``kernel.draw_spatial_redraws``."""
    gmax = max(1, int(ngroups.max()))
    which = np.empty(n, dtype=np.int64)
    orders = np.zeros((n, gmax), dtype=np.int64)
    coins = np.zeros((n, gmax), dtype=bool)
    picks = np.zeros((n, gmax))
    for k in range(n):
        i = int(rng.integers(0, len(ngroups)))
        g = int(ngroups[i])
        which[k] = i
        orders[k, :g] = rng.permutation(g)
        coins[k, :g] = rng.random(g) < 0.75
        picks[k, :g] = rng.random(g)
    return which, orders, coins, picks


def _pack_per_dimension(t_slots, primes_desc, movable, slot_arrays) -> dict[str, np.ndarray]:
    """Per-dimension lists as padded arrays (with their lengths) for the compiled neighbour moves."""
    def pad(rows, dtype=np.int64):
        out = np.zeros((len(rows), max([1] + [len(r) for r in rows])), dtype=dtype)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out, np.array([len(r) for r in rows], dtype=np.int64)
    t, nt = pad(t_slots)
    pr, npr = pad(primes_desc)
    lv, ns = pad([a[0] for a in slot_arrays])
    sp, _ = pad([a[1] for a in slot_arrays], dtype=np.bool_)
    up, nup = pad([a[2] for a in slot_arrays])
    return {"t_slots": t, "nt_slots": nt, "primes_desc": pr, "nprimes_desc": npr,
            "movable": np.array(movable, dtype=np.int64), "slot_lv": lv, "slot_sp": sp, "nslots": ns,
            "uprimes": up, "nuprimes": nup}
