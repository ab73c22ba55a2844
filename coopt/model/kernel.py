"""The model compiled with numba, one mapping at a time: the innermost hot loop.

Same arithmetic, in the same order, as the numpy reference of ``coopt.model.nest``,
``collapse`` and ``cost`` (which stay the readable form): per mapping the set-up
(``prep_row``), the walk totals (``walk_row``: per level and data space the innermost
loop that moves the child tile, every outer step classed same / zero / reset, and, where
a step could coincide with an offset between PEs, the exact link transfers of
``link_totals``), the collapse (``collapse_row``) and the costs (``cost_row``).  The
``*_rows`` / ``walk_totals`` loops fill batch arrays for ``nest_stats``; ``evaluate_rows``
runs all of it per mapping in scratch arrays for the mapper.  The row functions are
inlined (``inline="always"``): calls with dozens of array arguments cost more than the
work otherwise.  Tests hold every form equal to the numpy one bit for bit and to the
literal walk.  Keep all compiled code in this one file: numba's cache is invalidated by
the file a function lives in, not by the files of the functions it calls.
"""
from __future__ import annotations

import importlib.abc
import sys

import numpy as np

from coopt.model import jit


_UNNEEDED = ("scipy", "cffi")


class _Unneeded(importlib.abc.MetaPathFinder):
    """Makes importing ``_UNNEEDED`` packages fail while numba loads (see ``_load_numba``)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _UNNEEDED:
            raise ImportError(f"{name} is not needed by coopt's kernels")
        return None


def _load_numba():
    """Import numba and the parts it loads on first use, without scipy and cffi.

    numba imports ``scipy.linalg`` (to learn whether ``np.dot`` & co. can be compiled) and
    ``cffi`` (to call C through it) when it loads its array support and typing registries;
    that costs 0.2-0.5 s of every process's start (scipy clones numpy's namespace), and
    coopt's kernels use neither.  So those numba modules are imported while the two cannot
    be; they import normally afterwards (numba checks again when a function that needs BLAS is
    compiled).  Where they are already loaded this changes nothing.
    """
    blocker = None
    if not any(name in sys.modules for name in _UNNEEDED):
        blocker = _Unneeded()
        sys.meta_path.insert(0, blocker)
    try:
        import numba.core.typing.cffi_utils  # noqa: F401
        import numba.np.arraymath  # noqa: F401
    finally:
        if blocker is not None:
            sys.meta_path.remove(blocker)


COMPILE_NOTICE = ("coopt: compiling the model's kernels for this machine (once after installing: about a "
                  "minute; later runs load them from numba's cache)")


def _say_when_compiling() -> None:
    """numba compiles only what its cache lacks (the first run after installing, ~1 minute): say so once,
    on stderr, when that starts (numba's event API announces each compilation)."""
    from numba.core import event

    class Notice(event.Listener):
        said = False

        def on_start(self, ev):
            if not Notice.said:
                Notice.said = True
                print(COMPILE_NOTICE, file=sys.stderr, flush=True)

        def on_end(self, ev):
            pass
    event.register("numba:compile", Notice())


try:
    _load_numba()
    import numba
    from numba import njit
    HAVE_NUMBA = True
    if jit.cache_dir():                      # a read-only install: cache under the user's home
        numba.config.CACHE_DIR = jit.cache_dir()
    _say_when_compiling()
except ImportError:  # pragma: no cover - numba is a dependency; keep the model usable without it
    HAVE_NUMBA = False

    def njit(*args, **kwargs):
        def wrap(f):
            return f
        return wrap if not args or not callable(args[0]) else args[0]


@njit(cache=True, inline="always")
def _decode(code, half, radix, C, out):
    x = code
    for c in range(C):
        d = (x + half) % radix - half
        out[c] = d
        x = (x - d) // radix


@njit(cache=True, inline="always")
def _representable(T, nfeed, step, count, idle, C):
    """Could move T be the offset between two instances (conservative, as in nest._maybe_link)?"""
    nonzero = False
    for c in range(C):
        t = T[c]
        if t != 0:
            nonzero = True
        if nfeed[c] == 0:
            if t != 0:
                return False
        elif nfeed[c] == 1:
            s = step[c]
            if t % s != 0:
                return False
            if abs(t) // abs(s) >= count[c]:
                return False
    return nonzero or idle


@njit(cache=True, inline="always")
def _distinct_sums(steps, counts, k, buf, mark):
    """How many distinct values sum_q i_q * steps[q] takes, 0 <= i_q < counts[q] (q < k).

    The values lie in a range no wider than the data space: marked in ``mark`` (all zero
    before and after), or sorted where the range is wider than ``mark``.
    """
    n = 1
    buf[0] = 0
    lo = 0
    hi = 0
    for q in range(k):
        m = n
        for i in range(1, counts[q]):
            for r in range(m):
                buf[n] = buf[r] + i * steps[q]
                n += 1
        reach = (counts[q] - 1) * steps[q]
        if reach < 0:
            lo += reach
        else:
            hi += reach
    if hi - lo < mark.shape[0]:
        distinct = 0
        for r in range(n):
            if mark[buf[r] - lo] == 0:
                mark[buf[r] - lo] = 1
                distinct += 1
        for r in range(n):
            mark[buf[r] - lo] = 0
        return distinct
    vals = buf[:n]
    vals.sort()                                  # in place: no allocation per call
    distinct = 1
    for r in range(1, n):
        if vals[r] != vals[r - 1]:
            distinct += 1
    return distinct


@njit(cache=True, inline="always")
def _groups(li, p, sf, prev, nzd, nzc, nnz, steps, counts, buf, mark):
    """Multicast groups: distinct offsets of the level's instances in data space p."""
    G = 1.0
    for c in range(nnz.shape[1]):
        k = 0
        for kk in range(nnz[p, c]):
            d = nzd[p, c, kk]
            if sf[li, d] > 1:
                steps[k] = nzc[p, c, kk] * prev[li, d]
                counts[k] = sf[li, d]
                k += 1
        if k == 1:
            G *= counts[0]
        elif k > 1:
            G *= _distinct_sums(steps, counts, k, buf, mark)
    return G


def sparse_coef(coef: np.ndarray):
    """The non-zero terms of each data-space coordinate: dims [P,C,K], coefficients [P,C,K], counts [P,C].

    A coordinate depends on one or two of the D dimensions, so the spans below loop over those only.
    """
    P, C, D = coef.shape
    nnz = (coef != 0).sum(axis=2).astype(np.int64)
    K = max(1, int(nnz.max()))
    dims = np.zeros((P, C, K), dtype=np.int64)
    vals = np.zeros((P, C, K), dtype=np.int64)
    for p in range(P):
        for c in range(C):
            nz = np.nonzero(coef[p, c])[0]
            dims[p, c, :len(nz)] = nz
            vals[p, c, :len(nz)] = coef[p, c, nz]
    return dims, vals, nnz


@njit(cache=True, inline="always")
def _span(nzd, nzc, nnz, p, c, extent, li):
    """Points along coordinate c of data space p of a dense box (extent[li, d] per dimension)."""
    span = 1
    for k in range(nnz[p, c]):
        span += nzc[p, c, k] * (extent[li, nzd[p, c, k]] - 1)
    return span


@njit(cache=True, inline="always")
def master_row(mid, fan, nzd, nzc, nnz, msize):
    """Tile size at each fanning-out level's spatial loops (Timeloop's partition denominator), else 0."""
    L = mid.shape[0]
    P, C = nnz.shape
    for li in range(L):
        for p in range(P):
            size = 0
            if fan[li] > 1:
                size = 1
                for c in range(C):
                    size *= _span(nzd, nzc, nnz, p, c, mid, li)
            msize[li, p] = size


@njit(cache=True)
def master_sizes(mid, fan, nzd, nzc, nnz, msize):
    """``master_row`` over a batch."""
    for b in range(mid.shape[0]):
        master_row(mid[b], fan[b], nzd, nzc, nnz, msize[b])


@njit(cache=True, inline="always")
def _layout(li, p, sn, sdim, svs, coef, split, phys, offsets, pairs):
    """Offsets of the instances of level li's fan-out in data space p and every (instance, mesh
    neighbour) pair, as Timeloop lays them out (``nest._instances``); returns (instances, pairs)."""
    D = sn.shape[1]
    C = coef.shape[1]
    F = 1
    fx = 1
    fy = 1
    for pos in range(D):
        if sn[li, pos] > 1:
            F *= sn[li, pos]
            if pos < split:
                fx *= sn[li, pos]
            else:
                fy *= sn[li, pos]
    h_size = max(phys[li, 0], fx)
    v_size = max(phys[li, 1], fy)
    for lin in range(F):
        for c in range(C):
            offsets[lin, c] = 0
        rem = lin
        for pos in range(D):                     # innermost loop is least significant
            e = sn[li, pos]
            if e > 1:
                r = rem % e
                d = sdim[li, pos]
                for c in range(C):
                    offsets[lin, c] += r * (coef[p, c, d] * svs[li, pos])
                rem //= e
    n = 0
    for i in range(F):
        h = i % h_size
        v = i // h_size
        for j in ((v - 1) * h_size + h if v >= 1 else F, (v + 1) * h_size + h if v < v_size - 1 else F,
                  v * h_size + h - 1 if h >= 1 else F, v * h_size + h + 1 if h < h_size - 1 else F):
            if j < F:
                pairs[0, n] = i
                pairs[1, n] = j
                n += 1
    return F, n


@njit(cache=True, inline="always")
def _link_profile(move, F, npairs, offsets, pairs, inst, radix):
    """(instances that find their data at a neighbour, distinct offsets among the others)
    for one step's move (``nest._link_profile``)."""
    C = offsets.shape[1]
    for i in range(F):
        inst[0, i] = 0
    for e in range(npairs):
        i = pairs[0, e]
        j = pairs[1, e]
        same = True
        for c in range(C):
            if offsets[j, c] - offsets[i, c] != move[c]:
                same = False
                break
        if same:
            inst[0, i] = 1
    linked = 0
    n = 0
    for i in range(F):
        if inst[0, i]:
            linked += 1
        else:
            code = 0
            for c in range(C - 1, -1, -1):
                code = code * radix + offsets[i, c]
            inst[1, n] = code
            n += 1
    rest = inst[1, :n]
    rest.sort()
    distinct = 1 if n else 0
    for r in range(1, n):
        if rest[r] != rest[r - 1]:
            distinct += 1
    return linked, distinct


@njit(cache=True, inline="always")
def _step(acc, weight, delta, G, F, k, g2):
    """Timeloop takes links at a step only when they lower the parent's accesses (``nest._step``;
    k < 0: no link profile at this step)."""
    if k > 0 and g2 < G:
        acc[0] += weight * g2 * delta
        acc[1] += weight * k * delta
        acc[2] += weight * (F - k) * delta
    else:
        acc[0] += weight * G * delta
        acc[2] += weight * F * delta


@njit(cache=True)
def link_totals(li, p, a, s0, n_live, T, w, G, F, child, ov, half, radix, sn, sdim, svs, coef, split, phys,
                scratch):
    """Exact (total, link, weighted) of level li and data space p when links are possible: the
    replay of the closed form's step classes (``nest._links_compute`` / ``nest._links_tiles``)."""
    offsets, pairs, inst, acc, Tv = scratch
    C = coef.shape[1]
    Fi, npairs = _layout(li, p, sn, sdim, svs, coef, split, phys, offsets, pairs)
    if li == 0:                                  # one operand per MAC per step
        acc[0] = G * 1.0
        acc[1] = 0.0
        acc[2] = F * 1.0
        for j in range(s0, n_live):
            _decode(T[j], half, radix, C, Tv)
            k, g2 = _link_profile(Tv, Fi, npairs, offsets, pairs, inst, radix)
            _step(acc, w[j], 1.0, G, F, k, g2)
        return acc[0], acc[1], acc[2]
    acc[0] = G * child                           # the first step: whole tile, no history
    acc[1] = 0.0
    acc[2] = F * child
    da = child - ov                              # what an a-step delivers
    whole = ov == 0                              # a's delta is a whole tile
    Ta = T[a]
    _decode(Ta, half, radix, C, Tv)
    ka, ga = _link_profile(Tv, Fi, npairs, offsets, pairs, inst, radix)
    wo = 0.0
    for j in range(a + 1, n_live):
        wo += w[j]
    n_a_minus_1 = w[a] / (1.0 + wo)              # w_a = (n_a - 1) * prod_{i>a} n_i
    _step(acc, n_a_minus_1, da, G, F, ka if whole else -1, ga)
    for j in range(a + 1, n_live):
        after = n_a_minus_1 * w[j]               # the a-steps that follow a step of loop j
        if T[j] == 0:                            # zero: no data now, none to forward next
            _step(acc, after, da, G, F, -1, 0)
        elif T[j] == Ta:                         # same stride: sliding on
            _step(acc, w[j], da, G, F, ka, ga)
            _step(acc, after, da, G, F, ka, ga)
        else:                                    # reset: a whole new tile
            kj, gj = -1, 0
            if whole:
                _decode(T[j], half, radix, C, Tv)
                kj, gj = _link_profile(Tv, Fi, npairs, offsets, pairs, inst, radix)
            _step(acc, w[j], child, G, F, kj, gj)
            _step(acc, after, da, G, F, ka if whole else -1, ga)
    return acc[0], acc[1], acc[2]


@njit(cache=True, inline="always")
def walk_row(nj, levj, code, dimj, vj, size, ext_coord, coef, nzd, nzc, nnz, sf, prev, fan, compute,
              sdim, sn, svs, half, radix, total, weighted, link, split, phys, scratch, lscratch):
    """One mapping's walk totals ([L,P] total, weighted and link transfers).

    Scratch (``walk_scratch``): w [J], T [J], tcode [J,P], per_coord [4,C], per_dim [2,D],
    buf [most instances], mark [4096]; lscratch: ``link_totals``'s.
    """
    w, T, tcode, per_coord, per_dim, buf, mark = scratch
    Tv, nfeed, step, count = per_coord[0], per_coord[1], per_coord[2], per_coord[3]
    steps, counts = per_dim[0], per_dim[1]
    J = nj.shape[0]
    L = size.shape[0]
    P = size.shape[1]
    C = coef.shape[1]
    D = coef.shape[2]
    n_live = 0
    while n_live < J and levj[n_live] >= 0:
        n_live += 1
    for j in range(n_live):                    # a tile's move per loop and data space (one integer)
        for p in range(P):
            tcode[j, p] = vj[j] * code[p, dimj[j]]
    # steps of each loop: (n_j - 1) * prod of the loops above it (the same for every child level)
    acc = 1.0
    for j in range(n_live - 1, -1, -1):
        w[j] = (nj[j] - 1) * acc
        acc *= nj[j]
    s0 = 0
    for li in range(L):
        while s0 < n_live and levj[s0] < li:   # loops of levels below li come first
            s0 += 1
        fans = fan[li] > 1
        for p in range(P):
            link[li, p] = 0.0
            a = -1
            ov = 0.0
            G = _groups(li, p, sf, prev, nzd, nzc, nnz, steps, counts, buf, mark) if fans else 1.0
            F = float(fan[li])
            link_possible = False
            idle = False
            if fans:
                for c in range(C):
                    nfeed[c] = 0
                    step[c] = 0
                    count[c] = 1
                for q in range(D):
                    if sn[li, q] > 1:
                        d = sdim[li, q]
                        feeds = False
                        for c in range(C):
                            mv = coef[p, c, d] * svs[li, q]
                            if mv != 0:
                                feeds = True
                                nfeed[c] += 1
                                step[c] = mv
                                if sn[li, q] > count[c]:
                                    count[c] = sn[li, q]
                        if not feeds:
                            idle = True
            # moves of the child tile: T_j = t_j - sum of the loops below it (above the child); a is
            # the innermost loop that moves it, every later step is zero, same (T_j == T_a) or reset
            run = 0
            Ta = 0
            same_w = 0.0
            reset_w = 0.0
            for j in range(s0, n_live):
                t = tcode[j, p]
                Tj = t - run
                T[j] = Tj
                run += t
                if a < 0:
                    if t != 0:
                        a = j
                        Ta = t
                elif Tj != 0:
                    if Tj == Ta:
                        same_w += w[j]
                    else:
                        reset_w += w[j]
            if li == 0:
                total[0, p] = G * compute
                weighted[0, p] = F * compute
                if fans:
                    for j in range(0, n_live):
                        _decode(T[j], half, radix, C, Tv)
                        if _representable(Tv, nfeed, step, count, idle, C):
                            link_possible = True
                            break
            else:
                child = size[li - 1, p]
                if a < 0:
                    A = child
                else:
                    d = dimj[a]
                    ov = 1.0                                   # overlap of the tile with itself moved by T_a
                    for c in range(C):
                        m = ext_coord[li - 1, p, c] - abs(coef[p, c, d] * vj[a])
                        ov *= m if m > 0 else 0
                    A = child * (1.0 + reset_w) + (child - ov) * (w[a] + same_w)
                    if fans and a == s0:                       # tight: the innermost loop moves it
                        for j in range(a, n_live):
                            if j > a and T[j] == 0:
                                continue
                            _decode(T[j], half, radix, C, Tv)
                            if _representable(Tv, nfeed, step, count, idle, C):
                                link_possible = True
                                break
                total[li, p] = G * A
                weighted[li, p] = F * A
            if link_possible:
                total[li, p], link[li, p], weighted[li, p] = link_totals(
                    li, p, a, s0, n_live, T, w, G, F, size[li - 1, p] if li > 0 else 0.0, ov, half, radix,
                    sn, sdim, svs, coef, split[li], phys, lscratch)


@njit(cache=True)
def walk_scratch(J, P, C, D, most):
    """Scratch arrays for ``walk_row`` and ``link_totals`` (``most``: the largest fan-out)."""
    i64 = np.int64
    scratch = (np.zeros(J), np.zeros(J, dtype=i64), np.zeros((J, P), dtype=i64), np.zeros((4, C), dtype=i64),
               np.zeros((2, D), dtype=i64), np.zeros(max(1, most), dtype=i64), np.zeros(4096, dtype=np.uint8))
    lscratch = (np.zeros((max(1, most), C), dtype=i64), np.zeros((2, 4 * max(1, most)), dtype=i64),
                np.zeros((2, max(1, most)), dtype=i64), np.zeros(3), np.zeros(C, dtype=i64))
    return scratch, lscratch


@njit(cache=True)
def walk_totals(nj, levj, code, dimj, vj, size, ext_coord, coef, nzd, nzc, nnz, sf, prev, fan, compute,
                sdim, sn, svs, half, radix, total, weighted, link, split, phys):
    """``walk_row`` over a batch."""
    B, J = nj.shape
    scratch, lscratch = walk_scratch(J, size.shape[2], coef.shape[1], coef.shape[2], fan.max() if fan.size else 1)
    for b in range(B):
        walk_row(nj[b], levj[b], code, dimj[b], vj[b], size[b], ext_coord[b], coef, nzd, nzc, nnz, sf[b],
                 prev[b], fan[b], compute[b], sdim[b], sn[b], svs[b], half, radix, total[b], weighted[b], link[b],
                 split[b], phys, scratch, lscratch)


@njit(cache=True)
def _round(x):
    return np.floor(x + 0.5)


@njit(cache=True, inline="always")
def collapse_row(size_in, total_in, weighted_in, link_in, msize, master, fanout, repl, keep, read_write,
                  reads, fills, updates, utilized, partition_out,
                  size, total, weighted, link, content, share, part, partf, peer, alive):
    """Timeloop's tile collapse of one mapping ([L,P] arrays; the loop form of collapse.collapse)."""
    L, P = size_in.shape
    for p in range(P):
        for l in range(L):
            size[l] = size_in[l, p]
            total[l] = total_in[l, p]
            weighted[l] = weighted_in[l, p]
            link[l] = link_in[l, p]
            content[l] = total[l]
            alive[l] = True
            peer[l] = 0.0
        # partition sizes (integers), the outermost level holds the whole tensor
        part[L - 1] = np.int64(size_in[L - 1, p])
        for cur in range(L - 2, -1, -1):
            isz = np.int64(size_in[cur, p])
            pfd = np.int64(msize[cur + 1, p]) if master[cur + 1] else isz
            part[cur] = (part[cur + 1] * isz) // pfd if pfd != 0 else part[cur + 1]
        for l in range(L):
            partf[l] = float(part[l])
        for cur in range(L - 1):
            share[cur] = weighted[cur + 1] / fanout[cur + 1]
        share[L - 1] = 0.0
        # MaskTiles
        for cur in range(L):
            if not alive[cur] or keep[cur, p]:
                continue
            o = -1
            for oo in range(cur + 1, L):
                if alive[oo]:
                    o = oo
                    break
            if o >= 0:
                w = weighted[o]
                factor = content[cur] * fanout[o] / w if w > 0 else 0.0
                nonzero = total[o] > 0
                total[o] *= factor
                weighted[o] *= factor
                if nonzero:
                    link[o] = 0.0
                content[o] = total[o]
            size[cur] = 0.0
            partf[cur] = 0.0
            content[cur] = 0.0
            share[cur] = 0.0
            alive[cur] = False
        # ProcessOuterMaskedLevels
        for cur in range(L - 1, -1, -1):
            if not keep[cur, p]:
                size[cur] = 0.0
                partf[cur] = 0.0
                content[cur] = 0.0
                share[cur] = 0.0
                total[cur] = 0.0
                weighted[cur] = 0.0
                link[cur] = 0.0
                alive[cur] = False
            else:
                share[cur] = 0.0
                break
        # link transfers at level cur are charged to cur - 1
        for cur in range(1, L):
            if link[cur] != 0:
                peer[cur - 1] = link[cur] / repl[cur - 1]
        above_alive = False
        for cur in range(L - 1, -1, -1):
            outermost = not above_alive
            if alive[cur]:
                above_alive = True
                if read_write[p]:
                    reads[cur, p] = _round(content[cur] + peer[cur] - partf[cur])
                    if outermost:
                        fills[cur, p] = _round(share[cur] + peer[cur])
                    else:
                        fills[cur, p] = _round(share[cur] + peer[cur] - partf[cur])
                    updates[cur, p] = _round(content[cur])
                else:
                    reads[cur, p] = _round(content[cur] + peer[cur])
                    fills[cur, p] = np.floor(share[cur] + peer[cur])
                    updates[cur, p] = 0.0
                utilized[cur, p] = size[cur] if keep[cur, p] else 0.0
            else:
                reads[cur, p] = 0.0
                fills[cur, p] = 0.0
                updates[cur, p] = 0.0
                utilized[cur, p] = 0.0
            partition_out[cur, p] = partf[cur]


@njit(cache=True)
def collapse_rows(size_in, total_in, weighted_in, link_in, msize, master, fanout, repl, keep, read_write,
                  reads, fills, updates, utilized, partition_out):
    """``collapse_row`` over a batch."""
    L = size_in.shape[1]
    cl = np.zeros((8, L))
    size, total, weighted, link, content, share, partf, peer = cl[0], cl[1], cl[2], cl[3], cl[4], cl[5], cl[6], cl[7]
    part = np.zeros(L, dtype=np.int64)
    alive = np.zeros(L, dtype=np.bool_)
    for b in range(size_in.shape[0]):
        collapse_row(size_in[b], total_in[b], weighted_in[b], link_in[b], msize[b], master[b], fanout[b],
                      repl[b], keep[b], read_write, reads[b], fills[b], updates[b], utilized[b],
                      partition_out[b], size, total, weighted, link, content, share, part, partf, peer, alive)


@njit(cache=True, inline="always")
def prep_row(tf, tperm, sf, sperm, split, nzd, nzc, nnz, ext, prev, mid, ext_coord, size, sn, svs, fan, fx,
              repl, xexp, yexp, nj, dimj, vj, levj, tvs, tdim, tn, fy):
    """One mapping's closed-form set-up (``nest._prep_numpy``); returns (non-trivial temporal loops,
    temporal iterations per MAC)."""
    L, D = tf.shape
    P, C = nnz.shape
    LD = L * D
    for d in range(D):
        e = 1
        for li in range(L):
            f = sf[li, d] * tf[li, d]
            prev[li, d] = e
            mid[li, d] = e * sf[li, d]
            e *= f
            ext[li, d] = e
    for li in range(L):
        for p in range(P):
            s = 1
            for c in range(C):
                span = _span(nzd, nzc, nnz, p, c, ext, li)
                ext_coord[li, p, c] = span
                s *= span
            size[li, p] = s
        fa = 1
        x = 1
        sp = split[li]
        for i in range(D):
            d = sperm[li, i]
            sn[li, i] = sf[li, d]
            svs[li, i] = prev[li, d]
            fa *= sf[li, d]
            if i < sp:
                x *= sf[li, d]
            d = tperm[li, i]
            tn[li * D + i] = tf[li, d]
            tdim[li * D + i] = d
            tvs[li * D + i] = mid[li, d]
        fan[li] = fa
        fx[li] = x
        fy[li] = fa // x
    r = 1
    rx = 1
    ry = 1
    for li in range(L - 1, -1, -1):
        repl[li] = r
        xexp[li] = rx
        yexp[li] = ry
        r *= fan[li]
        rx *= fx[li]
        ry *= fy[li]
    # non-trivial temporal loops first (innermost first), then the trivial ones, both in order
    k = 0
    comp = 1
    for li in range(L):
        for q in range(li * D, li * D + D):
            if tn[q] >= 2:
                nj[k] = tn[q]
                dimj[k] = tdim[q]
                vj[k] = tvs[q]
                levj[k] = li
                comp *= tn[q]
                k += 1
    live = k
    for q in range(LD):
        if tn[q] < 2:
            nj[k] = 1
            dimj[k] = tdim[q]
            vj[k] = tvs[q]
            levj[k] = -1
            k += 1
    return live, comp


@njit(cache=True)
def prep_rows(tf, tperm, sf, sperm, split, nzd, nzc, nnz, ext, prev, mid, ext_coord, size, sn, svs, fan, fx,
              repl, xexp, yexp, nj, dimj, vj, levj, compute):
    """``prep_row`` over a batch; returns J, the most non-trivial temporal loops of any row
    (columns of ``nj`` etc. in use)."""
    B, L, D = tf.shape
    J = 1
    tvs = np.empty(L * D, dtype=np.int64)
    tdim = np.empty(L * D, dtype=np.int64)
    tn = np.empty(L * D, dtype=np.int64)
    fy = np.empty(L, dtype=np.int64)
    for b in range(B):
        live, comp = prep_row(tf[b], tperm[b], sf[b], sperm[b], split[b], nzd, nzc, nnz, ext[b], prev[b], mid[b],
                               ext_coord[b], size[b], sn[b], svs[b], fan[b], fx[b], repl[b], xexp[b], yexp[b],
                               nj[b], dimj[b], vj[b], levj[b], tvs, tdim, tn, fy)
        compute[b] = comp
        if live > J:
            J = live
    return J


# ----------------------------------------------------------------------------- costs, and all in one pass

# rows of cost.ArchCosts.level_table
BLOCK, LEAK, CAPACITY, MIN_UTIL, INSTANCES, MESH_X, MESH_Y, CLUSTERS, READ_BW, WRITE_BW, SHARED_BW = range(11)


@njit(cache=True, inline="always")
def _pairwise(a, lo, n):
    """numpy's pairwise sum of a[lo:lo+n] for n <= 128 (fused.PAIRWISE_MAX; ``pairwise_sum`` in numpy's loops: up
    to 128 terms it is one block of eight running sums), same order, so the same bits."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, error_model="numpy", inline="always")
def cost_row(reads, fills, updates, utilized, compute, compute_repl, repl, xexp, yexp, lv, op_energy,
              mac_energy, mac_instances, ebuf, lbuf, pbuf):
    """``cost.evaluate_costs`` for one mapping: (energy pJ, cycles, valid)."""
    L, P = reads.shape
    valid = not (compute_repl > mac_instances)
    cc = compute
    cycles = cc
    k = 0
    for li in range(L):
        # validity: capacity, minimum utilisation, instances, mesh
        for p in range(P):
            pbuf[p] = utilized[li, p]
        used = _pairwise(pbuf, 0, P)
        cap = lv[CAPACITY, li]
        if used > cap:
            valid = False
        if lv[MIN_UTIL, li] > 0 and used < (cap if np.isfinite(cap) else 0.0) * lv[MIN_UTIL, li]:
            valid = False
        if repl[li] > lv[INSTANCES, li] or xexp[li] > lv[MESH_X, li] or yexp[li] > lv[MESH_Y, li]:
            valid = False
        # energy of reads, fills and updates (vector accesses, all utilised instances)
        xy = xexp[li] * yexp[li]
        cluster_util = xy / min(xy, lv[CLUSTERS, li])
        factor = repl[li] / cluster_util
        block = lv[BLOCK, li]
        for p in range(P):
            ebuf[k] = (np.ceil(reads[li, p] / block) * op_energy[li, 0]) * factor
            ebuf[k + 1] = (np.ceil(fills[li, p] / block) * op_energy[li, 1]) * factor
            ebuf[k + 2] = (np.ceil(updates[li, p] / block) * op_energy[li, 2]) * factor
            k += 3
        # cycles: bandwidth-bound slow-down
        for p in range(P):
            pbuf[p] = reads[li, p] / cc
        rd = _pairwise(pbuf, 0, P)
        for p in range(P):
            pbuf[p] = (fills[li, p] + updates[li, p]) / cc
        wr = _pairwise(pbuf, 0, P)
        slow = 1.0
        for bw, need in ((lv[READ_BW, li], rd), (lv[WRITE_BW, li], wr), (lv[SHARED_BW, li], rd + wr)):
            if np.isfinite(bw) and bw < need:
                slow = min(slow, bw / need)
        level_cycles = np.ceil(cc / slow)
        if level_cycles > cycles:
            cycles = level_cycles
    for li in range(L):
        lbuf[li] = lv[LEAK, li] * cycles * max(1.0, repl[li])
    energy = _pairwise(ebuf, 0, L * P * 3) + _pairwise(lbuf, 0, L) + (cc * compute_repl) * mac_energy
    return energy, cycles, valid


@njit(cache=True, error_model="numpy")
def evaluate_rows(tf, tperm, sf, sperm, split, keep, coef, nzd, nzc, nnz, codes, half, radix, read_write, lv,
                  op_energy, mac_energy, mac_instances, phys, energy, cycles, valid):
    """Every mapping through set-up, walk totals, collapse and costs, one at a time."""
    B, L, D = tf.shape
    P, C = nnz.shape
    LD = L * D
    i64 = np.int64
    # per-mapping scratch, reused row after row: rows of a few arrays
    ild = np.zeros((5, L, D), dtype=i64)
    ext, prev, mid, sn, svs = ild[0], ild[1], ild[2], ild[3], ild[4]
    ext_coord = np.zeros((L, P, C), dtype=i64)
    ilp = np.zeros((2, L, P), dtype=i64)
    size, msize = ilp[0], ilp[1]
    il = np.zeros((6, L), dtype=i64)
    fan, fx, repl, xexp, yexp, fy = il[0], il[1], il[2], il[3], il[4], il[5]
    ij = np.zeros((7, LD), dtype=i64)
    nj, dimj, vj, levj, tvs, tdim, tn = ij[0], ij[1], ij[2], ij[3], ij[4], ij[5], ij[6]
    flp = np.zeros((10, L, P))
    sizef, msizef, total, weighted, link = flp[0], flp[1], flp[2], flp[3], flp[4]
    reads, fills, updates, utilized, partition = flp[5], flp[6], flp[7], flp[8], flp[9]
    fl = np.zeros((4, L))
    fanf, replf, xexpf, yexpf = fl[0], fl[1], fl[2], fl[3]
    master = np.zeros(L, dtype=np.bool_)
    most = 1                                     # the largest fan-out of any level of any mapping
    for b in range(B):
        for li in range(L):
            f = 1
            for d in range(D):
                f *= sf[b, li, d]
            most = max(most, f)
    scratch, lscratch = walk_scratch(LD, P, C, D, most)
    cl = np.zeros((8, L))
    c_size, c_total, c_weighted, c_link, c_content, c_share, c_partf, c_peer = (
        cl[0], cl[1], cl[2], cl[3], cl[4], cl[5], cl[6], cl[7])
    c_part = np.zeros(L, dtype=i64)
    c_alive = np.zeros(L, dtype=np.bool_)
    ebuf = np.zeros(L * P * 3)
    lbuf = np.zeros(L)
    pbuf = np.zeros(P)
    for b in range(B):
        live, comp = prep_row(tf[b], tperm[b], sf[b], sperm[b], split[b], nzd, nzc, nnz, ext, prev, mid,
                               ext_coord, size, sn, svs, fan, fx, repl, xexp, yexp, nj, dimj, vj, levj,
                               tvs, tdim, tn, fy)
        compute = float(comp)
        master_row(mid, fan, nzd, nzc, nnz, msize)
        for li in range(L):
            fanf[li] = float(fan[li])
            replf[li] = float(repl[li])
            xexpf[li] = float(xexp[li])
            yexpf[li] = float(yexp[li])
            master[li] = fan[li] > 1
            for p in range(P):
                sizef[li, p] = float(size[li, p])
                msizef[li, p] = float(msize[li, p])
        walk_row(nj, levj, codes, dimj, vj, sizef, ext_coord, coef, nzd, nzc, nnz, sf[b], prev, fan, compute,
                 sperm[b], sn, svs, half, radix, total, weighted, link, split[b], phys, scratch, lscratch)
        collapse_row(sizef, total, weighted, link, msizef, master, fanf, replf, keep[b], read_write,
                      reads, fills, updates, utilized, partition, c_size, c_total, c_weighted, c_link,
                      c_content, c_share, c_part, c_partf, c_peer, c_alive)
        energy[b], cycles[b], valid[b] = cost_row(reads, fills, updates, utilized, compute,
                                                   float(repl[0] * fan[0]), replf, xexpf, yexpf, lv, op_energy,
                                                   mac_energy, mac_instances, ebuf, lbuf, pbuf)
