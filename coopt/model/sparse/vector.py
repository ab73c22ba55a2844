"""The sparse accounting over a whole batch of mappings at once.

The same arithmetic as ``analysis.evaluate_sparse`` -- the same floors,
ceilings and summation order, so the two agree number for number
(tests/test_sparse_vector.py, tests/test_sparse_batch_formats.py) -- on
[batch, level, tensor] arrays: the mapper evaluates thousands of candidates
per layer.  Representation formats (compressed data, metadata accesses,
decompression, their checks) come from ``vformats``.  Rows the sparse model
refuses (a target kept below its optimising level, spatial loops under it,
a format outside the modelled subset) come back invalid.

Terms that are 0 in every row are skipped: adding +0.0 changes no sum.
"""
from __future__ import annotations

import numpy as np

from coopt.model.sparse.actions import KINDS, OPS, compute_action_energy, storage_action_energy

ACTIONS = [f"{k}_{op}" for k in KINDS for op in OPS]       # analysis._storage_counts' key order
COUNTS = ["decompression_count", "compression_count"]
METADATA = [f"random_metadata_{op}" for op in OPS] + [f"{k}_metadata_{op}" for k in ("gated", "skipped")
                                                      for op in ("read", "update")]


def _innermost(mb):
    """Per row: (level, dimension index) of the innermost non-trivial temporal loop (level L: none), as
    analysis.innermost_loop."""
    B, L, D = mb.tf.shape
    ordered = np.take_along_axis(mb.tf, mb.tperm, axis=2).reshape(B, L * D) > 1     # levels inner first
    first = np.where(ordered.any(axis=1), np.argmax(ordered, axis=1), L * D)
    level = first // D
    dim = mb.tperm.reshape(B, L * D)[np.arange(B), np.minimum(first, L * D - 1)]
    return level, dim


def _masks(spec, problem, arch, mb, spatial):
    """Per row: kind (0 none, 1 gated, 2 skipped) and probability per [level, tensor]; rows refused."""
    keep = mb.keep
    inner_level, inner_dim = _innermost(mb)
    names = [lvl.name for lvl in arch.storage]
    tensors = [ds.name for ds in problem.dataspaces]
    B, L, P = keep.shape
    kind = np.zeros((B, L, P), dtype=np.int8)
    prob = np.zeros((B, L, P))
    bad = np.zeros(B, dtype=bool)
    rows = np.arange(B)
    ordered = sorted((a for a in spec.actions if a.kind == "gating"), key=lambda a: names.index(a.level)) + \
        sorted((a for a in spec.actions if a.kind == "skipping"), key=lambda a: names.index(a.level))
    for a in ordered:
        li, t = names.index(a.level), tensors.index(a.target)
        kept = keep[:, li:, t]
        has = kept.any(axis=1)
        tl = li + np.argmax(kept, axis=1)
        bad |= ~has
        moved = has & (tl != li)               # analysis._moves_up, row by row
        target = problem.dataspaces[t]
        if target.read_write:
            if len(a.condition_on) == 1:
                has &= ~moved
            else:
                bad |= moved
        else:
            none = inner_level > tl
            on_target = np.isin(inner_dim, [problem.dims.index(x) for x in target.dims()])
            on_leader = np.isin(inner_dim, [problem.dims.index(x) for c in a.condition_on
                                            for x in problem.dataspace(c).dims()])
            bad |= moved & none
            has &= ~(moved & ~none & ~(on_target & ~on_leader))
        below = np.cumsum(keep[:, :, t], axis=1) - keep[:, :, t]          # levels below each that keep it
        bad |= has & (below[rows, tl] > 0)
        spatial_upto = np.cumsum(spatial, axis=1)
        bad |= has & (spatial_upto[rows, tl] > 0)
        p = _leader_probabilities(spec, problem, arch, mb, a, li, tl, has, bad)
        code = 1 if a.kind == "gating" else 2
        tl = np.where(has, tl, 0)
        cur_k, cur_p = kind[rows, tl, t], prob[rows, tl, t]
        take = has & ((cur_k == 0) | (cur_p < p))
        kind[rows[take], tl[take], t] = code
        prob[rows[take], tl[take], t] = p[take]
    return kind, prob, bad


