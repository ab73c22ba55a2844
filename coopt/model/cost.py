"""Energy, cycles, utilisation and validity from access counts: Timeloop's buffer/MAC models.

A port of the dense paths of timeloop/src/model/buffer.cpp (vector accesses,
energy, leakage, bandwidth-bound cycles, capacity and instance checks),
arithmetic.cpp and topology.cpp, vectorised over a batch.  Address
generation, temporal-reduction and network energies are zero in public
Timeloop (its PAT adder and wire models return 0) and so they are here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from coopt.arch.spec import Architecture
from coopt.energy.tables import EnergyTables
from coopt.model.collapse import Accesses, NestStats
from coopt.model.nest import physical_fanouts

OPS = ("read", "fill", "update")


@dataclass
class Costs:
    """Batch results; energies in pJ, per level and data space summed over instances."""

    energy: np.ndarray          # [B] total pJ
    level_energy: np.ndarray    # [B,L,P,3] pJ for read/fill/update
    leak_energy: np.ndarray     # [B,L] pJ
    mac_energy: np.ndarray      # [B]
    cycles: np.ndarray          # [B]
    compute_cycles: np.ndarray  # [B]
    level_cycles: np.ndarray    # [B,L]
    utilization: np.ndarray     # [B]
    macs: np.ndarray            # [B]
    valid: np.ndarray           # [B] bool
    reason: Callable[[int], str]  # row -> why it is invalid ('' when valid)


def arch_area(arch: Architecture, tables: EnergyTables) -> float:
    """Area of a design in µm²: every storage and MAC instance at its ART area."""
    return (sum(tables.area(lvl.name) * lvl.instances for lvl in arch.storage)
            + tables.area(arch.arithmetic.name) * arch.arithmetic.instances)


class ArchCosts:
    """Per-architecture constants the cost model needs, as arrays (computed once per design)."""

    def __init__(self, arch: Architecture, tables: EnergyTables):
        L = len(arch.storage)
        self.L = L
        self.names = [lvl.name for lvl in arch.storage]
        self.block = np.array([lvl.block_size for lvl in arch.storage], dtype=np.float64)
        self.op_energy = np.array([[tables.storage_energy(lvl.name, op) for op in OPS]
                                   for lvl in arch.storage])                      # [L,3]
        self.leak = np.array([tables.storage_energy(lvl.name, "leak") for lvl in arch.storage])
        self.capacity = np.array([np.inf if lvl.effective_size is None else lvl.effective_size
                                  for lvl in arch.storage], dtype=np.float64)
        self.min_util = np.array([lvl.min_utilization for lvl in arch.storage])
        self.instances = np.array([lvl.instances for lvl in arch.storage], dtype=np.float64)
        self.mesh_x = np.array([lvl.mesh_x for lvl in arch.storage], dtype=np.float64)
        self.mesh_y = np.array([lvl.mesh_y for lvl in arch.storage], dtype=np.float64)
        self.clusters = np.array([lvl.instances // max(1, lvl.cluster_size) for lvl in arch.storage],
                                 dtype=np.float64)
        nan = float("nan")
        self.read_bw = np.array([nan if lvl.read_bandwidth is None else lvl.read_bandwidth
                                 for lvl in arch.storage])
        self.write_bw = np.array([nan if lvl.write_bandwidth is None else lvl.write_bandwidth
                                  for lvl in arch.storage])
        self.shared_bw = np.array([nan if lvl.shared_bandwidth is None else lvl.shared_bandwidth
                                   for lvl in arch.storage])
        self.mac_energy = tables.compute_energy(arch.arithmetic.name)
        self.mac_instances = arch.arithmetic.instances
        self.mac_mesh = (arch.arithmetic.mesh_x, arch.arithmetic.mesh_y)
        self.area = arch_area(arch, tables)
        # for the compiled kernels: the per-level constants as one [11, L] array, rows in
        # coopt.model.kernel's order (BLOCK, LEAK, ...), and each level's physical (X, Y) fan-out
        self.level_table = np.ascontiguousarray(np.stack([
            self.block, self.leak, self.capacity, self.min_util, self.instances, self.mesh_x, self.mesh_y,
            self.clusters, self.read_bw, self.write_bw, self.shared_bw]).astype(np.float64))
        self.phys = physical_fanouts(arch)
        # sparsity (coopt.model.sparse.batch.SparseTables): the fused path's hook evaluates under it
        self.tables = tables
        self.sparse = getattr(tables, "sparse", None)


class _Checks:
    """Validity of every row as boolean arrays; the words of a reason only when asked for."""

    def __init__(self, nest: NestStats, acc: Accesses, ac: ArchCosts, fanout_reason: list | None):
        B, L = nest.repl.shape
        self.nest, self.ac, self.fanout_reason = nest, ac, fanout_reason
        self.used = acc.utilized.sum(axis=2)                               # [B,L]
        cap = np.where(np.isfinite(ac.capacity), ac.capacity, 0)
        # in the order reasons are reported: the first failing check names the problem
        self.checks = [
            ("macs", nest.compute_repl > ac.mac_instances),
            ("over", self.used > ac.capacity[None, :]),
            ("under", (ac.min_util[None, :] > 0) & (self.used < cap[None, :] * ac.min_util[None, :])),
            ("instances", nest.repl > ac.instances[None, :]),
            ("x", nest.xexp > ac.mesh_x[None, :]),
            ("y", nest.yexp > ac.mesh_y[None, :]),
        ]
        bad = np.zeros(B, dtype=bool)
        for _, m in self.checks:
            bad |= m if m.ndim == 1 else m.any(axis=1)
        if fanout_reason is not None:
            bad |= np.array([bool(r) for r in fanout_reason])
        self.valid = ~bad

    def reason(self, b: int) -> str:
        if self.valid[b]:
            return ""
        if self.fanout_reason is not None and self.fanout_reason[b]:
            return self.fanout_reason[b]
        nest, ac, used = self.nest, self.ac, self.used
        for kind, m in self.checks:
            if kind == "macs":
                if m[b]:
                    return f"mapping uses {int(nest.compute_repl[b])} MACs, the design has {ac.mac_instances}"
                continue
            for li in np.nonzero(m[b])[0]:
                name = ac.names[li]
                return {
                    "over": f"{name}: tile of {int(used[b, li])} words exceeds its capacity of "
                            f"{int(ac.capacity[li]) if np.isfinite(ac.capacity[li]) else 0} words",
                    "under": f"{name}: tile of {int(used[b, li])} words is below its minimum utilisation",
                    "instances": f"{name}: mapping uses {int(nest.repl[b, li])} instances of "
                                 f"{int(ac.instances[li])}",
                    "x": f"{name}: mapping spreads {int(nest.xexp[b, li])} wide in X, mesh is {int(ac.mesh_x[li])}",
                    "y": f"{name}: mapping spreads {int(nest.yexp[b, li])} high in Y, mesh is {int(ac.mesh_y[li])}",
                }[kind]
        return "invalid"


def evaluate_costs(nest: NestStats, acc: Accesses, ac: ArchCosts, fanout_ok: np.ndarray | None = None,
                   fanout_reason: list | None = None) -> Costs:
    B, L, P = acc.reads.shape
    compute_cycles = nest.compute.astype(np.float64)
    macs = compute_cycles * nest.compute_repl
    checks = _Checks(nest, acc, ac, fanout_reason)
    valid = checks.valid

    # --- energy --------------------------------------------------------------
    counts = np.stack([acc.reads, acc.fills, acc.updates], axis=-1)        # [B,L,P,3]
    vector = np.ceil(counts / ac.block[None, :, None, None])
    per_instance = vector * ac.op_energy[None, :, None, :]
    xy = (nest.xexp * nest.yexp).astype(np.float64)
    util_clusters = np.minimum(xy, ac.clusters[None, :])
    cluster_util = xy / util_clusters
    repl = nest.repl.astype(np.float64)
    level_energy = per_instance * (repl / cluster_util)[:, :, None, None]

    # --- cycles (bandwidth bound) -------------------------------------------
    cc = compute_cycles[:, None]
    rd = (acc.reads / cc[:, :, None]).sum(axis=2)      # [B,L] words/cycle/instance
    wr = ((acc.fills + acc.updates) / cc[:, :, None]).sum(axis=2)
    slow = np.ones((B, L))
    with np.errstate(divide="ignore", invalid="ignore"):
        for bw, need in ((ac.read_bw, rd), (ac.write_bw, wr), (ac.shared_bw, rd + wr)):
            lim = np.isfinite(bw)[None, :] & (bw[None, :] < need)
            slow = np.where(lim, np.minimum(slow, bw[None, :] / need), slow)
        level_cycles = np.ceil(cc / slow)
    cycles = np.maximum(compute_cycles, level_cycles.max(axis=1))

    leaks = np.maximum(1.0, repl)
    leak_energy = ac.leak[None, :] * cycles[:, None] * leaks
    mac_energy = macs * ac.mac_energy
    energy = level_energy.sum(axis=(1, 2, 3)) + leak_energy.sum(axis=1) + mac_energy
    utilization = (macs / ac.mac_instances) / cycles
    return Costs(energy=energy, level_energy=level_energy, leak_energy=leak_energy, mac_energy=mac_energy,
                 cycles=cycles, compute_cycles=compute_cycles, level_cycles=level_cycles,
                 utilization=utilization, macs=macs, valid=valid, reason=checks.reason)
