"""Map every unique layer of a network on one design; totals weighted by layer counts.

Layers are independent, so they are mapped in parallel worker processes
(``workers``); results come back in network order whatever order they finish.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
from typing import Callable

from coopt.arch.spec import Architecture
from coopt.backends.base import MapperOptions, get_backend
from coopt.energy.tables import EnergyTables
from coopt.mapper.constraints import parse_constraints
from coopt.results import LayerResult, NetworkResult
from coopt.workload.networks import Network, NetworkLayer


def map_layer(layer: NetworkLayer, arch: Architecture, tables: EnergyTables, targets: list,
              options: MapperOptions, engine: str = "native", timeloop_bin: str | None = None) -> LayerResult:
    """One layer on one design: the unit of work a worker (or a Ray task) runs."""
    constraints = parse_constraints(targets, arch, layer.problem)
    return get_backend(engine, timeloop_bin=timeloop_bin).map_layer(layer, arch, tables, constraints, options)


def map_network(network: Network, arch: Architecture, tables: EnergyTables, targets: list,
                options: MapperOptions, *, workers: int = 1, engine: str = "native",
                timeloop_bin: str | None = None,
                progress: Callable[[LayerResult], None] | None = None) -> NetworkResult:
    t0 = time.perf_counter()
    layers = list(network.layers)
    _announce_work(layers, options, engine)
    results: list[LayerResult | None] = [None] * len(layers)
    if workers <= 1 or len(layers) == 1:
        for i, layer in enumerate(layers):
            results[i] = map_layer(layer, arch, tables, targets, options, engine, timeloop_bin)
            if progress:
                progress(results[i])
    else:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            # biggest layers first so the pool finishes together
            order = sorted(range(len(layers)), key=lambda i: -layers[i].problem.macs)
            futs = {pool.submit(map_layer, layers[i], arch, tables, targets, options, engine, timeloop_bin): i
                    for i in order}
            for fut in cf.as_completed(futs):
                i = futs[fut]
                results[i] = fut.result()
                if progress:
                    progress(results[i])
    area = _area(arch, tables)
    return NetworkResult(network=network.name, arch=arch, layers=results, area_um2=area,
                         seconds=time.perf_counter() - t0)


def _announce_work(layers: list, options: MapperOptions, engine: str) -> None:
    """A whole network is enough work for the compiled kernels (coopt.model.jit): switch them
    on before the worker processes fork, so each loads them once."""
    if engine == "native":
        from coopt.model import jit
        jit.request(len(layers) * options.budget)


def _area(arch: Architecture, tables: EnergyTables) -> float:
    return (sum(tables.area(l.name) * l.instances for l in arch.storage)
            + tables.area(arch.arithmetic.name) * arch.arithmetic.instances)
