"""Sparseloop's accounting on top of a dense evaluation: gated/skipped accesses and MACs, cycles, energy.

A port of the parts of Timeloop's sparse analysis that coopt reproduces
exactly (src/sparse-analysis/):

* ``storage-gs-analyzer.cpp`` ComputeIneffectualReadImpact: the probability
  that a target's read is ineffectual is 1 - prod(1 - P(condition-on tile
  empty)).  Supported: the target is stored at the optimising level, nothing
  below it keeps the target (its child is the compute) and no spatial loop
  runs at or below that level -- then the condition-on tile is one scalar
  (``construct_scalar_mold``), which a fixed-structured density empties with
  probability 1 - density (fixed-structured-distribution.cpp; hypergeometric:
  1 - ceil(density * N) / N for a tensor of N elements).
* ``storage-optimization-combiner.cpp`` PropagateImpactOfExplicitlyOptimizedRead
  and ApplyLocalStorageSAFImpact: the rounding (ceil for read-write tensors'
  reads, floor otherwise), the impact on the levels below and on the MACs.
* ``compute-gs-analyzer.cpp`` CalculateFineGrainedComputeAccesses2Operand
  (the build's default): operand states, gate_on_zero_operand,
  skip_on_not_aligned_operands, pessimistic rounding.
* model/arithmetic.cpp (cycles = random + gated MACs over the utilised
  instances) and model/buffer.cpp ComputePerformance (bandwidth counts random
  and gated accesses, skipped ones cost no cycle).

Anything else (representation formats and metadata, spatial skipping,
gating above a child level or across spatial loops, banded densities, a
choice among several options) raises ``SparseUnsupported``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from coopt.model.sparse.actions import KINDS, OPS, compute_action_energy, storage_action_energy
from coopt.model.sparse.formats import (check_formats, compressed_count, format_accesses, format_bits,
                                        tensor_formats, vector_ratio)
from coopt.model.sparse.spec import SparseSpec, SparseUnsupported


@dataclass
class SparseEval:
    """Timeloop's sparse statistics for one mapping (counts per instance, energies in pJ, total)."""

    algorithmic_macs: int
    macs: dict                    # random/gated/skipped -> count
    mac_energy_pj: float
    energy_pj: float
    cycles: int
    compute_cycles: int
    utilization: float
    valid: bool = True
    reason: str = ""
    levels: dict = field(default_factory=dict)   # level -> {energy_pj, leak_pj, cycles, tensor -> counts}

    def to_dict(self) -> dict:
        return {"valid": self.valid, "reason": self.reason, "energy_pj": self.energy_pj,
                "cycles": self.cycles, "compute_cycles": self.compute_cycles,
                "utilization": self.utilization, "algorithmic_macs": self.algorithmic_macs,
                "macs": dict(self.macs), "mac_energy_pj": self.mac_energy_pj, "levels": self.levels}


def _unsupported(msg: str, key: str, expected: str) -> SparseUnsupported:
    return SparseUnsupported(msg, key=key, expected=expected)


def supported(spec: SparseSpec, problem, arch, mapping) -> None:
    """Raise ``SparseUnsupported`` unless every part of ``spec`` is modelled exactly."""
    check_formats(spec, problem, arch, mapping)
    for name, d in spec.densities.items():
        if d.distribution == "banded" and d.density < 1:
            raise _unsupported(f"{d.distribution} density for {name}", f"problem.instance.densities.{name}",
                               "fixed_structured or hypergeometric (banded densities are not modelled yet)")
    operands = [ds.name for ds in problem.dataspaces if not ds.read_write]
    if (spec.actions or spec.compute) and len(operands) != 2:
        raise _unsupported(f"{len(operands)} operand tensors", "problem.shape.data_spaces",
                           "two read-only operands (Timeloop's two-operand compute analysis)")
    seen = set()
    names = [lvl.name for lvl in arch.storage]
    for lvl in arch.storage:
        if lvl.cluster_size > 1:
            raise _unsupported(f"{lvl.name} has cluster_size {lvl.cluster_size}", f"architecture.{lvl.name}",
                               "cluster_size 1 with sparse tensors")
    for a in spec.actions:
        key = f"sparse_optimizations.{a.level}.action_optimization"
        if a.kind == "spatial_skipping":
            raise _unsupported("spatial_skipping", key, "gating or skipping")
        li = names.index(a.level)
        if (li, a.target) in seen:
            raise _unsupported(f"two optimisations of {a.target} at {a.level}", key, "one per tensor and level")
        seen.add((li, a.target))
        if a.target not in mapping.levels[li].keep:
            raise _unsupported(f"{a.target} is not kept at {a.level}", key,
                               "the target stored at the optimising level")
        if any(a.target in mapping.levels[k].keep for k in range(li)):
            raise _unsupported(f"{a.target} is also kept below {a.level}", key,
                               "the innermost level that keeps the target (gating above a child level "
                               "is not modelled yet)")
        if any(mapping.levels[k].spatial_xy() != (1, 1) for k in range(li + 1)):
            raise _unsupported(f"spatial loops at or below {a.level}", key,
                               "temporal loops only up to the optimising level")


