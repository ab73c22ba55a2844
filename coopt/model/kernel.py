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
def walk_totals(nj, levj, tcode, dimj, vj, size, ext_coord, coef, groups, fan, compute,
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
    for b in range(B):
        n_live = 0
        while n_live < J and levj[b, n_live] >= 0:
            n_live += 1
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
                G = groups[b, li, p]
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
                    t = tcode[b, j, p]
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
                        if tcode[b, j, p] != 0:
                            a = j
                            break
                    child = size[b, li - 1, p]
                    if a < 0:
                        A = child
                    else:
                        Ta = tcode[b, a, p]
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
