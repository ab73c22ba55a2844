"""Evaluate one design point: instantiate, map the whole network, total it, check budgets.

A design over a budget that no mapping changes (area, on-chip memory) is not mapped: its record says
so in every layer, and the sampler learns it is infeasible at no mapper cost.

This is the unit of work of a study trial; it knows nothing of Optuna or MLflow.
"""
from __future__ import annotations

import time

from coopt.mapper.options import MapperOptions
from coopt.arch.spec_template import SpecTemplate
from coopt.arch.template import Template
from coopt.design import design_from_template
from coopt.energy.select import method as energy_method
from coopt.backends.network import map_network
from coopt.backends.sparse import network_sparse
from coopt.model.cost import arch_area
from coopt.results import LayerResult, NetworkResult
from coopt.model.mapping import mapping_to_yaml
from coopt.study.records import LayerRecord, TrialRecord
from coopt.study.screening import MAPPING_INDEPENDENT_BUDGETS
from coopt.workload.networks import Network
from coopt.workload.yaml_io import problem_to_yaml

INFEASIBLE_ENERGY_UJ = 1e12        # told to samplers for designs a layer cannot be mapped on


def evaluate_design(number: int, params: dict, template: Template | SpecTemplate | str, template_params: dict, dataflow: str | None,
                    network: Network, options: MapperOptions, budgets: dict[str, float],
                    objectives: list[tuple[str, str]], worker: str = "", sparsity: dict | None = None) -> TrialRecord:
    """Map ``network`` on the template instance and return its record (never raises for bad designs).

    ``template`` may be the parsed Template or a user's v4 spec as data (SpecTemplate): a study sends it to
    workers that cannot read the file.
    ``sparsity``: each layer's Timeloop densities (``coopt.study.sparsity``); with them, or with sparse
    optimisations the design turns on, every layer is mapped and totalled under Sparseloop's model, and
    the record keeps the densities in its problems and the optimisations in its ``arch_yaml``."""
    t0 = time.perf_counter()
    design = design_from_template(template, template_params, dataflow)
    arch = design.arch
    sparse = network_sparse(design, sparsity)
    area_um2 = arch_area(arch, design.tables)
    over = _over_fixed_budgets({"area_mm2": area_um2 / 1e6, "onchip_kib": arch.onchip_kib}, budgets)
    if over:                                   # no mapping can bring it within budget: do not map it
        result = NetworkResult(network=network.name, arch=arch, area_um2=area_um2,
                               layers=[LayerResult(name=l.name, count=l.count, problem=l.problem, mapping=None,
                                                   eval=None, reason=f"not mapped: {over}", members=l.members)
                                       for l in network.layers])
    else:
        result = map_network(network, arch, design.tables, design.targets, options, workers=1, sparse=sparse)
    metrics = {
        "energy_uj": result.energy_uj if result.feasible else INFEASIBLE_ENERGY_UJ,
        "throughput_ips": result.throughput_ips,
        "latency_ms": result.latency_s * 1e3 if result.feasible else float("inf"),
        "latency_cycles": result.latency_cycles if result.feasible else 0,
        "area_mm2": result.area_mm2,
        "power_mw": result.power_mw,
        "onchip_kib": arch.onchip_kib,
        "edp_uj_ms": result.energy_uj * result.latency_s * 1e3 if result.feasible else float("inf"),
        "macs": result.macs,
        "mac_instances": arch.arithmetic.instances,
    }
    if network.not_mapped:                 # a user's model: what the totals leave out
        metrics["ops_not_mapped"] = sum(n.count for n in network.not_mapped)
        metrics["elements_not_mapped"] = sum(n.elements for n in network.not_mapped)
    reasons = ["not mapped: over a budget no mapping changes"] if over else list(result.infeasible_reasons())
    violations = {}
    for key, limit in budgets.items():
        value = metrics[key]
        violations[key] = value - limit
        if (result.feasible or over) and value > limit:
            reasons.append(f"{key} {value:.4g} exceeds the budget {limit:.4g}")
    unmapped = sum(1 for l in result.layers if not l.found)
    violations["unmapped_layers"] = float(unmapped)
    feasible = unmapped == 0 and all(v <= 0 for k, v in violations.items() if k != "unmapped_layers")
    layers = []
    for l in result.layers:
        layers.append(LayerRecord(
            name=l.name, count=l.count, found=l.found,
            energy_pj=l.eval.energy_pj if l.found else None, cycles=l.eval.cycles if l.found else None,
            utilization=l.eval.utilization if l.found else None,
            pj_per_mac=l.eval.pj_per_mac if l.found else None,
            mappings_evaluated=l.evaluated, seconds=l.seconds, reason=l.reason,
            problem_yaml=_problem_yaml(l, sparse),
            mapping_yaml=mapping_to_yaml(l.mapping, arch, l.problem) if l.found else None))
    return TrialRecord(
        number=number, params=dict(params), template=design.template, template_params=dict(design.params or {}),
        dataflow=design.dataflow, network=network.name, metrics=metrics, feasible=feasible,
        violations=violations, reasons=reasons,
        objectives=[float(metrics[name]) for name, _ in objectives],
        arch_yaml=_arch_yaml(design.arch_yaml, sparse), layers=layers, seconds=time.perf_counter() - t0, worker=worker,
        energy_method=energy_method(), not_mapped=[vars(n) for n in network.not_mapped], spec=design.spec)


def _problem_yaml(layer, sparse: dict | None) -> dict:
    """Timeloop's problem file of the layer, its densities in ``instance`` as Timeloop reads them."""
    doc = problem_to_yaml(layer.problem)
    dens = (sparse or {}).get("densities", {}).get(layer.name)
    if dens:
        doc["problem"]["instance"]["densities"] = dens
    return doc


def _arch_yaml(arch_yaml: dict, sparse: dict | None) -> dict:
    if not (sparse and sparse["targets"]):
        return arch_yaml
    return {**arch_yaml, "sparse_optimizations": {"targets": sparse["targets"]}}


def _over_fixed_budgets(fixed: dict[str, float], budgets: dict[str, float]) -> str:
    """Which budgets the design breaks before any mapping (``fixed``: its area and on-chip memory), as
    one phrase; '' if none.  A study spends no mapper time on such a design: it is infeasible whatever
    the mapping."""
    over = [f"{k} {fixed[k]:.4g} over the budget {limit:.4g}" for k, limit in sorted(budgets.items())
            if k in MAPPING_INDEPENDENT_BUDGETS and fixed[k] > limit]
    return "; ".join(over)
