"""Where a design's energy and area go: per component, per inference.

Why: a trial record keeps each layer's total energy and its best mapping, not
the per-level split; people choosing between designs want to see which
buffer dominates.  Re-evaluating the recorded mappings (one model evaluation
per layer, milliseconds) gives the split exactly as the study computed it,
so MLflow and ``coopt export`` show the same table without the records
growing.
"""
from __future__ import annotations

from dataclasses import dataclass

from coopt.study.records import TrialRecord


@dataclass
class ComponentShare:
    component: str
    instances: int
    area_mm2: float          # all instances
    energy_uj: float         # per inference (dynamic + leakage), all layers x counts


def component_breakdown(rec: TrialRecord) -> list[ComponentShare]:
    """Storage levels outer to inner, then the MAC; energies over the layers that were mapped."""
    from coopt.arch.yaml_io import arch_from_yaml
    from coopt.backends.sparse import evaluate_recorded
    from coopt.energy.select import arch_tables

    arch = arch_from_yaml(rec.arch_yaml["architecture"])
    tables = arch_tables(arch, using=rec.energy_method)   # the tables the study used
    energy_pj = {lvl.name: 0.0 for lvl in arch.storage}
    mac_pj = 0.0
    for layer in rec.layers:
        if not (layer.found and layer.mapping_yaml):
            continue
        _, ev, sparse = evaluate_recorded(layer.problem_yaml, arch, tables, layer.mapping_yaml, rec.arch_yaml,
                                          layer.name)
        if sparse is not None:             # a sparse study: Sparseloop's per-level energies
            for lvl, d in sparse.levels.items():
                energy_pj[lvl] = energy_pj.get(lvl, 0.0) + layer.count * float(d["energy_pj"])
            mac_pj += layer.count * sparse.mac_energy_pj
            continue
        for lv in ev.levels:
            energy_pj[lv.name] = energy_pj.get(lv.name, 0.0) + layer.count * lv.energy_pj
        mac_pj += layer.count * ev.mac_energy_pj
    out = [ComponentShare(lvl.name, lvl.instances, tables.area(lvl.name) * lvl.instances / 1e6,
                          energy_pj.get(lvl.name, 0.0) / 1e6) for lvl in reversed(arch.storage)]
    mac = arch.arithmetic
    out.append(ComponentShare(mac.name, mac.instances, tables.area(mac.name) * mac.instances / 1e6, mac_pj / 1e6))
    return out


def headroom(rec: TrialRecord, budgets: dict[str, float]) -> dict[str, float]:
    """Budget minus value per budget (positive: room left; negative: over budget)."""
    out = {}
    for key, limit in budgets.items():
        if key in rec.violations:
            out[key] = -float(rec.violations[key])
        elif key in rec.metrics:
            out[key] = float(limit) - float(rec.metrics[key])
    return out
