"""Energy, cycles, utilisation and validity from access counts: Timeloop's buffer/MAC models.

A port of the dense paths of timeloop/src/model/buffer.cpp (vector accesses,
energy, leakage, bandwidth-bound cycles, capacity and instance checks),
arithmetic.cpp and topology.cpp, vectorised over a batch.  Address
generation, temporal-reduction and network energies are zero in public
Timeloop (its PAT adder and wire models return 0) and so they are here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coopt.arch.spec import Architecture
from coopt.energy.tables import EnergyTables
from coopt.model.collapse import Accesses, NestStats

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
    reason: list                # [B] str ('' when valid)


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
        self.area = (sum(tables.area(lvl.name) * lvl.instances for lvl in arch.storage)
                     + tables.area(arch.arithmetic.name) * arch.arithmetic.instances)


def _fail(reason, mask, text_fn):
    for b in np.nonzero(mask)[0]:
        if not reason[b]:
            reason[b] = text_fn(b)


def evaluate_costs(nest: NestStats, acc: Accesses, ac: ArchCosts, fanout_ok: np.ndarray | None = None,
                   fanout_reason: list | None = None) -> Costs:
    B, L, P = acc.reads.shape
    reason = [""] * B
    if fanout_reason is not None:
        for b in range(B):
            reason[b] = fanout_reason[b]

    compute_cycles = nest.compute.astype(np.float64)
    macs = compute_cycles * nest.compute_repl

    # --- validity: MAC instances, capacity, instances and mesh extents ---------
    _fail(reason, nest.compute_repl > ac.mac_instances,
          lambda b: f"mapping uses {int(nest.compute_repl[b])} MACs, the design has {ac.mac_instances}")
    used = acc.utilized.sum(axis=2)                                         # [B,L]
    over = used > ac.capacity[None, :]
    for li in range(L):
        _fail(reason, over[:, li], lambda b, li=li:
              f"{ac.names[li]}: tile of {int(used[b, li])} words exceeds its capacity of "
              f"{int(ac.capacity[li])} words")
    under = (ac.min_util[None, :] > 0) & (used < np.where(np.isfinite(ac.capacity), ac.capacity, 0)[None, :]
                                          * ac.min_util[None, :])
    for li in range(L):
        _fail(reason, under[:, li], lambda b, li=li:
              f"{ac.names[li]}: tile of {int(used[b, li])} words is below its minimum utilisation")
    for li in range(L):
        _fail(reason, nest.repl[:, li] > ac.instances[li], lambda b, li=li:
              f"{ac.names[li]}: mapping uses {int(nest.repl[b, li])} instances of {int(ac.instances[li])}")
        _fail(reason, nest.xexp[:, li] > ac.mesh_x[li], lambda b, li=li:
              f"{ac.names[li]}: mapping spreads {int(nest.xexp[b, li])} wide in X, mesh is {int(ac.mesh_x[li])}")
        _fail(reason, nest.yexp[:, li] > ac.mesh_y[li], lambda b, li=li:
              f"{ac.names[li]}: mapping spreads {int(nest.yexp[b, li])} high in Y, mesh is {int(ac.mesh_y[li])}")
    valid = np.array([not r for r in reason])

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
                 utilization=utilization, macs=macs, valid=valid, reason=reason)