def scalar_density(spec: SparseSpec, problem, tensor: str) -> float:
    """P(one element of ``tensor`` is nonzero), as Timeloop's density models answer for a 1-element tile.

    Fixed-structured: the density itself (fixed-structured-distribution.cpp);
    hypergeometric: ceil(density * N) nonzeros among the tensor's N elements
    (hypergeometric-distribution.cpp, SetWorkloadTensorSize).
    """
    d = spec.densities.get(tensor)
    if d is None or d.distribution == "fixed_structured":
        return spec.density(tensor)
    n = problem.dataspace_size(problem.dataspace(tensor))
    return math.ceil(d.density * n) / n


def _read_impact(spec: SparseSpec, problem, conds: tuple[str, ...]) -> float:
    """P(read ineffectual): some condition-on scalar is empty."""
    effectual = 1.0
    for c in conds:
        effectual *= scalar_density(spec, problem, c)
    return 1.0 - effectual


def _apply_local(rec: dict, p: float, kind: str, rw: bool) -> None:
    """ApplyLocalStorageSAFImpact: move a share p of reads and updates to gated/skipped."""
    dr = math.ceil(rec["random_read"] * p) if rw else math.floor(rec["random_read"] * p)
    rec[f"{kind}_read"] += dr
    rec["random_read"] -= dr
    du = math.floor(rec["random_update"] * p)
    rec[f"{kind}_update"] += du
    rec["random_update"] -= du


def _storage_counts(spec, problem, arch, mapping, dense, formats) -> tuple[dict, float, dict]:
    """Per level and tensor fine-grained counts, the MACs left and each operand's gating probability."""
    names = [lvl.name for lvl in arch.storage]
    L = len(names)
    rec = {}
    for li, lvl in enumerate(dense.levels):
        for ds in problem.dataspaces:
            c = lvl.dataspaces[ds.name]
            rec[li, ds.name] = {f"{k}_{op}": 0 for k in KINDS for op in OPS}
            for op in OPS:
                rec[li, ds.name][f"random_{op}"] = c[f"{op}s"]
            fmt = formats.get((li, ds.name))
            if fmt is not None:     # ProcessDataReprImpactOnStorageAccesses; the metadata moved alongside
                r = rec[li, ds.name]
                for op in OPS:
                    if op != "update" or ds.read_write:
                        r[f"random_{op}"] = compressed_count(r[f"random_{op}"], fmt.density)
                    r[f"random_metadata_{op}"] = format_accesses(fmt, c[f"{op}s"], c["tile"])
    kind_of = {(names.index(a.level), a.target): ("gated" if a.kind == "gating" else "skipped") for a in spec.actions}
    prob = {(names.index(a.level), a.target): _read_impact(spec, problem, a.condition_on) for a in spec.actions}
    macs = float(dense.macs)
    innermost = {}
    done = set()
    for ds in problem.dataspaces:
        for li in range(L - 1, -1, -1):
            if (li, ds.name) not in kind_of:
                continue
            p = prob[li, ds.name]
            below = li - 1
            while below >= 0:
                r = rec[below, ds.name]
                for op in OPS:
                    r[f"random_{op}"] -= math.floor(r[f"random_{op}"] * p)
                if (below, ds.name) in kind_of:
                    eff = 1 - (1 - prob[below, ds.name]) / (1 - p)
                    _apply_local(r, eff, kind_of[below, ds.name], ds.read_write)
                    done.add((below, ds.name))
                    break
                below -= 1
            if (li, ds.name) not in done:
                done.add((li, ds.name))
                _apply_local(rec[li, ds.name], p, kind_of[li, ds.name], ds.read_write)
            if below < 0 and not ds.read_write:
                macs -= math.floor(macs * p)
                innermost[ds.name] = round(p * 1e6) / 1e6
    for (li, name), fmt in formats.items():      # CalculateDecompressionCompressionCost, at the child
        child = next((k for k in range(li - 1, -1, -1) if name in mapping.levels[k].keep), None)
        if fmt.compressed and child is not None:
            rec[child, name]["decompression_count"] = rec[child, name]["random_fill"]
            if problem.dataspace(name).read_write:
                rec[child, name]["compression_count"] = rec[li, name]["random_update"]
    return rec, macs, innermost



