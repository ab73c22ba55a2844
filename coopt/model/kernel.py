"""The closed-form walk totals compiled with numba: the model's innermost hot loop.

Same arithmetic as the numpy path of ``coopt.model.nest`` (which stays the
readable reference and handles link transfers); per mapping, per level, per
data space it finds the innermost loop that moves the child tile, classifies
every outer step as same / zero / reset, and sums the weighted transfers.
Rows whose steps could coincide with an offset between PEs (possible link
transfers) are only flagged here; the numpy path recomputes them exactly.
Tests hold both paths equal to each other and to the literal walk.
"""
from __future__ import annotations

import numpy as np

try:
    from numba import njit
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a dependency; keep the model usable without it
    HAVE_NUMBA = False

    def njit(*args, **kwargs):
        def wrap(f):
            return f
        return wrap if not args or not callable(args[0]) else args[0]


@njit(cache=True)
def _decode(code, half, radix, C, out):
    x = code
    for c in range(C):
        d = (x + half) % radix - half
        out[c] = d
        x = (x - d) // radix


@njit(cache=True)
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


@njit(cache=True)
def _distinct_sums(steps, counts, k, buf):
    """How many distinct values sum_q i_q * steps[q] takes, 0 <= i_q < counts[q] (q < k)."""
    n = 1
    buf[0] = 0
    for q in range(k):
        m = n
        for i in range(1, counts[q]):
            for r in range(m):
                buf[n] = buf[r] + i * steps[q]
                n += 1
    vals = np.sort(buf[:n])
    distinct = 1
    for r in range(1, n):
        if vals[r] != vals[r - 1]:
            distinct += 1
    return distinct


@njit(cache=True)
def _groups(b, li, p, sf, prev, coef, steps, counts, buf):
    """Multicast groups: distinct offsets of the level's instances in data space p."""
    C = coef.shape[1]
    D = coef.shape[2]
    G = 1.0
    for c in range(C):
        k = 0
        for d in range(D):
            if sf[b, li, d] > 1 and coef[p, c, d] != 0:
                steps[k] = coef[p, c, d] * prev[b, li, d]
                counts[k] = sf[b, li, d]
                k += 1
        if k == 1:
            G *= counts[0]
        elif k > 1:
            G *= _distinct_sums(steps, counts, k, buf)
    return G


@njit(cache=True)
def master_sizes(mid, fan, coef, msize):
    """Tile size at each fanning-out level's spatial loops (Timeloop's partition denominator)."""
    B, L, D = mid.shape
    P, C = coef.shape[0], coef.shape[1]
    for b in range(B):
        for li in range(L):
            if fan[b, li] <= 1:
                continue
            for p in range(P):
                size = 1
                for c in range(C):
                    span = 1
                    for d in range(D):
                        span += coef[p, c, d] * (mid[b, li, d] - 1)
                    size *= span
                msize[b, li, p] = size


