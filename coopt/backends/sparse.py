"""Sparse evaluation of one input set: the native dense model, then Sparseloop's accounting.

Only the native engine models sparsity; asking another engine for a sparse
input is refused rather than answered with dense numbers.
"""
from __future__ import annotations

from coopt.errors import CooptError


def evaluate_sparse_inputs(inputs, engine: str = "native"):
    """``SparseEval`` of the input set's mapping (``inputs.sparse`` is set)."""
    if engine != "native":
        raise CooptError(f"engine {engine!r} with densities or sparse_optimizations", key="--engine",
                         expected="native (the engine that models sparsity)")
    from coopt.model.evaluate import evaluate
    from coopt.model.sparse import evaluate_sparse

    mapping = inputs.mapping()
    dense = evaluate(inputs.problem, inputs.arch, inputs.tables, mapping)
    try:
        return evaluate_sparse(inputs.sparse, inputs.problem, inputs.arch, inputs.tables, mapping, dense)
    except CooptError as err:      # name the file that holds the refused key
        if err.file:
            raise
        key = "problem" if (err.key or "").startswith("problem") else "sparse_optimizations"
        raise err.at(file=inputs.source(key)) from None


def map_sparse_inputs(inputs, options, engine: str = "native"):
    """The native mapper under sparsity: every candidate ranked by its Sparseloop energy and cycles.

    Returns (MapperResult, SparseEval of the best mapping or None).
    """
    if engine != "native":
        raise CooptError(f"engine {engine!r} with densities or sparse_optimizations", key="--engine",
                         expected="native (the engine that models sparsity)")
    from coopt.backends.single import map_inputs
    from coopt.model.evaluate import evaluate
    from coopt.model.sparse import evaluate_sparse
    from coopt.model.sparse.batch import with_sparsity

    inputs.tables = with_sparsity(inputs.tables, inputs.sparse)
    r = map_inputs(inputs, options, "native")
    if not r.found:
        return r, None
    dense = evaluate(inputs.problem, inputs.arch, inputs.tables, r.mapping)
    return r, evaluate_sparse(inputs.sparse, inputs.problem, inputs.arch, inputs.tables, r.mapping, dense)