def _compute_counts(spec: SparseSpec, problem, total: float, innermost: dict, has_metadata: dict) -> dict:
    """CalculateFineGrainedComputeAccesses2Operand: operand states, then gating/skipping of the MACs.

    An operand is nonzero (ENZ), a stored zero (EZ) or, when its innermost
    storage keeps metadata, absent (NE); a storage gating/skipping of one
    operand conditions the other's probabilities on the leader being nonzero.
    """
    operands = [ds.name for ds in problem.dataspaces if not ds.read_write]
    if len(operands) != 2:      # supported() allows this only without any optimisation
        return {"random": int(total), "gated": 0, "skipped": 0}
    a, b = operands
    dens = {t: round(scalar_density(spec, problem, t) * 1e6) / 1e6 for t in (a, b)}
    enz = dict(dens)
    if a in innermost and b in innermost:
        enz[a] = dens[a] / (1 - innermost[b])
        enz[b] = dens[b] / (1 - innermost[a])
    elif a in innermost:
        enz[b] = dens[b] / (1 - innermost[a])
    elif b in innermost:
        enz[a] = dens[a] / (1 - innermost[b])
    state = {}
    for t in (a, b):
        e = min(1.0, max(0.0, enz[t]))
        state[t] = {"ENZ": e, "EZ": 0.0 if has_metadata[t] else 1 - e, "NE": 1 - e if has_metadata[t] else 0.0}
    gate = "gate_on_zero_operand" in spec.compute
    skip = "skip_on_not_aligned_operands" in spec.compute
    random = gated = skipped = nonexistent = 0.0
    for sa, pa in state[a].items():
        for sb, pb in state[b].items():
            n = total * pa * pb
            if sa == sb == "NE":
                nonexistent += n
            elif "NE" in (sa, sb):
                if skip:
                    skipped += n
                elif gate:
                    gated += n
                else:
                    random += n
            elif "EZ" in (sa, sb) and gate:
                gated += n
            else:
                random += n
    return {"random": int(total - math.floor(skipped) - math.floor(gated) - math.floor(nonexistent)),
            "gated": int(math.floor(gated)), "skipped": int(math.floor(skipped))}


def _validity(spec, arch, dense, formats, tiles) -> tuple[bool, str]:
    """The dense checks, a format's rank failure, and each level's metadata capacity (model/buffer.cpp)."""
    for (li, ds), fmt in formats.items():
        if fmt.fail:
            return False, f"{arch.storage[li].name}: {fmt.fail} for {ds}"
    if not dense.valid:
        if any(arch.storage[li].name in dense.reason and "capacity" in dense.reason for li, _ in formats):
            raise SparseUnsupported(dense.reason, key="mapping",
                                    expected="a mapping whose dense tiles fit (capacity under compression "
                                             "is not modelled yet)")
        return False, dense.reason
    for li, lvl in enumerate(arch.storage):
        meta = spec.metadata.get(lvl.name)
        bits = sum(math.ceil(sum(u[0] * b[0] + u[1] * b[1] for u, b in zip(f.max_units, f.word_bits)))
                   for (fl, _), f in formats.items() if fl == li)
        if bits and meta is not None and meta.storage_depth is not None \
                and bits > meta.storage_depth * meta.storage_width:
            return False, (f"{lvl.name}: metadata tile of {bits} bits exceeds its metadata capacity of "
                           f"{meta.storage_depth * meta.storage_width} bits")
    return True, ""


