"""Sparsity in the style of Sparseloop (Timeloop's sparse model, MICRO 2022).

``spec`` reads a problem's ``densities`` and the ``sparse_optimizations``
block and checks them; ``analysis`` turns a dense evaluation into Timeloop's
actual / gated / skipped action counts, the compute's gated and skipped MACs,
cycles and energy.  The dense engine is untouched: this package only reads
its per-level counts.  What is modelled exactly is listed in
``analysis.supported``; anything else is refused in one line, never
approximated.
"""
from coopt.model.sparse.analysis import SparseEval, evaluate_sparse
from coopt.model.sparse.spec import SparseSpec, SparseUnsupported, is_sparse, sparse_spec_from_yaml, split_problem_node

__all__ = ["SparseEval", "SparseSpec", "SparseUnsupported", "evaluate_sparse", "is_sparse", "sparse_spec_from_yaml",
           "split_problem_node"]
