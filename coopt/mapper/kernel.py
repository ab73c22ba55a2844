"""The mapspace's per-row loops compiled with numba: spatial and temporal factor filling.

Same choices as the plain-Python forms in ``coopt.mapper.space`` (which stay
the readable reference and are used without numba): every random number is
drawn by the caller with numpy, in the same order, so a seed gives the same
mappings on either path; tests hold the two paths equal row for row.
"""
from __future__ import annotations

import numpy as np

from coopt.model.kernel import HAVE_NUMBA, njit

__all__ = ["HAVE_NUMBA", "fill_spatial_rows", "fill_temporal_rows"]


@njit(cache=True)
def _options(cap, rests, caps, k, opts, prods):
    """Spatial factor tuples (a divisor of each rest, within caps, product <= cap) in
    lexicographic order; writes them to ``opts``/``prods`` and returns how many
    (with ``opts`` None-sized buffers it only counts)."""
    idx = np.zeros(k, dtype=np.int64)       # current divisor value per position
    pre = np.ones(k + 1, dtype=np.int64)    # prefix products
    n = 0
    j = 0
    idx[0] = 0
    while j >= 0:
        # advance position j to its next divisor within limits
        lim = min(rests[j], caps[j], cap // pre[j])
        f = idx[j] + 1
        while f <= lim and rests[j] % f != 0:
            f += 1
        if f > lim:
            idx[j] = 0
            j -= 1
            continue
        idx[j] = f
        pre[j + 1] = pre[j] * f
        if j == k - 1:
            if opts.shape[0] > 0:
                for q in range(k):
                    opts[n, q] = idx[q]
                prods[n] = pre[k]
            n += 1
        else:
            j += 1
            idx[j] = 0
    return n


@njit(cache=True)
def fill_spatial_rows(sf, is_x, rows, groups, orders, coins, picks, free_s, fixed_t, bounds, fan, caps_s):
    """``MapSpace._fill_spatial`` for every row of ``rows`` (in place on ``sf``)."""
    L = sf.shape[1]
    D = sf.shape[2]
    G = groups.shape[0]
    rest = np.zeros(D, dtype=np.int64)
    dims = np.zeros(D, dtype=np.int64)
    rests = np.zeros(D, dtype=np.int64)
    caps = np.zeros(D, dtype=np.int64)
    empty = np.zeros((0, D), dtype=np.int64)
    empty_p = np.zeros(0, dtype=np.int64)
    for k in range(rows.shape[0]):
        b = rows[k]
        for d in range(D):
            used = 1
            for li in range(L):
                used *= sf[b, li, d]
            rest[d] = bounds[d] // (fixed_t[d] * used)
        for gi in range(G):
            g = orders[k, gi]
            li = groups[g, 0]
            want_x = groups[g, 1] == 0
            nd = 0
            other = 1
            for d in range(D):
                if is_x[b, li, d] == want_x:
                    if free_s[li, d]:
                        dims[nd] = d
                        rests[nd] = rest[d] * sf[b, li, d]
                        caps[nd] = caps_s[li, d]
                        nd += 1
                    else:
                        other *= sf[b, li, d]
            if nd == 0:
                continue
            cap = fan[li, groups[g, 1]] // max(1, other)
            m = _options(cap, rests, caps, nd, empty, empty_p)
            opts = np.zeros((m, nd), dtype=np.int64)
            prods = np.zeros(m, dtype=np.int64)
            _options(cap, rests, caps, nd, opts, prods)
            order = np.argsort(-prods, kind="mergesort")
            best = prods[order[0]]
            n_best = 0
            for i in range(m):
                if prods[i] == best:
                    n_best += 1
            pool = n_best if coins[k, g] else m
            c = int(picks[k, g] * pool)
            if c > pool - 1:
                c = pool - 1
            row = order[c]
            for q in range(nd):
                d = dims[q]
                f = opts[row, q]
                rest[d] = rest[d] * sf[b, li, d] // f
                sf[b, li, d] = f


@njit(cache=True)
def fill_temporal_rows(sub_tf, rest, dim_of, prime_of, lv, nslots, draws, cap_t):
    """``MapSpace._fill_temporal``'s prime placement (in place on ``sub_tf`` and ``rest``).

    Step s places prime ``prime_of[s]`` of dimension ``dim_of[s]`` into one of
    the ``nslots[s]`` free temporal levels ``lv[s]`` using ``draws[s, :, :S]``.
    """
    n = sub_tf.shape[0]
    for s in range(dim_of.shape[0]):
        d = dim_of[s]
        p = prime_of[s]
        S = nslots[s]
        for r in range(n):
            if rest[r, d] % p != 0:
                continue
            pick = 0
            best = -2.0
            for j in range(S):
                score = draws[s, r, j] if sub_tf[r, lv[s, j], d] * p <= cap_t[lv[s, j], d] else -1.0
                if score > best:
                    best = score
                    pick = j
            if best < 0:
                pick = S - 1
            sub_tf[r, lv[s, pick], d] *= p
            rest[r, d] //= p


@njit(cache=True)
def move_primes_rows(tf, sf, rr, d, lv, sp, p, rand, dst0):
    """``MapSpace._move_primes`` for the rows ``rr`` that move a prime of dimension ``d``
    (in place): from a random slot holding it to another free slot."""
    S = lv.shape[0]
    for i in range(rr.shape[0]):
        r = rr[i]
        src = 0
        best = -2.0
        for j in range(S):
            v = sf[r, lv[j], d] if sp[j] else tf[r, lv[j], d]
            score = rand[i, j] if (v % p[i] == 0 and v > 1) else -1.0
            if score > best:
                best = score
                src = j
        if best < 0:
            continue
        dst = dst0[i] + 1 if dst0[i] >= src else dst0[i]
        if sp[src]:
            sf[r, lv[src], d] //= p[i]
        else:
            tf[r, lv[src], d] //= p[i]
        if sp[dst]:
            sf[r, lv[dst], d] *= p[i]
        else:
            tf[r, lv[dst], d] *= p[i]


@njit(cache=True)
def canonical_rows(tf, tperm, sf, sperm, split):
    """``MapSpace.canonical``'s loop orders: non-trivial loops first in their order (spatial:
    X then Y), trivial ones after in dimension order; returns new tperm, sperm, split."""
    B, L, D = tf.shape
    tp = np.empty_like(tperm)
    spm = np.empty_like(sperm)
    spl = np.empty_like(split)
    for b in range(B):
        for li in range(L):
            k = 0
            for i in range(D):
                if tf[b, li, tperm[b, li, i]] > 1:
                    tp[b, li, k] = tperm[b, li, i]
                    k += 1
            for d in range(D):
                if tf[b, li, d] <= 1:
                    tp[b, li, k] = d
                    k += 1
            k = 0
            s = split[b, li]
            for i in range(min(s, D)):
                if sf[b, li, sperm[b, li, i]] > 1:
                    spm[b, li, k] = sperm[b, li, i]
                    k += 1
            spl[b, li] = k
            for i in range(max(s, 0), D):
                if sf[b, li, sperm[b, li, i]] > 1:
                    spm[b, li, k] = sperm[b, li, i]
                    k += 1
            for d in range(D):
                if sf[b, li, d] <= 1:
                    spm[b, li, k] = d
                    k += 1
    return tp, spm, spl


@njit(cache=True)
def prefilter_rows(tf, sf, sperm, split, keep, coef, fan_x, fan_y, cap_s, cap_t, capacity, floor,
                   fan_ok, cap_ok, util_ok):
    """``MapSpace.prefilter``'s checks per row: fan-outs and factor caps (``fan_ok``),
    buffer capacities (``cap_ok``) and minimum utilisation (``util_ok``)."""
    B, L, D = tf.shape
    P, C = coef.shape[0], coef.shape[1]
    ext = np.ones(D, dtype=np.int64)
    for b in range(B):
        ok = True
        for li in range(L):
            x = 1
            y = 1
            s = split[b, li]
            for i in range(D):
                d = sperm[b, li, i]
                if i < s:
                    x *= sf[b, li, d]
                else:
                    y *= sf[b, li, d]
            if x > fan_x[li] or y > fan_y[li]:
                ok = False
            for d in range(D):
                if sf[b, li, d] > cap_s[li, d] or tf[b, li, d] > cap_t[li, d]:
                    ok = False
        fan_ok[b] = ok
        c_ok = True
        u_ok = True
        for d in range(D):
            ext[d] = 1
        for li in range(L):
            for d in range(D):
                ext[d] *= sf[b, li, d] * tf[b, li, d]
            used = 0.0
            for p in range(P):
                if keep[b, li, p]:
                    size = 1
                    for c in range(C):
                        span = 1
                        for d in range(D):
                            span += coef[p, c, d] * (ext[d] - 1)
                        size *= span
                    used += size
            if not used <= capacity[li]:
                c_ok = False
            if not used >= floor[li]:
                u_ok = False
        cap_ok[b] = c_ok
        util_ok[b] = u_ok
