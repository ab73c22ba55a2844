"""``coopt map``'s work: the chosen engine's mapper on one Timeloop-style input set.

Every engine's answer comes back as the native mapper's :class:`MapperResult`
so that reporting and file writing never know which engine ran.
"""
from __future__ import annotations

from coopt.backends.base import get_backend
from coopt.inputs import InputSet
from coopt.mapper.constraints import constraints_from_inputs
from coopt.mapper.options import MapperOptions
from coopt.mapper.search import MapperResult, SearchStats, parse_metric, search
from coopt.workload.networks import NetworkLayer

__all__ = ["file_metric", "map_inputs", "map_summary"]


def file_metric(inputs: InputSet) -> tuple | None:
    """The ``mapper:`` block's optimization_metrics (Timeloop's default metric for the run), if any."""
    block = inputs.raw.get("mapper") or {}
    metric = block.get("optimization_metrics") or block.get("optimization_metric") or None
    return parse_metric(metric) if metric else None


def map_inputs(inputs: InputSet, options: MapperOptions, engine: str = "native",
               timeloop_bin: str | None = None) -> MapperResult:
    """The best mapping of the input set's layer under its constraints, by ``engine``'s mapper."""
    cons = constraints_from_inputs(inputs.raw, inputs.arch, inputs.problem, inputs.sources)
    if engine == "native":
        return search(inputs.problem, inputs.arch, inputs.tables, cons, metric=options.metric,
                      budget=options.budget, seed=options.seed, strategy=options.strategy)
    backend = get_backend(engine, timeloop_bin=timeloop_bin)
    layer = NetworkLayer(inputs.problem.name, inputs.problem, 1, (inputs.problem.name,))
    lr = backend.map_layer(layer, inputs.arch, inputs.tables, cons, options)
    stats = SearchStats(evaluated=lr.evaluated, valid=lr.valid, seconds=lr.seconds)
    return MapperResult(lr.mapping, lr.eval, options.metric, stats, reason=lr.reason)


def map_summary(r: MapperResult, mapping_doc: dict | None) -> dict:
    """``coopt map --json``'s object (and ``coopt-mapper.stats.json``)."""
    if not r.found:
        return {"found": False, "reason": r.reason, "mappings_evaluated": r.stats.evaluated,
                "seconds": r.stats.seconds}
    return {**r.eval.to_dict(), "mapping": mapping_doc["mapping"], "metric": list(r.metric),
            "mappings_evaluated": r.stats.evaluated, "mappings_valid": r.stats.valid,
            "mappings_pruned": r.stats.pruned, "seconds": r.stats.seconds}
