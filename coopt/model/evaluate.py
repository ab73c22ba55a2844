"""Evaluate one mapping or a batch of mappings: the native Timeloop-model equivalent.

``evaluate(problem, arch, tables, mapping)`` returns a ``MappingEval`` with
the numbers ``timeloop-model`` prints: per level and data space reads, fills,
updates and energy; cycles; utilisation; total energy.  The batch path
(``coopt.model.fused.evaluate_batch``) is what the mapper calls millions of times.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from coopt.arch.spec import Architecture
from coopt.energy.tables import EnergyTables
from coopt.model.collapse import NestStats, collapse, collapse_numpy
from coopt.model.cost import OPS, ArchCosts, Costs, evaluate_costs
from coopt.model.mapping import Mapping
from coopt.workload.problem import Problem


@dataclass
class LevelEval:
    name: str
    energy_pj: float
    leak_pj: float
    cycles: int
    instances_used: int
    dataspaces: dict = field(default_factory=dict)   # name -> {reads, fills, updates, energy_pj, tile}


@dataclass
class MappingEval:
    valid: bool
    reason: str
    energy_pj: float
    cycles: int
    compute_cycles: int
    utilization: float
    macs: int
    mac_energy_pj: float
    area_um2: float
    levels: list[LevelEval]

    @property
    def pj_per_mac(self) -> float:
        return self.energy_pj / self.macs if self.macs else float("nan")

    def to_dict(self) -> dict:
        return {
            "valid": self.valid,
            "reason": self.reason,
            "energy_pj": self.energy_pj,
            "pj_per_mac": self.pj_per_mac,
            "cycles": self.cycles,
            "utilization": self.utilization if self.utilization <= 1 else None,   # > 1: overflows the array
            "macs": self.macs,
            "mac_energy_pj": self.mac_energy_pj,
            "area_um2": self.area_um2,
            "levels": {lvl.name: {"energy_pj": lvl.energy_pj, "leak_pj": lvl.leak_pj, "cycles": lvl.cycles,
                                  "instances_used": lvl.instances_used, **lvl.dataspaces}
                       for lvl in self.levels},
        }


def fanout_violations(mapping: Mapping, arch: Architecture) -> str:
    """Spatial factors must fit each level's X and Y fan-out (Timeloop's mapspace rule)."""
    for li, lvl in enumerate(mapping.levels):
        fx, fy = arch.fanout(li)
        x, y = lvl.spatial_xy()
        if x > fx or y > fy:
            child = arch.arithmetic.name if li == 0 else arch.storage[li - 1].name
            return (f"{lvl.target}: spatial factors {x}x{y} (X x Y) exceed the fan-out {fx}x{fy} "
                    f"to {child}")
    return ""


def walk_stats(problem: Problem, arch: Architecture, mapping: Mapping) -> NestStats:
    """NestStats of one mapping from the literal walk (batch of 1)."""
    from coopt.model.walk import NestWalk          # the literal walk: tests and --engine walk only

    walk = NestWalk(problem, arch, mapping)
    stats = walk.level_stats()
    L, P = len(stats), len(problem.dataspaces)

    def arr(fn, dtype=np.float64):
        return np.array([[fn(s, p) for p in range(P)] for s in stats], dtype=dtype)[None]

    xexp, yexp = [], []
    for li in range(L):
        x = y = 1
        for lvl in mapping.levels[li + 1:]:
            sx, sy = lvl.spatial_xy()
            x, y = x * sx, y * sy
        xexp.append(x)
        yexp.append(y)
    cx = cy = 1
    for lvl in mapping.levels:
        sx, sy = lvl.spatial_xy()
        cx, cy = cx * sx, cy * sy
    return NestStats(
        size=arr(lambda s, p: s.size[p]),
        total=arr(lambda s, p: sum(s.access_stats[p].values())),
        weighted=arr(lambda s, p: sum(a * k[0] for k, a in s.access_stats[p].items())),
        link=arr(lambda s, p: s.link_transfers[p]),
        msize=arr(lambda s, p: s.master_size[p]),
        master=np.array([[s.master_spatial for s in stats]]),
        fanout=np.array([[s.fanout for s in stats]], dtype=np.float64),
        repl=np.array([[s.replication for s in stats]], dtype=np.float64),
        xexp=np.array([xexp], dtype=np.float64),
        yexp=np.array([yexp], dtype=np.float64),
        compute=np.array([walk.compute_per_instance()]),
        compute_repl=np.array([float(cx * cy)]),
    )


def keep_array(mappings: list[Mapping], problem: Problem) -> np.ndarray:
    names = [ds.name for ds in problem.dataspaces]
    return np.array([[[n in lvl.keep for n in names] for lvl in m.levels] for m in mappings], dtype=bool)


def evaluate(problem: Problem, arch: Architecture, tables: EnergyTables, mapping: Mapping,
             *, engine: str = "closed", arch_costs: ArchCosts | None = None) -> MappingEval:
    """Evaluate one mapping exactly as timeloop-model would.

    ``engine="closed"`` uses the vectorised closed form (fast), ``"walk"`` the
    literal walk of Timeloop's nest analysis; the tests hold them equal.
    """
    ac = arch_costs or ArchCosts(arch, tables)
    reason = fanout_violations(mapping, arch)
    compiled = False
    if engine == "walk":
        nest = walk_stats(problem, arch, mapping)
    else:
        # One mapping: the numpy reference (the same numbers as the kernels; loading a kernel that
        # is not loaded yet costs more than this whole evaluation), compiled only in a process with
        # many of them to do (jit.single_evaluations_compiled).
        from coopt.model import jit
        from coopt.model.batch import MappingBatch
        from coopt.model.nest import ProblemArrays, nest_stats, nest_stats_numpy
        names = [ds.name for ds in problem.dataspaces]
        compiled = jit.single_evaluations_compiled()
        nest = (nest_stats if compiled else nest_stats_numpy)(ProblemArrays(problem), arch,
                                                               MappingBatch.from_mappings([mapping], names))
    rw = np.array([ds.read_write for ds in problem.dataspaces])
    acc = (collapse if compiled else collapse_numpy)(nest, keep_array([mapping], problem), rw)
    costs = evaluate_costs(nest, acc, ac, fanout_reason=[reason])
    return _to_eval(problem, arch, nest, acc, costs, ac, 0)


def _to_eval(problem, arch, nest, acc, costs: Costs, ac: ArchCosts, b: int) -> MappingEval:
    levels = []
    for li, lvl in enumerate(arch.storage):
        ds = {}
        for p, d in enumerate(problem.dataspaces):
            ds[d.name] = {
                "reads": int(acc.reads[b, li, p]),
                "fills": int(acc.fills[b, li, p]),
                "updates": int(acc.updates[b, li, p]),
                "tile": int(acc.utilized[b, li, p]),
                "energy_pj": float(costs.level_energy[b, li, p].sum()),
                **{f"{op}_energy_pj": float(costs.level_energy[b, li, p, k]) for k, op in enumerate(OPS)},
            }
        levels.append(LevelEval(
            name=lvl.name,
            energy_pj=float(costs.level_energy[b, li].sum() + costs.leak_energy[b, li]),
            leak_pj=float(costs.leak_energy[b, li]),
            cycles=int(costs.level_cycles[b, li]),
            instances_used=int(nest.repl[b, li]),
            dataspaces=ds,
        ))
    return MappingEval(
        valid=bool(costs.valid[b]), reason=costs.reason(b), energy_pj=float(costs.energy[b]),
        cycles=int(costs.cycles[b]), compute_cycles=int(costs.compute_cycles[b]),
        utilization=float(costs.utilization[b]), macs=int(costs.macs[b]),
        mac_energy_pj=float(costs.mac_energy[b]), area_um2=float(ac.area), levels=levels)