@njit(cache=True)
def walk_totals(nj, levj, code, dimj, vj, size, ext_coord, coef, sf, prev, fan, compute,
                sdim, sn, svs, half, radix, total, weighted, flag):
    B, J = nj.shape
    L = size.shape[1]
    P = size.shape[2]
    C = coef.shape[1]
    D = coef.shape[2]
    w = np.zeros(J)
    T = np.zeros(J, dtype=np.int64)
    Tv = np.zeros(C, dtype=np.int64)
    nfeed = np.zeros(C, dtype=np.int64)
    step = np.zeros(C, dtype=np.int64)
    count = np.zeros(C, dtype=np.int64)
    tcode = np.zeros((J, P), dtype=np.int64)
    steps = np.zeros(D, dtype=np.int64)
    counts = np.zeros(D, dtype=np.int64)
    max_fan = 1
    for b in range(B):
        for li in range(L):
            if fan[b, li] > max_fan:
                max_fan = fan[b, li]
    buf = np.zeros(max_fan, dtype=np.int64)
    for b in range(B):
        n_live = 0
        while n_live < J and levj[b, n_live] >= 0:
            n_live += 1
        for j in range(n_live):                    # a tile's move per loop and data space (one integer)
            for p in range(P):
                tcode[j, p] = vj[b, j] * code[p, dimj[b, j]]
        for li in range(L):
            s0 = 0
            while s0 < n_live and levj[b, s0] < li:
                s0 += 1
            # steps of each loop above the child: (n_j - 1) * prod of the loops above it
            acc = 1.0
            for j in range(n_live - 1, s0 - 1, -1):
                w[j] = (nj[b, j] - 1) * acc
                acc *= nj[b, j]
            fans = fan[b, li] > 1
            for p in range(P):
                G = _groups(b, li, p, sf, prev, coef, steps, counts, buf) if fans else 1.0
                F = float(fan[b, li])
                link_possible = False
                idle = False
                if fans:
                    for c in range(C):
                        nfeed[c] = 0
                        step[c] = 0
                        count[c] = 1
                    for q in range(D):
                        if sn[b, li, q] > 1:
                            d = sdim[b, li, q]
                            feeds = False
                            for c in range(C):
                                mv = coef[p, c, d] * svs[b, li, q]
                                if mv != 0:
                                    feeds = True
                                    nfeed[c] += 1
                                    step[c] = mv
                                    if sn[b, li, q] > count[c]:
                                        count[c] = sn[b, li, q]
                            if not feeds:
                                idle = True
                # moves of the child tile: T_j = t_j - sum of the loops below it (above the child)
                run = 0
                for j in range(s0, n_live):
                    t = tcode[j, p]
                    T[j] = t - run
                    run += t
                if li == 0:
                    total[b, 0, p] = G * compute[b]
                    weighted[b, 0, p] = F * compute[b]
                    if fans:
                        for j in range(0, n_live):
                            _decode(T[j], half, radix, C, Tv)
                            if _representable(Tv, nfeed, step, count, idle, C):
                                link_possible = True
                                break
                else:
                    a = -1
                    for j in range(s0, n_live):
                        if tcode[j, p] != 0:
                            a = j
                            break
                    child = size[b, li - 1, p]
                    if a < 0:
                        A = child
                    else:
                        Ta = tcode[a, p]
                        same_w = 0.0
                        reset_w = 0.0
                        for j in range(a + 1, n_live):
                            if T[j] == 0:
                                continue
                            if T[j] == Ta:
                                same_w += w[j]
                            else:
                                reset_w += w[j]
                        d = dimj[b, a]
                        ov = 1.0
                        for c in range(C):
                            m = ext_coord[b, li - 1, p, c] - abs(coef[p, c, d] * vj[b, a])
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
                    total[b, li, p] = G * A
                    weighted[b, li, p] = F * A
                if link_possible:
                    flag[b] = True


@njit(cache=True)
def _round(x):
    return np.floor(x + 0.5)


@njit(cache=True)
def collapse_rows(size_in, total_in, weighted_in, link_in, msize, master, fanout, repl, keep, read_write,
                  reads, fills, updates, utilized, partition_out):
    """Timeloop's tile collapse per mapping and data space (the loop form of collapse.collapse)."""
    B, L, P = size_in.shape
    size = np.zeros(L)
    total = np.zeros(L)
    weighted = np.zeros(L)
    link = np.zeros(L)
    content = np.zeros(L)
    share = np.zeros(L)
    part = np.zeros(L, dtype=np.int64)
    partf = np.zeros(L)
    peer = np.zeros(L)
    alive = np.zeros(L, dtype=np.bool_)
    for b in range(B):
        for p in range(P):
            for l in range(L):
                size[l] = size_in[b, l, p]
                total[l] = total_in[b, l, p]
                weighted[l] = weighted_in[b, l, p]
                link[l] = link_in[b, l, p]
                content[l] = total[l]
                alive[l] = True
                peer[l] = 0.0
            # partition sizes (integers), the outermost level holds the whole tensor
            part[L - 1] = np.int64(size_in[b, L - 1, p])
            for cur in range(L - 2, -1, -1):
                isz = np.int64(size_in[b, cur, p])
                pfd = np.int64(msize[b, cur + 1, p]) if master[b, cur + 1] else isz
                part[cur] = (part[cur + 1] * isz) // pfd if pfd != 0 else part[cur + 1]
            for l in range(L):
                partf[l] = float(part[l])
            for cur in range(L - 1):
                share[cur] = weighted[cur + 1] / fanout[b, cur + 1]
            share[L - 1] = 0.0
            # MaskTiles
            for cur in range(L):
                if not alive[cur] or keep[b, cur, p]:
                    continue
                o = -1
                for oo in range(cur + 1, L):
                    if alive[oo]:
                        o = oo
                        break
                if o >= 0:
                    w = weighted[o]
                    factor = content[cur] * fanout[b, o] / w if w > 0 else 0.0
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
                if not keep[b, cur, p]:
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
                    peer[cur - 1] = link[cur] / repl[b, cur - 1]
            above_alive = False
            for cur in range(L - 1, -1, -1):
                outermost = not above_alive
                if alive[cur]:
                    above_alive = True
                    if read_write[p]:
                        reads[b, cur, p] = _round(content[cur] + peer[cur] - partf[cur])
                        if outermost:
                            fills[b, cur, p] = _round(share[cur] + peer[cur])
                        else:
                            fills[b, cur, p] = _round(share[cur] + peer[cur] - partf[cur])
                        updates[b, cur, p] = _round(content[cur])
                    else:
                        reads[b, cur, p] = _round(content[cur] + peer[cur])
                        fills[b, cur, p] = np.floor(share[cur] + peer[cur])
                        updates[b, cur, p] = 0.0
                    utilized[b, cur, p] = size[cur] if keep[b, cur, p] else 0.0
                else:
                    reads[b, cur, p] = 0.0
                    fills[b, cur, p] = 0.0
                    updates[b, cur, p] = 0.0
                    utilized[b, cur, p] = 0.0
                partition_out[b, cur, p] = partf[cur]


