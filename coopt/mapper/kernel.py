"""The mapspace's per-row loops compiled with numba: factor filling, neighbour moves, checks.

Same choices as the plain-Python forms in ``coopt.mapper.space`` (which stay
the readable reference and are used without numba).  Random numbers are drawn
in the reference's order, either by the caller with numpy or, in the
``*_drawn`` kernels, by numba's ``np.random.Generator`` on the caller's bit
generator (the same stream as numpy's), so a seed gives the same mappings on
either path; tests hold the two paths equal row for row.
"""
from __future__ import annotations

import numpy as np

from coopt.model.kernel import HAVE_NUMBA, njit

__all__ = ["HAVE_NUMBA", "fill_spatial_rows", "fill_temporal_drawn"]


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


@njit(cache=True, inline="always")
def _remaining(sf, b, fixed_t, bounds, rest):
    """What remains of each dimension of row ``b`` after its fixed temporal and its spatial factors
    (``MapSpace._rest``), into ``rest``."""
    for d in range(sf.shape[2]):
        used = 1
        for li in range(sf.shape[1]):
            used *= sf[b, li, d]
        rest[d] = bounds[d] // (fixed_t[d] * used)


@njit(cache=True)
def fill_spatial_rows(sf, is_x, rows, groups, orders, coins, picks, free_s, fixed_t, bounds, fan, caps_s):
    """``MapSpace._fill_spatial`` for every row of ``rows`` (in place on ``sf``)."""
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
        _remaining(sf, b, fixed_t, bounds, rest)
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


# -- the neighbour moves with their random draws made here ------------------------------------------
# numba's np.random.Generator methods draw exactly what numpy's do from the same bit generator (its
# state is shared with the caller's generator), so these kernels make the reference's draws in the
# reference's order and a seed gives the same mappings on either path (tests hold them equal, the
# generator's state after the call included).

@njit(cache=True)
def fill_temporal_drawn(rng, sub_tf, rest, slots, nslots, primes_desc, nprimes, cap_t):
    """``MapSpace._fill_temporal``: per dimension with free temporal loops, its primes (largest first)
    permuted, then per prime one uniform per (row, free loop); each row's prime goes to the free loop
    with the highest draw among those with room (the innermost free loop when none has)."""
    n = sub_tf.shape[0]
    for d in range(rest.shape[1]):
        S = nslots[d]
        if S == 0:
            continue
        for p in rng.permutation(primes_desc[d, :nprimes[d]]):
            draws = rng.random(n * S)
            for r in range(n):
                if rest[r, d] % p != 0:
                    continue
                pick = 0
                best = -2.0
                for j in range(S):
                    li = slots[d, j]
                    score = draws[r * S + j] if sub_tf[r, li, d] * p <= cap_t[li, d] else -1.0
                    if score > best:
                        best = score
                        pick = j
                if best < 0:
                    pick = S - 1
                sub_tf[r, slots[d, pick], d] *= p
                rest[r, d] //= p


@njit(cache=True)
def move_primes_drawn(rng, tf, sf, rows, times, movable, slot_lv, slot_sp, nslots, uprimes, nuprimes):
    """``MapSpace._move_primes``: ``times`` rounds of one dimension drawn per row (``choice(movable)``),
    then per dimension in increasing order its rows' prime, source scores and destination."""
    n = rows.shape[0]
    if movable.shape[0] == 0 or n == 0:
        return
    for _ in range(times):
        dsel = movable[rng.integers(0, movable.shape[0], n)]
        for d in range(tf.shape[2]):
            m = 0
            for i in range(n):
                if dsel[i] == d:
                    m += 1
            if m == 0:
                continue
            rr = rows[dsel == d]
            S = nslots[d]
            p = uprimes[d][rng.integers(0, nuprimes[d], m)]
            rand = rng.random(m * S).reshape((m, S))
            dst = rng.integers(0, S - 1, m)
            move_primes_rows(tf, sf, rr, d, slot_lv[d, :S], slot_sp[d, :S], p, rand, dst)


@njit(cache=True)
def swap_loops_drawn(rng, tperm, rows, live, n_live):
    """Kind-2 neighbour moves: per row a level, then two of its live loop positions swapped; the pair
    drawn as numpy's ``choice(positions, 2, replace=False)`` does (Floyd's algorithm, then a shuffle)."""
    L = live.shape[1]
    for k in range(rows.shape[0]):
        li = rng.integers(0, L)
        n = n_live[k, li]
        if n < 2:
            continue
        a = rng.integers(0, n - 1)
        b = rng.integers(0, n)
        if b == a:
            b = n - 1
        rng.integers(0, 2)              # the shuffle of the pair: a swap is symmetric, the draw is not skipped
        x = -1
        y = -1
        c = 0
        for pos in range(live.shape[2]):
            if live[k, li, pos]:
                if c == a:
                    x = pos
                if c == b:
                    y = pos
                c += 1
        r = rows[k]
        t = tperm[r, li, x]
        tperm[r, li, x] = tperm[r, li, y]
        tperm[r, li, y] = t


