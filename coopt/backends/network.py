"""Map every unique layer of a network on one design with one engine; totals weighted by layer counts.

Layers are independent, so they are mapped in parallel worker processes
(``workers``); results come back in network order whatever order they finish.
It lives with the engines (not in ``coopt.mapper``) because it picks one:
dependencies run mapper -> engines, never back.
"""
from __future__ import annotations

import time
from typing import Callable

from coopt.arch.spec import Architecture
from coopt.backends.base import MapperOptions, get_backend
from coopt.energy.tables import EnergyTables
from coopt.errors import CooptError
from coopt.mapper.constraints import parse_constraints
from coopt.model.cost import arch_area
from coopt.results import LayerResult, NetworkResult
from coopt.workload.networks import Network, NetworkLayer

__all__ = ["map_layer", "map_network", "MAX_WORKERS"]

MAX_WORKERS = 256


def map_layer(layer: NetworkLayer, arch: Architecture, tables: EnergyTables, targets: list,
              options: MapperOptions, engine: str = "native", timeloop_bin: str | None = None,
              constraints_file: str | None = None, sparse: dict | None = None) -> LayerResult:
    """One layer on one design: the unit of work a worker (or a Ray task) runs.

    ``sparse`` (plain data, as it travels): ``{"densities": {layer name: Timeloop densities}, "targets":
    the design's sparse_optimizations targets, "arch": its architecture node (format metadata)}``."""
    constraints = parse_constraints(targets, arch, layer.problem, file=constraints_file)
    if sparse:
        from coopt.backends.sparse import layer_sparse_spec, map_layer_sparse
        spec = layer_sparse_spec(layer.problem, arch, (sparse.get("densities") or {}).get(layer.name),
                                 sparse.get("targets"), sparse.get("arch"))
        if spec is not None:
            return map_layer_sparse(layer, arch, tables, constraints, options, spec, engine)
    return get_backend(engine, timeloop_bin=timeloop_bin).map_layer(layer, arch, tables, constraints, options)


def map_network(network: Network, arch: Architecture, tables: EnergyTables, targets: list,
                options: MapperOptions, *, workers: int = 1, engine: str = "native",
                timeloop_bin: str | None = None, constraints_file: str | None = None,
                progress: Callable[[LayerResult], None] | None = None, sparse: dict | None = None) -> NetworkResult:
    if not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise CooptError(f"workers is {workers!r}", key="--workers", expected=f"an integer from 1 to {MAX_WORKERS}")
    t0 = time.perf_counter()
    layers = list(network.layers)
    check_layer_kinds(layers, arch, targets, constraints_file)
    _announce_work(layers, options, engine)
    results: list[LayerResult | None] = [None] * len(layers)
    if workers <= 1 or len(layers) == 1:
        for i, layer in enumerate(layers):
            results[i] = map_layer(layer, arch, tables, targets, options, engine, timeloop_bin,
                                   constraints_file, sparse)
            if progress:
                progress(results[i])
    else:
        import concurrent.futures as cf          # only with workers: process start counts for one
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            # biggest layers first so the pool finishes together
            order = sorted(range(len(layers)), key=lambda i: -layers[i].problem.macs)
            futs = {pool.submit(map_layer, layers[i], arch, tables, targets, options, engine, timeloop_bin,
                                constraints_file, sparse): i for i in order}
            for fut in cf.as_completed(futs):
                i = futs[fut]
                results[i] = fut.result()
                if progress:
                    progress(results[i])
    return NetworkResult(network=network.name, arch=arch, layers=results, area_um2=arch_area(arch, tables),
                         seconds=time.perf_counter() - t0)


def check_layer_kinds(layers: list, arch: Architecture, targets: list, constraints_file: str | None) -> None:
    """Bad constraints (unknown level or dimension, all bypassed) refused before any work; a layer of
    another kind (ranks, tensors) than the constraints were written for, named in one line."""
    kinds: dict[tuple, NetworkLayer] = {}
    for layer in layers:
        p = layer.problem
        kinds.setdefault((p.dims, tuple(ds.name for ds in p.dataspaces)), layer)
    for i, layer in enumerate(kinds.values()):
        try:
            parse_constraints(targets, arch, layer.problem, file=constraints_file)
        except CooptError as err:
            if i == 0:
                raise
            p = layer.problem
            raise type(err)(f"layer {layer.name} (ranks {','.join(p.dims)}; tensors "
                            f"{','.join(ds.name for ds in p.dataspaces)}) cannot be held by this design's "
                            f"constraints: {err.message}", file=err.file, key=err.key, expected=err.expected) from None


def _announce_work(layers: list, options: MapperOptions, engine: str) -> None:
    """A whole network is enough work for the compiled kernels (coopt.model.jit): switch them
    on before the worker processes fork, so each loads them once."""
    if engine == "native":
        from coopt.model import jit
        jit.request(len(layers) * options.budget)

