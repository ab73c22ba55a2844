"""The sparse accounting over a whole batch of mappings at once (no representation formats).

The same arithmetic as ``analysis.evaluate_sparse`` -- the same floors,
ceilings and summation order, so the two agree number for number
(tests/test_sparse_vector.py) -- on [batch, level, tensor] arrays: the
mapper evaluates thousands of candidates per layer.  Rows the sparse model
refuses (a target kept below its optimising level, spatial loops under it)
come back invalid.  Inputs with formats take the row-by-row path.
"""
from __future__ import annotations

import numpy as np

from coopt.model.sparse.actions import KINDS, OPS, compute_action_energy, storage_action_energy

ACTIONS = [f"{k}_{op}" for k in KINDS for op in OPS]       # analysis._storage_counts' key order


def _masks(spec, problem, arch, keep, spatial):
    """Per row: kind (0 none, 1 gated, 2 skipped) and probability per [level, tensor]; rows refused."""
    from coopt.model.sparse.analysis import _read_impact

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
        if problem.dataspaces[t].read_write:
            bad |= has & (tl != li)
        below = np.cumsum(keep[:, :, t], axis=1) - keep[:, :, t]          # levels below each that keep it
        bad |= has & (below[rows, tl] > 0)
        spatial_upto = np.cumsum(spatial, axis=1)
        bad |= has & (spatial_upto[rows, tl] > 0)
        p = _read_impact(spec, problem, a.condition_on)
        code = 1 if a.kind == "gating" else 2
        tl = np.where(has, tl, 0)
        cur_k, cur_p = kind[rows, tl, t], prob[rows, tl, t]
        take = has & ((cur_k == 0) | (cur_p < p))
        kind[rows[take], tl[take], t] = code
        prob[rows[take], tl[take], t] = p
    return kind, prob, bad


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


def evaluate_batch_vector(spec, problem, arch, tables, ns, acc, costs, mb, ac):
    """(energy pJ, cycles, valid) per row, as ``evaluate_sparse`` row by row would give them."""
    B, L, P = acc.reads.shape
    spatial = (np.prod(mb.sf, axis=2) > 1)                                   # [B,L]
    kind, prob, bad = _masks(spec, problem, arch, mb.keep, spatial)
    c = {a: np.zeros((B, L, P)) for a in ACTIONS}
    c["random_read"] = acc.reads.astype(np.float64).copy()
    c["random_fill"] = acc.fills.astype(np.float64).copy()
    c["random_update"] = acc.updates.astype(np.float64).copy()
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
            if not ds.read_write and active.any():
                ar = rows[active]
                macs[ar] -= np.floor(macs[ar] * p[active])
                inner[ar, t] = np.rint(p[active] * 1e6) / 1e6
    random, gated = _compute(spec, problem, macs, inner)
    dense_macs = costs.macs.astype(np.int64)
    dense_cc = costs.compute_cycles.astype(np.int64)
    repl = np.maximum(1, dense_macs // np.maximum(1, dense_cc))
    cc = np.ceil((random + gated) / repl)
    cycles = cc.copy()
    for li, lvl in enumerate(arch.storage):
        rd = (c["random_read"][:, li] + c["gated_read"][:, li]).sum(axis=1)
        wr = sum(c[f"{k}_{op}"][:, li] for k in ("random", "gated") for op in ("fill", "update")).sum(axis=1)
        slow = np.ones(B)
        with np.errstate(divide="ignore", invalid="ignore"):
            for bw, need in ((lvl.read_bandwidth, rd), (lvl.write_bandwidth, wr), (lvl.shared_bandwidth, rd + wr)):
                need = np.where(cc > 0, need / cc, 0.0)
                if bw is not None:
                    slow = np.where(bw < need, np.minimum(slow, bw / need), slow)
            lc = np.ceil(cc / slow)
        cycles = np.maximum(cycles, lc)
    mac = arch.arithmetic.name
    energy = 0 + random * compute_action_energy(tables, mac, "random_compute") \
        + gated * compute_action_energy(tables, mac, "gated_compute") + 0 * compute_action_energy(
            tables, mac, "skipped_compute")
    for li, lvl in enumerate(arch.storage):
        repl_l = np.maximum(1, ns.repl[:, li].astype(np.int64))
        lvl_e = np.zeros(B)
        for t in range(P):
            e = np.zeros(B)
            for a in ACTIONS:
                e = e + np.ceil(c[a][:, li, t] / lvl.block_size) * 1.0 * storage_action_energy(tables, lvl.name, a)
            lvl_e = lvl_e + e * repl_l
        leak = ac.leak[li] * cycles * repl_l
        energy = energy + (lvl_e + leak)
    valid = costs.valid & ~bad
    return np.where(bad, np.inf, energy), np.where(bad, np.inf, cycles), valid


def _compute(spec, problem, total, inner):
    """analysis._compute_counts for uncompressed operands, per row: (random, gated) MACs."""
    from coopt.model.sparse.analysis import scalar_density

    ops = [t for t, ds in enumerate(problem.dataspaces) if not ds.read_write]
    if len(ops) != 2:
        return total, np.zeros_like(total)
    a, b = ops
    da, db = (round(scalar_density(spec, problem, problem.dataspaces[t].name) * 1e6) / 1e6 for t in (a, b))
    ia, ib = inner[:, a], inner[:, b]
    ea = np.where(np.isnan(ib), da, da / (1 - np.nan_to_num(ib)))
    eb = np.where(np.isnan(ia), db, db / (1 - np.nan_to_num(ia)))
    ea, eb = np.clip(ea, 0.0, 1.0), np.clip(eb, 0.0, 1.0)
    if "gate_on_zero_operand" not in spec.compute:
        return total, np.zeros_like(total)
    za, zb = 1 - ea, 1 - eb
    gated = ((0.0 + total * ea * zb) + total * za * eb) + total * za * zb
    gated = np.floor(gated)
    return total - gated, gated
