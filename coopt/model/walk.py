"""Timeloop's nest analysis, walked literally: the exact (slow) path.

This follows timeloop/src/loop-analysis/nest-analysis.cpp step for step for
perfectly factorised, unskewed mappings: a recursive walk of the loop nest
that computes each storage level's tile (a box in every data space) per
iteration, subtracts the previous one (with Timeloop's "same stride" rule),
extrapolates uniform temporal iterations (#0, #1 x (n-1)) and spatial
instances (instance 0 translated), finds multicast by comparing the deltas
sent to sibling instances and inter-PE link transfers by comparing them with
the neighbours' previous deltas.  Point sets are lists of boxes that are
subtracted and compared exactly as Timeloop's MultiAAHR does.

The vectorised model (``coopt.model.nest``) computes the same quantities in
closed form; this walk is its oracle in the tests and its fallback for the
rare mappings whose link transfers the closed form does not cover.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coopt.arch.spec import Architecture
from coopt.model.mapping import Mapping
from coopt.workload.problem import Problem

# ----------------------------------------------------------------------------- boxes


class Box:
    """Axis-aligned hyper-rectangle [lo, hi) (Timeloop's AAHR)."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo, hi):
        self.lo = tuple(lo)
        self.hi = tuple(hi)

    def size(self) -> int:
        s = 1
        for a, b in zip(self.lo, self.hi):
            s *= max(0, b - a)
        return s

    def empty(self) -> bool:
        return any(b <= a for a, b in zip(self.lo, self.hi))

    def __eq__(self, other):
        return self.lo == other.lo and self.hi == other.hi

    def __hash__(self):
        return hash((self.lo, self.hi))

    def translated(self, t):
        return Box([a + x for a, x in zip(self.lo, t)], [b + x for b, x in zip(self.hi, t)])

    def multi_subtract(self, b: "Box") -> list["Box"]:
        """Slices of self outside b, in Timeloop's order (MultiSubtract)."""
        for r in range(len(self.lo)):
            if self.hi[r] <= b.lo[r] or b.hi[r] <= self.lo[r]:
                return [self]
        out = []
        mid_lo, mid_hi = list(self.lo), list(self.hi)
        for r in range(len(self.lo)):
            if mid_lo[r] < b.lo[r]:
                hi = list(mid_hi)
                hi[r] = b.lo[r]
                out.append(Box(mid_lo, hi))
                mid_lo[r] = b.lo[r]
            if b.hi[r] < mid_hi[r]:
                lo = list(mid_lo)
                lo[r] = b.hi[r]
                out.append(Box(lo, mid_hi))
                mid_hi[r] = b.hi[r]
        return out


class PointSet:
    """A union of disjoint boxes (Timeloop's MultiAAHR)."""

    __slots__ = ("boxes",)

    def __init__(self, boxes=()):
        self.boxes = [b for b in boxes if not b.empty()]

    def size(self) -> int:
        return sum(b.size() for b in self.boxes)

    def empty(self) -> bool:
        return not self.boxes

    def subtract(self, other: "PointSet") -> "PointSet":
        cur = list(self.boxes)
        for b in other.boxes:
            nxt = []
            for a in cur:
                nxt.extend(a.multi_subtract(b))
            cur = nxt
        return PointSet(cur)

    def same_as(self, other: "PointSet") -> bool:
        """Timeloop's superficial equality: the same boxes, in any order."""
        if len(self.boxes) != len(other.boxes):
            return False
        return all(any(a == b for b in other.boxes) for a in self.boxes)

    def translated(self, t) -> "PointSet":
        return PointSet([b.translated(t) for b in self.boxes])

    def centroid(self):
        total = 0
        acc = None
        for b in self.boxes:
            s = b.size()
            c = [(lo + hi - 1) / 2.0 for lo, hi in zip(b.lo, b.hi)]
            acc = [x * s for x in c] if acc is None else [a + x * s for a, x in zip(acc, c)]
            total += s
        return None if total == 0 else [a / total for a in acc]

    def translation_to(self, other: "PointSet"):
        """Rounded centroid difference self -> other; None when self is empty."""
        a = self.centroid()
        if a is None:
            return None
        b = other.centroid()
        if b is None:
            return tuple(0 for _ in a)
        return tuple(int(round(y - x)) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- nest


@dataclass
class Loop:
    dim: int
    end: int
    kind: str       # "T", "X" or "Y"
    level: int      # storage level owning the loop

    @property
    def spatial(self) -> bool:
        return self.kind != "T"


def build_nest(mapping: Mapping, arch: Architecture) -> tuple[list[Loop], list[int]]:
    """Loops innermost first and the index of each storage level's outermost loop.

    As Timeloop's parser: per level, its non-trivial spatial loops (X first),
    then its non-trivial temporal loops, or one trivial temporal loop if none.
    """
    loops: list[Loop] = []
    boundaries: list[int] = []
    ndims = len(mapping.dims)
    for li, lvl in enumerate(mapping.levels):
        fx, fy = arch.fanout(li)
        if fx * fy > 1:
            for pos, d in enumerate(lvl.spatial_permutation):
                if lvl.spatial[d] > 1:
                    loops.append(Loop(d, lvl.spatial[d], "X" if pos < lvl.split else "Y", li))
        added = 0
        for d in lvl.permutation:
            if lvl.temporal[d] > 1:
                loops.append(Loop(d, lvl.temporal[d], "T", li))
                added += 1
        if not added:
            loops.append(Loop(ndims - 1, 1, "T", li))
        boundaries.append(len(loops) - 1)
    return loops, boundaries


@dataclass
class LevelStats:
    """What the nest analysis hands to Timeloop's tile collapse, for one storage level."""

    size: list[int]                      # tile size per data space
    access_stats: list[dict]             # per data space {(multicast, scatter): accesses}
    link_transfers: list[float]
    fanout: int                          # logical fan-out of the level's innermost kept loop
    replication: int                     # utilised instances of this level
    master_spatial: bool                 # innermost loop of the level is a master spatial loop
    master_size: list[int]               # tile size at that loop (partition fraction denominator)


class _State:
    def __init__(self, nds):
        self.last = [PointSet() for _ in range(nds)]
        self.last_translation = [None] * nds
        self.max_size = [0] * nds
        self.access = [dict() for _ in range(nds)]
        self.link = [0.0] * nds
        self.prev_spatial = None


class NestWalk:
    """One mapping's nest analysis, exactly as Timeloop's extrapolating walk computes it."""

    def __init__(self, problem: Problem, arch: Architecture, mapping: Mapping):
        self.problem = problem
        self.arch = arch
        self.loops, self.boundaries = build_nest(mapping, arch)
        self.nds = len(problem.dataspaces)
        n = len(self.loops)
        self.is_boundary = [False] * n
        self.level_of = [0] * n
        start = 0
        for li, b in enumerate(self.boundaries):
            self.is_boundary[b] = True
            for l in range(start, b + 1):
                self.level_of[l] = li
            start = b + 1
        # master spatial loops and fan-outs
        self.master = [False] * n
        self.fanout_x = [1] * n
        self.fanout_y = [1] * n
        prev_spatial = False
        for l in reversed(range(n)):
            lp = self.loops[l]
            self.master[l] = lp.spatial and not prev_spatial
            prev_spatial = lp.spatial
        for l in range(n):
            if self.master[l]:
                k = l
                while k >= 0 and self.loops[k].spatial:
                    if self.loops[k].kind == "X":
                        self.fanout_x[l] *= self.loops[k].end
                    else:
                        self.fanout_y[l] *= self.loops[k].end
                    k -= 1
        self.spatial_above = [1] * n
        prod_ = 1
        for l in reversed(range(n)):
            self.spatial_above[l] = prod_
            if self.loops[l].spatial:
                prod_ *= self.loops[l].end
        # vector strides and molds
        ndims = len(problem.dims)
        scale = [1] * ndims
        self.vstride = []
        self.mold_high = []
        for lp in self.loops:
            self.vstride.append(list(scale))
            scale[lp.dim] *= lp.end
            self.mold_high.append([s - 1 for s in scale])
        # projections: per data space, per coordinate: list of (coef, dim index)
        dims = problem.dims
        self.proj = [[[(problem.coef(c), dims.index(d)) for c, d in coord] for coord in ds.projection]
                     for ds in problem.dataspaces]
        # physical fan-outs for link-transfer geometry
        self.phys = [arch.fanout(li) for li in range(len(arch.storage))]
        self.transform = [0] * ndims
        self.indices = [0] * n
        self.epochs = 1
        self.states = [_State(self.nds) for _ in range(n)]
        self.compute_accesses = 0.0
        self._run()

    # -- helpers -------------------------------------------------------------
    def _box(self, pv, low, high):
        lo, hi = [], []
        for coord in self.proj[pv]:
            lo.append(sum(c * low[d] for c, d in coord))
            hi.append(sum(c * high[d] for c, d in coord) + 1)
        return Box(lo, hi)

    def _working_set(self, level):
        low = list(self.transform)
        high = [t + m for t, m in zip(self.transform, self.mold_high[level])]
        return [PointSet([self._box(pv, low, high)]) for pv in range(self.nds)]

    # -- the walk --------------------------------------------------------------
    def _run(self):
        self._deltas(len(self.loops) - 1)

    def _deltas(self, level):
        lp = self.loops[level]
        st = self.states[level]
        if lp.spatial:
            self._spatial(level)
        else:
            self._temporal(level)
        ws = self._working_set(level)
        if self.is_boundary[level] or self.master[level]:
            for pv in range(self.nds):
                st.max_size[pv] = max(st.max_size[pv], ws[pv].size())
        delta = []
        for pv in range(self.nds):
            cur = ws[pv]
            prev = st.last[pv]
            tr = prev.translation_to(cur) if not prev.empty() else None
            ptr = st.last_translation[pv]
            if tr is None or not any(tr):
                d = cur.subtract(prev)
            elif ptr is None:
                d = cur.subtract(prev)
                st.last_translation[pv] = tr
            elif tr == ptr:
                d = cur.subtract(prev)
            else:
                d = cur
                st.last_translation[pv] = None
            st.last[pv] = cur
            delta.append(d)
        return delta

    def _accumulate(self, st, pv, key, accesses):
        st.access[pv][key] = st.access[pv].get(key, 0.0) + accesses

    def _temporal(self, level):
        lp = self.loops[level]
        st = self.states[level]
        n = lp.end
        if level == 0:
            self.compute_accesses += n * self.epochs
            for pv in range(self.nds):
                self._accumulate(st, pv, (1, 1), n * self.epochs)
            return
        dim = lp.dim
        scale = self.vstride[level][dim]
        saved = self.transform[dim]
        sizes = []
        # iteration #0
        d0 = self._deltas(level - 1)
        sizes.append(([x.size() for x in d0], 1))
        self.transform[dim] += scale
        if n >= 2:
            saved_epochs = self.epochs
            virtual = n - 1
            self.epochs *= virtual
            d1 = self._deltas(level - 1)
            self.epochs = saved_epochs
            sizes.append(([x.size() for x in d1], virtual))
            self.transform[dim] += scale * virtual
        self.transform[dim] = saved
        if self.is_boundary[level - 1]:
            for pv in range(self.nds):
                total = sum(s[pv] * w for s, w in sizes)
                self._accumulate(st, pv, (1, 1), total * self.epochs)

    def _spatial(self, level):
        """ComputeSpatialWorkingSet: deltas of every child instance, multicast and links."""
        st = self.states[level]
        deltas = self._fill_spatial(level)   # {linear index: [PointSet per pv]}
        nds = self.nds
        arch_level = self.level_of[level]
        px, py = self.phys[arch_level]
        h_size = max(px, self.fanout_x[level])
        v_size = max(py, self.fanout_y[level])
        without = self._multicast(deltas, {pv: set(deltas) for pv in range(nds)})
        # link transfers (neighbour's previous delta equals mine)
        prev = st.prev_spatial
        link_counts = [0.0] * nds
        unaccounted = {pv: set(deltas) for pv in range(nds)}
        if prev is not None:
            reuse = {}
            for i in deltas:
                h, v = i % h_size, i // h_size
                neigh = []
                if v_size > 1:
                    if v >= 1:
                        neigh.append((v - 1) * h_size + h)
                    if v < v_size - 1:
                        neigh.append((v + 1) * h_size + h)
                if h_size > 1:
                    if h >= 1:
                        neigh.append(v * h_size + h - 1)
                    if h < h_size - 1:
                        neigh.append(v * h_size + h + 1)
                for pv in range(nds):
                    cur = deltas[i][pv]
                    if cur.empty():
                        continue
                    for j in neigh:
                        if j in prev and cur.same_as(prev[j][pv]):
                            reuse[(i, pv)] = True
                            break
            for (i, pv) in reuse:
                link_counts[pv] += deltas[i][pv].size() * self.epochs
                unaccounted[pv].discard(i)
        with_links = self._multicast(deltas, unaccounted)
        for pv in range(nds):
            tot_without = sum(without[pv].values())
            tot_with = sum(with_links[pv].values())
            if tot_with < tot_without:
                st.link[pv] += link_counts[pv]
                chosen_pv = with_links[pv]
            else:
                chosen_pv = without[pv]
            for key, acc in chosen_pv.items():
                self._accumulate(st, pv, key, acc)
        st.prev_spatial = deltas

    def _multicast(self, deltas, unaccounted):
        """Group equal deltas among the still-unaccounted instances: {(m, scatter): accesses}."""
        out = []
        order = list(deltas)
        for pv in range(self.nds):
            remaining = set(unaccounted[pv])
            groups: dict[int, list] = {}
            for idx, i in enumerate(order):
                if i not in remaining:
                    continue
                remaining.discard(i)
                count = 1
                for j in order[idx + 1:]:
                    if j in remaining and deltas[i][pv].same_as(deltas[j][pv]):
                        remaining.discard(j)
                        count += 1
                size = deltas[i][pv].size()
                if size > 0:
                    g = groups.setdefault(count, [0.0, 0])
                    g[0] += size * self.epochs
                    g[1] += 1
            out.append({(m, s): acc for m, (acc, s) in groups.items()})
        return out

    def _fill_spatial(self, level):
        """Deltas for every instance of a spatial run: instance 0 walked, the rest translated."""
        run = []
        k = level
        while k >= 0 and self.loops[k].spatial:
            run.append(k)
            k -= 1
        below = k            # the temporal loop (or -1 for compute) under the run
        # instance 0 (a level-0 run has no temporal child: each instance touches one point)
        base = None if below < 0 else self._deltas(below)
        deltas = {}
        # linear index: outermost loop of the run most significant
        ends = [self.loops[l].end for l in run]
        total = int(np.prod(ends))
        for lin in range(total):
            rem = lin
            idx = []
            for e in reversed(ends):
                idx.append(rem % e)
                rem //= e
            idx = list(reversed(idx))    # aligned with run (outermost first)
            offset = [0] * len(self.transform)
            for l, i in zip(run, idx):
                offset[self.loops[l].dim] += i * self.vstride[l][self.loops[l].dim]
            if below < 0:
                pts = []
                for pv in range(self.nds):
                    p = [t + o for t, o in zip(self.transform, offset)]
                    pts.append(PointSet([self._box(pv, p, p)]))
                deltas[lin] = pts
            else:
                tr = []
                for pv in range(self.nds):
                    t = []
                    for coord in self.proj[pv]:
                        t.append(sum(c * offset[d] for c, d in coord))
                    tr.append(t)
                deltas[lin] = [base[pv].translated(tr[pv]) for pv in range(self.nds)]
        if below < 0:
            self.compute_accesses += self.epochs   # per instance (Timeloop averages over them)
        return deltas

    # -- collection ------------------------------------------------------------
    def level_stats(self) -> list[LevelStats]:
        out = []
        start = 0
        for b in self.boundaries:
            block = list(range(start, b + 1))
            valid = [l for l in block if not self.loops[l].spatial or self.master[l]]
            inner = valid[0]
            st_in = self.states[inner]
            out.append(LevelStats(
                size=list(self.states[b].max_size),
                access_stats=[dict(st_in.access[pv]) for pv in range(self.nds)],
                link_transfers=list(st_in.link),
                fanout=self.fanout_x[inner] * self.fanout_y[inner] if self.master[inner] else 1,
                replication=self.spatial_above[b],
                master_spatial=self.master[inner],
                master_size=list(st_in.max_size) if self.master[inner] else [0] * self.nds,
            ))
            start = b + 1
        return out

    def compute_per_instance(self) -> float:
        """Temporal iterations one MAC performs (Timeloop's compute_info.accesses)."""
        return self.compute_accesses
