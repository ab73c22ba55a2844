"""Results that cross module boundaries: one layer mapped, a whole network mapped.

Units inside are pJ and cycles; the network totals are reported in µJ per
inference, cycles and ms, inferences/s, mm² and mW (see DESIGN.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from coopt.arch.spec import Architecture
from coopt.model.evaluate import MappingEval
from coopt.model.mapping import Mapping, mapping_to_yaml
from coopt.workload.problem import Problem


@dataclass
class LayerResult:
    """The best mapping found for one layer shape (or why there is none)."""

    name: str
    count: int
    problem: Problem
    mapping: Mapping | None
    eval: MappingEval | None
    engine: str = "native"
    evaluated: int = 0
    valid: int = 0
    seconds: float = 0.0
    reason: str = ""
    members: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.eval is not None and self.eval.valid

    @property
    def energy_pj(self) -> float:
        return self.eval.energy_pj if self.found else float("inf")

    @property
    def cycles(self) -> int:
        return self.eval.cycles if self.found else 0

    def to_dict(self, arch: Architecture) -> dict:
        d = {"name": self.name, "count": self.count, "members": list(self.members), "found": self.found,
             "reason": self.reason, "engine": self.engine, "mappings_evaluated": self.evaluated,
             "seconds": round(self.seconds, 4),
             "shape": {k: int(v) for k, v in self.problem.bounds.items()} | {
                 k: int(v) for k, v in self.problem.coefficients.items()}}
        if self.found:
            e = self.eval
            d.update({"energy_pj": e.energy_pj, "cycles": e.cycles, "utilization": e.utilization,
                      "macs": e.macs, "pj_per_mac": e.pj_per_mac,
                      "mapping": mapping_to_yaml(self.mapping, arch, self.problem)["mapping"],
                      "levels": e.to_dict()["levels"]})
        return d


@dataclass
class NetworkResult:
    """Every unique layer mapped; totals for one inference, layers run one after another."""

    network: str
    arch: Architecture
    layers: list[LayerResult]
    area_um2: float
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return all(l.found for l in self.layers)

    @property
    def energy_pj(self) -> float:
        return sum(l.count * l.energy_pj for l in self.layers)

    @property
    def energy_uj(self) -> float:
        return self.energy_pj / 1e6

    @property
    def latency_cycles(self) -> int:
        return sum(l.count * l.cycles for l in self.layers)

    @property
    def latency_s(self) -> float:
        return self.latency_cycles * self.arch.cycle_seconds

    @property
    def throughput_ips(self) -> float:
        return 1.0 / self.latency_s if self.feasible and self.latency_s > 0 else 0.0

    @property
    def power_mw(self) -> float:
        return self.energy_pj * 1e-12 / self.latency_s * 1e3 if self.feasible and self.latency_s > 0 else 0.0

    @property
    def area_mm2(self) -> float:
        return self.area_um2 / 1e6

    @property
    def macs(self) -> int:
        return sum(l.count * l.problem.macs for l in self.layers)

    def infeasible_reasons(self) -> list[str]:
        return [f"{l.name}: {l.reason}" for l in self.layers if not l.found]

    def to_dict(self) -> dict:
        return {"network": self.network, "arch": self.arch.name, "feasible": self.feasible,
                "energy_uj": self.energy_uj, "latency_cycles": self.latency_cycles,
                "latency_ms": self.latency_s * 1e3, "throughput_ips": self.throughput_ips,
                "area_mm2": self.area_mm2, "power_mw": self.power_mw, "macs": self.macs,
                "seconds": round(self.seconds, 3),
                "reasons": self.infeasible_reasons(),
                "layers": [l.to_dict(self.arch) for l in self.layers], **self.extra}