def evaluate_sparse(spec: SparseSpec, problem, arch, tables, mapping, dense) -> SparseEval:
    """Sparseloop's statistics for ``mapping``, given its dense evaluation ``dense`` (a MappingEval)."""
    supported(spec, problem, arch, mapping)
    from coopt.model.cost import ArchCosts

    ac = ArchCosts(arch, tables)
    tiles = {(li, ds.name): lvl.dataspaces[ds.name]["tile"] for li, lvl in enumerate(dense.levels)
             for ds in problem.dataspaces}
    formats = tensor_formats(spec, problem, arch, mapping, tiles)
    rec, total, innermost = _storage_counts(spec, problem, arch, mapping, dense, formats)
    has_metadata = {}
    for ds in problem.dataspaces:
        inner = next((li for li, m in enumerate(mapping.levels) if ds.name in m.keep), None)
        has_metadata[ds.name] = (inner, ds.name) in formats
    macs = _compute_counts(spec, problem, total, innermost, has_metadata)
    valid, reason = _validity(spec, arch, dense, formats, tiles)
    repl = max(1, dense.macs // max(1, dense.compute_cycles))
    compute_cycles = math.ceil((macs["random"] + macs["gated"]) / repl)
    levels, cycles = {}, compute_cycles
    for li, lvl in enumerate(arch.storage):
        rd = wr = 0
        for ds in problem.dataspaces:
            r, fmt = rec[li, ds.name], formats.get((li, ds.name))
            rd += r["random_read"] + r["gated_read"]
            wr += sum(r[f"{k}_{op}"] for k in ("random", "gated") for op in ("fill", "update"))
            if fmt is not None:    # metadata words share the data's bandwidth
                rd += math.ceil(format_bits(fmt, r["random_metadata_read"]) / lvl.word_bits)
                wr += math.ceil((format_bits(fmt, r["random_metadata_fill"])
                                 + format_bits(fmt, r["random_metadata_update"])) / lvl.word_bits)
        slow = 1.0
        for bw, need in ((lvl.read_bandwidth, rd), (lvl.write_bandwidth, wr),
                         (lvl.shared_bandwidth, rd + wr)):
            need = need / compute_cycles if compute_cycles else 0.0
            if bw is not None and bw < need:
                slow = min(slow, bw / need)
        lc = math.ceil(compute_cycles / slow)
        cycles = max(cycles, lc)
        levels[lvl.name] = {"cycles": lc}
    mac_energy = sum(macs[k] * compute_action_energy(tables, arch.arithmetic.name, f"{k}_compute") for k in KINDS)
    energy = mac_energy
    for li, lvl in enumerate(arch.storage):
        d = dense.levels[li]
        repl_l = max(1, d.instances_used)
        lvl_e = 0.0
        width = spec.metadata[lvl.name].storage_width if lvl.name in spec.metadata else 0
        for ds in problem.dataspaces:
            r, fmt = rec[li, ds.name], formats.get((li, ds.name))
            ratio = vector_ratio(fmt, tiles[li, ds.name], lvl.block_size, spec.density(ds.name)) if fmt else 1.0
            e = sum((r[a] if "count" in a else math.ceil(r[a] / lvl.block_size) * ratio)
                    * storage_action_energy(tables, lvl.name, a) for a in r if "metadata" not in a)
            if fmt is not None and width:
                e += sum(math.ceil(format_bits(fmt, r[f"random_metadata_{op}"]) / width)
                         * storage_action_energy(tables, lvl.name, f"random_metadata_{op}") for op in OPS)
            e *= repl_l
            levels[lvl.name][ds.name] = {**r, "energy_pj": e}
            lvl_e += e
        leak = ac.leak[li] * cycles * repl_l
        levels[lvl.name].update(energy_pj=lvl_e + leak, leak_pj=leak)
        energy += lvl_e + leak
    util = (macs["random"] + macs["gated"]) / arch.arithmetic.instances / cycles if cycles else 0.0
    return SparseEval(valid=valid, reason=reason, energy_pj=float(energy), cycles=int(cycles),
                      compute_cycles=int(compute_cycles), utilization=float(util),
                      algorithmic_macs=int(dense.macs), macs=macs, mac_energy_pj=float(mac_energy), levels=levels)