def _leader_probabilities(spec, problem, arch, mb, a, li, tl, has, bad):
    """Per row, analysis._read_impact with analysis.leader_tiles: a kept target's leaders that the innermost
    level's first loop projects to are conditioned on a block of elements; rows it cannot model go to bad."""
    from coopt.model.sparse.analysis import _empty
    from coopt.model.sparse.spec import SparseUnsupported

    block = arch.storage[li].block_size
    first = mb.tperm[:, 0, 0]
    effectual = np.ones(len(tl))
    for c in a.condition_on:
        scalar = 1.0 - _empty(spec, problem, c, 1)
        stretched = (tl == li) & np.isin(first, [problem.dims.index(x) for x in problem.dataspace(c).dims()]) \
            if block > 1 else np.zeros(len(tl), dtype=bool)
        if stretched.any():
            try:
                wide = 1.0 - _empty(spec, problem, c, block)
            except SparseUnsupported:
                bad |= has & stretched
                wide = scalar
            effectual = effectual * np.where(stretched, wide, scalar)
        else:
            effectual = effectual * scalar
    return 1.0 - effectual


def _apply_local(c, li, t, rows, p, kind, rw):
    """analysis._apply_local on the rows ``rows`` with per-row probabilities ``p`` and kinds."""
    r = c["random_read"][rows, li, t]
    dr = np.ceil(r * p) if rw else np.floor(r * p)
    u = c["random_update"][rows, li, t]
    du = np.floor(u * p)
    for code, name in ((1, "gated"), (2, "skipped")):
        sel = kind == code
        c[f"{name}_read"][rows[sel], li, t] += dr[sel]
        c[f"{name}_update"][rows[sel], li, t] += du[sel]
    c["random_read"][rows, li, t] = r - dr
    c["random_update"][rows, li, t] = u - du


def _formats(spec, problem, arch, mb, acc, c, bad):
    """Formatted tensors' compressed data and metadata accesses (analysis._storage_counts' first loop)."""
    from coopt.model.sparse.vformats import batch_formats

    B, L, P = acc.reads.shape
    fm, fbad = batch_formats(spec, problem, arch, mb, acc.utilized)
    bad |= fbad
    fact = np.zeros((B, L, P), dtype=bool)
    md = {}
    for (li, t), f in fm.items():
        fact[:, li, t] = f.active
        tile = acc.utilized[:, li, t].astype(np.float64)
        d = {}                        # the gated/skipped ones appear when _move_metadata moves some
        for op, dense in (("read", acc.reads), ("fill", acc.fills), ("update", acc.updates)):
            x = dense[:, li, t].astype(np.float64)
            if op != "update" or problem.dataspaces[t].read_write:       # formats.compressed_count
                c[f"random_{op}"][:, li, t] = np.where(f.active, x - np.floor(x * (1 - f.density)),
                                                       c[f"random_{op}"][:, li, t])
            ratio = np.where(tile != 0, x / np.maximum(tile, 1), 0.0)           # formats.format_accesses
            d[f"random_metadata_{op}"] = np.ceil(f.md_units * ratio[:, None, None])
        md[li, t] = d
    return fm, fact, md


def _move_metadata(fm, fact, md, li, t, rows, p, kinds):
    """analysis._apply_local's metadata part: the child's ranks (or all, innermost) move with the data."""
    f = fm[li, t]
    on = fact[rows, li, t]
    rows, p, kinds = rows[on], p[on], kinds[on]
    child = f.child[rows]
    nr = np.where(child < 0, f.n, 0)
    for (k, tt), g in fm.items():
        if tt == t and k < li:
            nr = np.where((child == k) & fact[rows, k, t], g.n, nr)
    keep = (np.arange(f.n)[None, :] < np.minimum(nr, f.n)[:, None])[..., None]
    for op in ("read", "update"):
        ranks = md[li, t][f"random_metadata_{op}"]
        delta = np.where(keep, np.floor(ranks[rows] * p[:, None, None]), 0.0)
        ranks[rows] -= delta
        for code, name in ((1, "gated"), (2, "skipped")):
            sel = kinds == code
            if sel.any():
                moved = md[li, t].setdefault(f"{name}_metadata_{op}", np.zeros(ranks.shape))
                moved[rows[sel]] = delta[sel]


def _bits(acc, f):
    return (acc * f.word_bits).sum(axis=(1, 2))          # formats.format_bits (integers, exact)


