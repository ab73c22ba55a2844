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


def layer_sparse_spec(problem, arch, densities, targets, arch_node=None):
    """The ``SparseSpec`` of one network layer (its Timeloop ``densities`` and the design's
    ``sparse_optimizations`` targets), or None when the layer is dense and unoptimised."""
    from coopt.model.sparse import is_sparse, sparse_spec_from_yaml

    spec = sparse_spec_from_yaml(problem, arch, densities or None, {"targets": targets} if targets else None,
                                 arch_node=arch_node)
    return spec if is_sparse(spec) else None


def map_layer_sparse(layer, arch, tables, constraints, options, spec, engine: str = "native"):
    """One network layer mapped under sparsity: every candidate ranked by its Sparseloop cost, and the
    layer's figures (energy, cycles, utilisation, MAC energy) those of Sparseloop's accounting.

    The result's ``levels`` is empty: the dense per-level split does not describe a sparse run.
    """
    from dataclasses import replace

    from coopt.backends.base import get_backend
    from coopt.model.evaluate import evaluate
    from coopt.model.sparse import evaluate_sparse
    from coopt.model.sparse.batch import with_sparsity

    if engine != "native":
        raise CooptError(f"engine {engine!r} with densities or sparse_optimizations", key="--engine",
                         expected="native (the engine that models sparsity)")
    stables = with_sparsity(tables, spec)
    r = get_backend("native").map_layer(layer, arch, stables, constraints, options)
    if not r.found:
        return r
    se = evaluate_sparse(spec, layer.problem, arch, stables, r.mapping, evaluate(layer.problem, arch, stables,
                                                                                  r.mapping))
    ev = replace(r.eval, valid=se.valid, reason=se.reason, energy_pj=se.energy_pj, cycles=se.cycles,
                 compute_cycles=se.compute_cycles, utilization=se.utilization, mac_energy_pj=se.mac_energy_pj,
                 levels=[])
    return replace(r, eval=ev, reason=r.reason or se.reason)


def evaluate_recorded(problem_doc: dict, arch, tables, mapping_doc: dict, arch_doc: dict | None = None,
                      name: str | None = None):
    """A layer of a study record evaluated again as the study evaluated it: ``(problem, dense MappingEval,
    SparseEval or None)``.  ``problem_doc`` is Timeloop's problem file (its ``instance.densities`` read
    here), ``arch_doc`` the record's ``arch_yaml`` (its ``sparse_optimizations``)."""
    from coopt.model.evaluate import evaluate
    from coopt.model.mapping import mapping_from_yaml
    from coopt.model.sparse import evaluate_sparse, split_problem_node
    from coopt.workload.yaml_io import problem_from_yaml

    node, densities = split_problem_node(problem_doc["problem"])
    problem = problem_from_yaml(node, name=name)
    mapping = mapping_from_yaml(mapping_doc["mapping"], arch, problem)
    dense = evaluate(problem, arch, tables, mapping)
    targets = ((arch_doc or {}).get("sparse_optimizations") or {}).get("targets")
    spec = layer_sparse_spec(problem, arch, densities, targets, (arch_doc or {}).get("architecture"))
    if spec is None:
        return problem, dense, None
    return problem, dense, evaluate_sparse(spec, problem, arch, tables, mapping, dense)


def network_sparse(design, densities: dict | None) -> dict | None:
    """What ``map_network`` needs to map a design under sparsity, as plain data that travels to workers:
    the layers' densities (``{layer name: Timeloop densities}``), the design's ``sparse_targets`` and its
    architecture node.  None: the dense path, unchanged."""
    if not densities and not design.sparse_targets:
        return None
    return {"densities": densities or {}, "targets": design.sparse_targets, "arch": design.arch_yaml["architecture"]}