@njit(cache=True)
def draw_spatial_redraws(rng, n, ngroups):
    """Kind-5 neighbour moves' draws, row by row: which spatial level (an index into ``ngroups``), then
    for its G fanned-out (level, axis) groups a permutation, G coins (< 0.75) and G picks."""
    gmax = 1
    for g in ngroups:
        gmax = max(gmax, g)
    which = np.empty(n, dtype=np.int64)
    orders = np.zeros((n, gmax), dtype=np.int64)
    coins = np.zeros((n, gmax), dtype=np.bool_)
    picks = np.zeros((n, gmax))
    for k in range(n):
        i = rng.integers(0, ngroups.shape[0])
        g = ngroups[i]
        which[k] = i
        orders[k, :g] = rng.permutation(g)
        coins[k, :g] = rng.random(g) < 0.75
        picks[k, :g] = rng.random(g)
    return which, orders, coins, picks


@njit(cache=True)
def neighbour_moves(rng, kind, tf, sf, tperm, sperm, split, keep, movable, slot_lv, slot_sp, nslots, uprimes,
                    nuprimes, t_pinned, split_free, keep_fixed, spatial_levels, level_groups, ngroups, sf_reset,
                    free_s, fixed_t, bounds, fan, caps_s, t_init, t_slots, nt_slots, primes_desc, nprimes_desc,
                    cap_t):
    """``MapSpace.neighbours``' moves in place on the parents' copies, row ``r`` moved as ``kind[r]`` says,
    every draw made here in the reference's order (kinds 0 to 5 in turn, as ``_neighbour_moves_py``)."""
    n, L, D = tf.shape
    P = keep.shape[2]
    rows = np.arange(n)
    move_primes_drawn(rng, tf, sf, rows[kind == 0], 1, movable, slot_lv, slot_sp, nslots, uprimes, nuprimes)
    move_primes_drawn(rng, tf, sf, rows[kind == 1], 2, movable, slot_lv, slot_sp, nslots, uprimes, nuprimes)
    # 2: swap two live loops of one level's temporal order
    r2 = rows[kind == 2]
    live = np.zeros((r2.shape[0], L, D), dtype=np.bool_)
    n_live = np.zeros((r2.shape[0], L), dtype=np.int64)
    for k in range(r2.shape[0]):
        for li in range(L):
            for pos in range(D):
                d = tperm[r2[k], li, pos]
                if tf[r2[k], li, d] > 1 and not t_pinned[li, d]:
                    live[k, li, pos] = True
                    n_live[k, li] += 1
    swap_loops_drawn(rng, tperm, r2, live, n_live)
    # 3: move a spatial split by one
    r3 = rows[kind == 3]
    if r3.shape[0]:
        lv3 = rng.integers(0, L, r3.shape[0])
        step = rng.integers(0, 2, r3.shape[0])              # numpy's choice([-1, 1]): index 0 or 1
        for k in range(r3.shape[0]):
            li = lv3[k]
            if split_free[li]:
                split[r3[k], li] = min(max(split[r3[k], li] + (1 if step[k] else -1), 0), D)
    # 4: toggle one free keep flag
    r4 = rows[kind == 4]
    if r4.shape[0]:
        lv4 = rng.integers(0, L, r4.shape[0])
        pv = rng.integers(0, P, r4.shape[0])
        for k in range(r4.shape[0]):
            if keep_fixed[lv4[k], pv[k]] == 0:
                keep[r4[k], lv4[k], pv[k]] = not keep[r4[k], lv4[k], pv[k]]
    # 5: redraw one spatial level's factors, then every temporal factor
    r5 = rows[kind == 5]
    if r5.shape[0] == 0 or spatial_levels.shape[0] == 0:
        return
    is_x = np.zeros((n, L, D), dtype=np.bool_)
    for r in r5:
        for li in range(L):
            for pos in range(D):
                is_x[r, li, sperm[r, li, pos]] = pos < split[r, li]
    which, orders, coins, picks = draw_spatial_redraws(rng, r5.shape[0], ngroups)
    for k in range(r5.shape[0]):
        li = spatial_levels[which[k]]
        sf[r5[k], li, :] = sf_reset[li]
    for i in range(spatial_levels.shape[0]):
        mine = np.flatnonzero(which == i)
        if mine.shape[0]:
            g = ngroups[i]
            fill_spatial_rows(sf, is_x, r5[mine], level_groups[i, :g], orders[mine, :g].copy(),
                              coins[mine, :g].copy(), picks[mine, :g].copy(), free_s, fixed_t, bounds, fan, caps_s)
    m = r5.shape[0]
    sub_tf = np.empty((m, L, D), dtype=tf.dtype)
    rest = np.empty((m, D), dtype=np.int64)
    for k in range(m):
        sub_tf[k] = t_init
        _remaining(sf, r5[k], fixed_t, bounds, rest[k])
    fill_temporal_drawn(rng, sub_tf, rest, t_slots, nt_slots, primes_desc, nprimes_desc, cap_t)
    for k in range(m):
        tf[r5[k]] = sub_tf[k]
