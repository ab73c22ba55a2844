"""The native engine: coopt's vectorised model and mapper, results cached per process.

The cache key is everything the result depends on (architecture, layer
shape, energy tables, constraints, metric, budget, seed, strategy), so a
repeated layer shape or a repeated design costs nothing.
"""
from __future__ import annotations

from collections import OrderedDict

from coopt.arch.spec import Architecture
from coopt.backends.base import Backend, MapperOptions
from coopt.energy.tables import EnergyTables
from coopt.mapper.constraints import MapConstraints
from coopt.mapper.search import search
from coopt.results import LayerResult
from coopt.workload.networks import NetworkLayer

_CACHE: "OrderedDict[tuple, LayerResult]" = OrderedDict()
_CACHE_SIZE = 4096


def _tables_key(tables: EnergyTables) -> tuple:
    """The tables, and the densities and sparse optimisations that SparseTables carry (None: dense)."""
    return (tuple(sorted((k, tuple(sorted(v.items()))) for k, v in tables.ert.items())),
            tuple(sorted(tables.art.items())), repr(getattr(tables, "sparse", None)))


class NativeBackend(Backend):
    name = "native"

    def evaluate(self, problem, arch: Architecture, tables: EnergyTables, mapping):
        from coopt.model.evaluate import evaluate
        return evaluate(problem, arch, tables, mapping)

    def map_layer(self, layer: NetworkLayer, arch: Architecture, tables: EnergyTables,
                  constraints: MapConstraints, options: MapperOptions) -> LayerResult:
        key = (arch.fingerprint(), layer.problem.signature(), _tables_key(tables), constraints.key(),
               options.key())
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return _renamed(hit, layer)
        r = search(layer.problem, arch, tables, constraints, metric=options.metric, budget=options.budget,
                   seed=options.seed, strategy=options.strategy)
        result = LayerResult(name=layer.name, count=layer.count, problem=layer.problem, mapping=r.mapping,
                             eval=r.eval, engine=self.name, evaluated=r.stats.evaluated, valid=r.stats.valid,
                             seconds=r.stats.seconds, reason=r.reason or (r.eval.reason if r.eval else ""),
                             members=layer.members)
        _CACHE[key] = result
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return result


def _renamed(r: LayerResult, layer: NetworkLayer) -> LayerResult:
    from dataclasses import replace
    return replace(r, name=layer.name, count=layer.count, members=layer.members)
