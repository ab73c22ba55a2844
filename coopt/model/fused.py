"""The mapper's batch evaluation: energy, cycles and validity of every mapping in a batch.

The reference is the array chain ``nest_stats`` -> ``collapse`` -> ``evaluate_costs``.
The compiled form runs the same arithmetic one mapping at a time (set-up, walk totals,
collapse, costs) in scratch arrays that stay in the CPU cache, instead of writing a dozen
batch-sized intermediate arrays: the model's speed is memory-bound otherwise.  Every
floating-point sum keeps the reference's order (numpy's pairwise summation is replayed
in ``kernel._pairwise``), so the two agree bit for bit (tests/test_model_fused.py), link
transfers between neighbouring instances included.
"""
from __future__ import annotations

import numpy as np

from coopt.arch.spec import Architecture
from coopt.model import jit
from coopt.model.batch import MappingBatch
from coopt.model.collapse import collapse, collapse_numpy
from coopt.model.cost import ArchCosts, evaluate_costs
from coopt.model.nest import ProblemArrays, nest_stats, nest_stats_numpy

PAIRWISE_MAX = 128      # numpy sums up to this many terms in one block (what kernel._pairwise replays)

def evaluate_batch(pa: ProblemArrays, arch: Architecture, ac: ArchCosts, mb: MappingBatch):
    """(energy pJ, cycles, valid) per mapping, compiled when the process has switched to the kernels."""
    if ac.sparse is not None:                  # densities / sparse optimisations: Sparseloop's accounting
        from coopt.model.sparse.batch import evaluate_batch_sparse
        return evaluate_batch_sparse(pa, arch, ac, mb)
    if jit.enabled() and ac.L * pa.P * 3 <= PAIRWISE_MAX:
        return _evaluate_compiled(pa, arch, ac, mb)
    return _evaluate_chain(pa, arch, ac, mb)


def _evaluate_chain(pa: ProblemArrays, arch: Architecture, ac: ArchCosts, mb: MappingBatch):
    ns = nest_stats(pa, arch, mb)
    c = evaluate_costs(ns, collapse(ns, mb.keep, pa.read_write), ac)
    return c.energy, c.cycles, c.valid


def evaluate_batch_numpy(pa: ProblemArrays, arch: Architecture, ac: ArchCosts, mb: MappingBatch):
    """The reference chain with every step in numpy (the tests' oracle)."""
    ns = nest_stats_numpy(pa, arch, mb)
    c = evaluate_costs(ns, collapse_numpy(ns, mb.keep, pa.read_write), ac)
    return c.energy, c.cycles, c.valid


def _evaluate_compiled(pa: ProblemArrays, arch: Architecture, ac: ArchCosts, mb: MappingBatch):
    B = len(mb)
    from coopt.model.kernel import evaluate_rows      # numba loads only once a process asks for it

    assert ac.L * pa.P * 3 <= PAIRWISE_MAX, "numpy sums that many terms in several blocks"
    i64 = np.int64
    energy = np.empty(B)
    cycles = np.empty(B)
    valid = np.empty(B, dtype=np.bool_)
    nzd, nzc, nnz = pa.sparse
    evaluate_rows(*(np.ascontiguousarray(a, dtype=i64) for a in (mb.tf, mb.tperm, mb.sf, mb.sperm, mb.split)),
                  np.ascontiguousarray(mb.keep, dtype=np.bool_), pa.coef, nzd, nzc, nnz, pa.codes, pa.half,
                  pa.radix, np.asarray(pa.read_write, dtype=np.bool_), ac.level_table, ac.op_energy,
                  float(ac.mac_energy), float(ac.mac_instances), ac.phys, energy, cycles, valid)
    return energy, cycles, valid