@njit(cache=True)
def prep_rows(tf, tperm, sf, sperm, split, coef, ext, prev, mid, ext_coord, size, sn, svs, fan, fx, repl,
              xexp, yexp, nj, dimj, vj, levj, compute):
    """The closed form's per-mapping set-up (``nest._prep_numpy``) in one pass; returns J, the
    most non-trivial temporal loops of any row (columns of ``nj`` etc. in use)."""
    B, L, D = tf.shape
    P, C = coef.shape[0], coef.shape[1]
    LD = L * D
    J = 1
    tvs = np.empty(LD, dtype=np.int64)
    tdim = np.empty(LD, dtype=np.int64)
    tn = np.empty(LD, dtype=np.int64)
    fy = np.empty(L, dtype=np.int64)
    for b in range(B):
        for d in range(D):
            e = 1
            for li in range(L):
                f = sf[b, li, d] * tf[b, li, d]
                prev[b, li, d] = e
                mid[b, li, d] = e * sf[b, li, d]
                e *= f
                ext[b, li, d] = e
        for li in range(L):
            for p in range(P):
                s = 1
                for c in range(C):
                    span = 1
                    for d in range(D):
                        span += coef[p, c, d] * (ext[b, li, d] - 1)
                    ext_coord[b, li, p, c] = span
                    s *= span
                size[b, li, p] = s
            fa = 1
            x = 1
            sp = split[b, li]
            for i in range(D):
                d = sperm[b, li, i]
                sn[b, li, i] = sf[b, li, d]
                svs[b, li, i] = prev[b, li, d]
                fa *= sf[b, li, d]
                if i < sp:
                    x *= sf[b, li, d]
                d = tperm[b, li, i]
                tn[li * D + i] = tf[b, li, d]
                tdim[li * D + i] = d
                tvs[li * D + i] = mid[b, li, d]
            fan[b, li] = fa
            fx[b, li] = x
            fy[li] = fa // x
        r = 1
        rx = 1
        ry = 1
        for li in range(L - 1, -1, -1):
            repl[b, li] = r
            xexp[b, li] = rx
            yexp[b, li] = ry
            r *= fan[b, li]
            rx *= fx[b, li]
            ry *= fy[li]
        # non-trivial temporal loops first (innermost first), then the trivial ones, both in order
        k = 0
        comp = 1
        for q in range(LD):
            if tn[q] >= 2:
                nj[b, k] = tn[q]
                dimj[b, k] = tdim[q]
                vj[b, k] = tvs[q]
                levj[b, k] = q // D
                comp *= tn[q]
                k += 1
        if k > J:
            J = k
        for q in range(LD):
            if tn[q] < 2:
                nj[b, k] = 1
                dimj[b, k] = tdim[q]
                vj[b, k] = tvs[q]
                levj[b, k] = -1
                k += 1
        compute[b] = comp
    return J