def _validity(spec, problem, arch, mb, costs, fm, acc):
    """analysis._validity over the batch: ``costs`` checked all but capacity at formatted levels, which is
    checked here on compressed tiles (``capacity``)."""
    from coopt.model.sparse.capacity import occupancy
    from coopt.model.sparse.vformats import format_failures, pysum

    pre = format_failures(spec, problem, arch, mb.keep)
    for f in fm.values():
        pre |= f.active & f.fail
    over = np.zeros(len(pre), dtype=bool)
    for li in sorted({li for li, _ in fm}):
        lvl = arch.storage[li]
        if lvl.effective_size is None:
            continue
        words = acc.utilized[:, li, :].copy()
        for (l2, t), f in fm.items():
            if l2 == li:
                d = spec.density(problem.dataspaces[t].name)
                words[:, t] = np.where(f.active, occupancy(acc.utilized[:, li, t], d), words[:, t])
        used = pysum(words[:, t] for t in range(words.shape[1]))
        over |= used > lvl.effective_size
        if lvl.min_utilization > 0:
            over |= used < lvl.effective_size * lvl.min_utilization
    for li, lvl in enumerate(arch.storage):
        meta = spec.metadata.get(lvl.name)
        if meta is None or meta.storage_depth is None:
            continue
        bits = np.zeros(len(pre))
        for (l2, _), f in fm.items():
            if l2 == li:
                u, w = f.max_units, f.word_bits
                tot = pysum(u[:, r, 0] * w[:, r, 0] + u[:, r, 1] * w[:, r, 1] for r in range(f.n))
                bits = bits + np.where(f.active, np.ceil(tot), 0.0)
        over |= (bits != 0) & (bits > meta.storage_depth * meta.storage_width)
    return costs.valid & ~pre & ~over


