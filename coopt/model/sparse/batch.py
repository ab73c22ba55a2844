"""The mapper's view of sparsity: a batch of mappings ranked by their Sparseloop energy and cycles.

``SparseTables`` carries a ``SparseSpec`` with the energy tables, so that the
mapper (which builds its ``ArchCosts`` from the tables) evaluates every
candidate through ``evaluate_batch_sparse`` without knowing about sparsity:
the dense chain's per-level counts, then the sparse accounting over the
whole batch (``vector``, ``vformats``), or ``evaluate_sparse`` row by row.  A
mapping the sparse model cannot evaluate exactly counts as invalid, never as
a dense number.  At a level holding a formatted tensor, capacity is checked on
compressed tiles (``capacity``); the mapper's prefilter leaves those levels to
this check (``MapSpace.leave_capacity_to_the_model``).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from coopt.energy.tables import EnergyTables
from coopt.model.sparse.spec import SparseUnsupported


@dataclass(frozen=True)
class SparseTables(EnergyTables):
    """Energy tables that also carry the layer's densities and sparse optimisations."""

    sparse: object = None       # SparseSpec


def with_sparsity(tables: EnergyTables, spec) -> SparseTables:
    return SparseTables(tables.ert, tables.art, tables.source, sparse=spec)


def evaluate_batch_sparse(pa, arch, ac, mb, *, row_by_row: bool = False):
    """(energy pJ, cycles, valid) per mapping under ``ac.sparse`` (the fused path's contract).

    The whole batch goes through ``vector`` (with ``vformats`` for
    representation formats); ``row_by_row`` forces ``evaluate_sparse`` per
    mapping (the tests' oracle), as does a compressed format at a level
    whose block size Timeloop's vector-width table lacks.
    """
    from coopt.model import jit
    from coopt.model.collapse import collapse, collapse_numpy
    from coopt.model.cost import evaluate_costs
    from coopt.model.evaluate import _to_eval
    from coopt.model.nest import nest_stats, nest_stats_numpy
    from coopt.model.sparse.analysis import evaluate_sparse
    from coopt.model.sparse.capacity import formatted_levels, relaxed

    problem = pa.problem
    if not len(mb):
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)
    compiled = jit.enabled()          # the compiled nest and collapse equal numpy's bit for bit
    ns = (nest_stats if compiled else nest_stats_numpy)(pa, arch, mb)
    acc = (collapse if compiled else collapse_numpy)(ns, mb.keep, pa.read_write)
    from coopt.model.sparse.vformats import vectorisable
    if not row_by_row and vectorisable(ac.sparse, arch):
        # capacity at levels holding a formatted tensor is checked on compressed tiles (vector._validity)
        costs = _dense_basics(ns, acc, relaxed(ac, formatted_levels(ac.sparse, arch)))
        from coopt.model.sparse.analysis import static_checks
        from coopt.model.sparse.vector import evaluate_batch_vector
        try:
            static_checks(ac.sparse, problem, arch)
        except SparseUnsupported:
            B = len(mb)
            return np.full(B, np.inf), np.full(B, np.inf), np.zeros(B, dtype=bool)
        return evaluate_batch_vector(ac.sparse, problem, arch, ac.tables, ns, acc, costs, mb, ac)
    costs = evaluate_costs(ns, acc, ac)
    names = [lvl.name for lvl in arch.storage]
    ds_names = [ds.name for ds in problem.dataspaces]
    B = len(mb)
    energy, cycles, valid = np.empty(B), np.empty(B), np.zeros(B, dtype=bool)
    for b in range(B):
        dense = _to_eval(problem, arch, ns, acc, costs, ac, b)
        try:
            se = evaluate_sparse(ac.sparse, problem, arch, ac.tables, mb.mapping(b, names, problem.dims, ds_names),
                                 dense, arch_costs=ac)
        except SparseUnsupported:
            energy[b], cycles[b] = np.inf, np.inf
            continue
        energy[b], cycles[b], valid[b] = se.energy_pj, se.cycles, se.valid
    return energy, cycles, valid


def _dense_basics(ns, acc, ac) -> SimpleNamespace:
    """What the batch form reads of the dense costs (validity and its reason, MACs, compute cycles),
    by ``cost.evaluate_costs``' own expressions, without the dense energies and cycles it never uses."""
    from coopt.model.cost import _Checks

    checks = _Checks(ns, acc, ac, None)
    compute_cycles = ns.compute.astype(np.float64)
    return SimpleNamespace(valid=checks.valid, reason=checks.reason, compute_cycles=compute_cycles,
                           macs=compute_cycles * ns.compute_repl)