def evaluate_batch_vector(spec, problem, arch, tables, ns, acc, costs, mb, ac):
    """(energy pJ, cycles, valid) per row, as ``evaluate_sparse`` row by row would give them."""
    from coopt.model.sparse.vformats import vector_ratio

    B, L, P = acc.reads.shape
    spatial = mb.sf.max(axis=2) > 1                          # [B,L] some spatial loop (factors are >= 1)
    kind, prob, bad = _masks(spec, problem, arch, mb, spatial)
    counts = np.zeros((len(ACTIONS) + len(COUNTS), B, L, P))     # one array: energy takes each step at once
    c = dict(zip(ACTIONS + COUNTS, counts))                         # views, updated in place
    c["random_read"][:], c["random_fill"][:], c["random_update"][:] = acc.reads, acc.fills, acc.updates
    fm, fact, md = _formats(spec, problem, arch, mb, acc, c, bad) if spec.formats else ({}, None, {})
    macs = costs.macs.astype(np.float64).copy()
    inner = np.full((B, P), np.nan)
    done = np.zeros((B, L, P), dtype=bool)
    for t, ds in enumerate(problem.dataspaces):
        for li in range(L - 1, -1, -1):
            rows = np.nonzero(kind[:, li, t])[0]
            if not len(rows):
                continue
            p = prob[rows, li, t]
            active = np.ones(len(rows), dtype=bool)
            for below in range(li - 1, -1, -1):
                ar = rows[active]
                pa = p[active]
                if fm:                    # gating/skipping above a formatted level is not modelled
                    bad[ar] |= fact[ar, below, t]
                for op in OPS:
                    x = c[f"random_{op}"][ar, below, t]
                    c[f"random_{op}"][ar, below, t] = x - np.floor(x * pa)
                hit = kind[ar, below, t] != 0
                if hit.any():
                    hr = ar[hit]
                    eff = 1 - (1 - prob[hr, below, t]) / (1 - pa[hit])
                    _apply_local(c, below, t, hr, eff, kind[hr, below, t], ds.read_write)
                    done[hr, below, t] = True
                    idx = np.nonzero(active)[0][hit]
                    active[idx] = False
            todo = ~done[rows, li, t]
            if todo.any():
                tr = rows[todo]
                done[tr, li, t] = True
                _apply_local(c, li, t, tr, p[todo], kind[tr, li, t], ds.read_write)
                if (li, t) in fm:
                    _move_metadata(fm, fact, md, li, t, tr, p[todo], kind[tr, li, t])
            if not ds.read_write and active.any():
                ar = rows[active]
                macs[ar] -= np.floor(macs[ar] * p[active])
                inner[ar, t] = np.rint(p[active] * 1e6) / 1e6
    has_md = np.zeros((B, P), dtype=bool)
    rows = np.arange(B)
    for (li, t), f in fm.items():             # CalculateDecompressionCompressionCost, at the child
        if f.compressed:
            on = np.nonzero(f.active & (f.child >= 0))[0]
            ch = f.child[on]
            c["decompression_count"][on, ch, t] = c["random_fill"][on, ch, t]
            if problem.dataspaces[t].read_write:
                c["compression_count"][on, ch, t] = c["random_update"][on, li, t]
    if fm:
        for t in range(P):
            kept = mb.keep[:, :, t]
            has_md[:, t] = kept.any(axis=1) & fact[rows, np.argmax(kept, axis=1), t]
    random, gated, skipped = _compute(spec, problem, macs, inner, has_md)
    dense_macs = costs.macs.astype(np.int64)
    dense_cc = costs.compute_cycles.astype(np.int64)
    repl = np.maximum(1, dense_macs // np.maximum(1, dense_cc))
    cc = np.ceil((random + gated) / repl)
    cycles = cc.copy()
    bits = {(k, a): _bits(d[a], fm[k]) if a in d else 0.0 for k, d in md.items() for a in METADATA}
    for li, lvl in enumerate(arch.storage):
        if lvl.read_bandwidth is None and lvl.write_bandwidth is None and lvl.shared_bandwidth is None:
            continue                                # never slower than the compute
        rbw, wbw = np.zeros(B), np.zeros(B)          # analysis: per tensor, summed in tensor order
        for t in range(P):
            rd = c["random_read"][:, li, t] + c["gated_read"][:, li, t]
            wr = (c["random_fill"][:, li, t] + c["random_update"][:, li, t] + c["gated_fill"][:, li, t]
                  + c["gated_update"][:, li, t])
            f = fm.get((li, t))
            if f is not None:                  # metadata words share the data's bandwidth
                k = (li, t)
                rbits = bits[k, "random_metadata_read"] + bits[k, "gated_metadata_read"]
                wbits = bits[k, "random_metadata_fill"] + bits[k, "random_metadata_update"] \
                    + bits[k, "gated_metadata_update"]
                rd = rd + np.where(f.active, np.floor_divide(rbits, lvl.word_bits), 0.0)   # analysis: whole words
                wr = wr + np.where(f.active, np.floor_divide(wbits, lvl.word_bits), 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                rbw = rbw + np.where(cc > 0, rd / cc, 0.0)
                wbw = wbw + np.where(cc > 0, wr / cc, 0.0)
        slow = np.ones(B)
        with np.errstate(divide="ignore", invalid="ignore"):
            for bw, need in ((lvl.read_bandwidth, rbw), (lvl.write_bandwidth, wbw), (lvl.shared_bandwidth, wbw + rbw)):
                if bw is not None:
                    slow = np.where(bw < need, np.minimum(slow, bw / need), slow)
            lc = np.ceil(cc / slow)
        cycles = np.maximum(cycles, lc)
    mac = arch.arithmetic.name
    energy = 0 + random * compute_action_energy(tables, mac, "random_compute") \
        + gated * compute_action_energy(tables, mac, "gated_compute") \
        + skipped * compute_action_energy(tables, mac, "skipped_compute")
    e = _storage_energy(spec, problem, arch, tables, acc, counts, fm, md, bits, vector_ratio)
    repl_l = np.maximum(1, ns.repl.astype(np.int64))                            # [B,L]
    lvl_e = e[:, :, 0] * repl_l
    for t in range(1, P):
        lvl_e = lvl_e + e[:, :, t] * repl_l
    leak = np.asarray(ac.leak)[None, :] * cycles[:, None] * repl_l
    for li in range(L):
        energy = energy + (lvl_e[:, li] + leak[:, li])
    valid = _validity(spec, problem, arch, mb, costs, fm, acc) if fm else costs.valid.copy()
    valid &= ~bad
    return np.where(bad, np.inf, energy), np.where(bad, np.inf, cycles), valid


_ENERGY: dict = {}


def _energies(tables, arch) -> np.ndarray:
    """[action, level] pJ for ACTIONS + COUNTS + METADATA (cached per tables and design: the mapper's loop)."""
    key = (id(tables), id(arch))
    hit = _ENERGY.get(key)
    if hit is None or hit[0] is not tables or hit[1] is not arch:
        if len(_ENERGY) > 64:
            _ENERGY.clear()
        hit = _ENERGY[key] = (tables, arch, np.array([[storage_action_energy(tables, lvl.name, a)
                                                        for lvl in arch.storage]
                                                       for a in ACTIONS + COUNTS + METADATA]))
    return hit[2]


def _storage_energy(spec, problem, arch, tables, acc, counts, fm, md, bits, vector_ratio):
    """[B,L,P] pJ per instance: the data actions in analysis' key order, then the counts, then metadata."""
    B, L, P = acc.reads.shape
    en = _energies(tables, arch)
    A = len(ACTIONS)
    blk = np.array([lvl.block_size for lvl in arch.storage], dtype=np.float64)[None, :, None]
    ratio = 1.0
    if fm:
        ratio = np.ones((B, L, P))
        for (li, t), f in fm.items():
            r = vector_ratio(f, acc.utilized[:, li, t], arch.storage[li].block_size,
                             spec.density(problem.dataspaces[t].name))
            ratio[:, li, t] = np.where(f.active, r, 1.0)
    e = np.zeros((B, L, P))
    for i in range(A + len(COUNTS)):     # left to right, as analysis._add; a term that is 0 everywhere adds nothing
        if not en[i].any() or not counts[i].any():
            continue
        e = e + (counts[i] if i >= A else np.ceil(counts[i] / blk) * ratio) * en[i][None, :, None]
    if not fm:
        return e
    for (li, t), f in fm.items():
        lvl = arch.storage[li]
        width = spec.metadata[lvl.name].storage_width if lvl.name in spec.metadata else 0
        if not width:
            continue
        m = 0.0
        for j, a in enumerate(METADATA):      # the absent ones (0 bits) add nothing
            if a in md[li, t]:
                m = m + np.ceil(bits[(li, t), a] / width) * en[A + len(COUNTS) + j, li]
        e[:, li, t] = np.where(f.active, e[:, li, t] + m, e[:, li, t])
    return e


def _compute(spec, problem, total, inner, has_md):
    """analysis._compute_counts per row: (random, gated, skipped) MACs, the same nine terms in the same order.

    An operand whose innermost storage keeps metadata is absent (NE) rather
    than a stored zero (EZ) when zero; terms of probability 0 add nothing.
    """
    from coopt.model.sparse.analysis import scalar_density

    zero = np.zeros_like(total)
    ops = [t for t, ds in enumerate(problem.dataspaces) if not ds.read_write]
    if len(ops) != 2:
        return np.trunc(total), zero, zero
    a, b = ops
    da, db = (round(scalar_density(spec, problem, problem.dataspaces[t].name) * 1e6) / 1e6 for t in (a, b))
    ia, ib = inner[:, a], inner[:, b]
    ea = np.where(np.isnan(ib), da, da / (1 - np.nan_to_num(ib)))
    eb = np.where(np.isnan(ia), db, db / (1 - np.nan_to_num(ia)))
    ea, eb = np.clip(ea, 0.0, 1.0), np.clip(eb, 0.0, 1.0)
    gate = "gate_on_zero_operand" in spec.compute
    skip = "skip_on_not_aligned_operands" in spec.compute
    if not has_md.any():
        if not gate:
            return total, zero, zero
        za, zb = 1 - ea, 1 - eb
        gated = np.floor(((0.0 + total * ea * zb) + total * za * eb) + total * za * zb)
        return total - gated, gated, zero
    states = []
    for e, md in ((ea, has_md[:, a]), (eb, has_md[:, b])):
        z = 1 - e
        states.append({"ENZ": e, "EZ": np.where(md, 0.0, z), "NE": np.where(md, z, 0.0)})
    acc = {"random": 0.0, "gated": 0.0, "skipped": 0.0, "nonexistent": 0.0}
    for sa, pa in states[0].items():
        for sb, pb in states[1].items():
            n = total * pa * pb
            if sa == sb == "NE":
                to = "nonexistent"
            elif "NE" in (sa, sb):
                to = "skipped" if skip else "gated" if gate else "random"
            elif "EZ" in (sa, sb) and gate:
                to = "gated"
            else:
                to = "random"
            acc[to] = acc[to] + n
    skipped, gated = np.floor(acc["skipped"]), np.floor(acc["gated"])
    return np.trunc(total - skipped - gated - np.floor(acc["nonexistent"])), gated, skipped
