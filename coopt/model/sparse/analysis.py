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

* representation formats and their metadata (``formats.py``), and capacity
  with compressed tiles (``capacity.py``).

Anything else (spatial skipping, gating above a child level or across
spatial loops, banded densities, a choice among several options) raises
``SparseUnsupported``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from coopt.model.sparse.actions import KINDS, OPS, compute_action_energy, storage_action_energy
from coopt.model.sparse.capacity import compressed_check, level_words, relaxed
from coopt.model.sparse.formats import (check_formats, compressed_count, format_accesses, format_bits,
                                        format_failures, tensor_formats, vector_ratio)
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
    static_checks(spec, problem, arch)
    optimisation_masks(spec, problem, arch, mapping)


def static_checks(spec: SparseSpec, problem, arch) -> None:
    """The checks that do not depend on the mapping."""
    for name, d in spec.densities.items():
        if d.distribution == "banded" and d.density < 1:
            raise _unsupported(f"{d.distribution} density for {name}", f"problem.instance.densities.{name}",
                               "fixed_structured or hypergeometric (banded densities are not modelled yet)")
    operands = [ds.name for ds in problem.dataspaces if not ds.read_write]
    if (spec.actions or spec.compute) and len(operands) != 2:
        raise _unsupported(f"{len(operands)} operand tensors", "problem.shape.data_spaces",
                           "two read-only operands (Timeloop's two-operand compute analysis)")
    for lvl in arch.storage:
        if lvl.cluster_size > 1:
            raise _unsupported(f"{lvl.name} has cluster_size {lvl.cluster_size}", f"architecture.{lvl.name}",
                               "cluster_size 1 with sparse tensors")
    if any(a.kind == "spatial_skipping" for a in spec.actions):
        raise _unsupported("spatial_skipping", "sparse_optimizations.action_optimization", "gating or skipping")
    for a in spec.actions:
        if _read_impact(spec, problem, a.condition_on) >= 1:
            raise _unsupported(f"{a.target} conditioned on an all-zero tensor", f"sparse_optimizations.{a.level}",
                               "leaders with some nonzero (Timeloop divides by their nonzero share)")


def optimisation_masks(spec: SparseSpec, problem, arch, mapping) -> dict:
    """``{(level index, tensor): (gated|skipped, probability)}`` as DefineStorageOptimizationImpact resolves them.

    A target not kept at the optimising level is optimised at the nearest
    level above that keeps it; all gating is resolved before all skipping,
    levels inner to outer, and a later optimisation of the same tensor and
    level replaces an earlier one only when more likely to hit
    (storage-gs-analyzer.cpp DefineIneffectualReadImpact).
    """
    names = [lvl.name for lvl in arch.storage]
    masks: dict = {}
    ordered = sorted((a for a in spec.actions if a.kind == "gating"), key=lambda a: names.index(a.level)) + \
        sorted((a for a in spec.actions if a.kind == "skipping"), key=lambda a: names.index(a.level))
    for a in ordered:
        key = f"sparse_optimizations.{a.level}.action_optimization"
        li = names.index(a.level)
        tl = next((k for k in range(li, len(names)) if a.target in mapping.levels[k].keep), None)
        if tl is None:
            raise _unsupported(f"no level at or above {a.level} keeps {a.target}", key,
                               "a level that keeps the target (Timeloop fails such a mapping)")
        if tl != li and not _moves_up(problem, mapping, a, tl, key):
            continue
        if any(a.target in mapping.levels[k].keep for k in range(tl)):
            raise _unsupported(f"{a.target} is also kept below {names[tl]}", key,
                               "the innermost level that keeps the target (gating above a child level "
                               "is not modelled yet)")
        if any(mapping.levels[k].spatial_xy() != (1, 1) for k in range(tl + 1)):
            raise _unsupported(f"spatial loops at or below {names[tl]}", key,
                               "temporal loops only up to the optimised level")
        p = _read_impact(spec, problem, a.condition_on,
                         leader_tiles(problem, arch, mapping, a, tl) if tl == li else None)
        kind = "gated" if a.kind == "gating" else "skipped"
        if (tl, a.target) not in masks or masks[tl, a.target][1] < p:
            masks[tl, a.target] = (kind, p)
    return masks


def innermost_loop(mapping, top: int) -> int | None:
    """The dimension index of the innermost non-trivial temporal loop at levels 0..top (None: none)."""
    for lvl in mapping.levels[: top + 1]:
        for d in lvl.permutation:
            if lvl.temporal[d] > 1:
                return d
    return None


def _moves_up(problem, mapping, a, tl: int, key: str) -> bool:
    """Whether an optimisation of a target its level does not keep applies at ``tl``, the nearest level
    above that keeps it, as real Timeloop master 4cf6d4c gives it (measured: random mappings of the
    exercises 02.2.1-03.2.2 through the real timeloop-model; tests/test_sparse_moved_targets.py).
    A read-write target with one leader stays unoptimised (03.2.2's Outputs, every order measured); with
    several leaders Timeloop optimises it by rules not modelled yet (02.2.1's Z).  A read-only target, by
    the innermost non-trivial loop below ``tl``: one that projects to the target and to no leader --
    optimised there (02.2.1's A with M innermost); any other -- unoptimised (02.2.1's A with N or K
    innermost, 03.2.1's Inputs with S innermost); none -- not modelled yet."""
    target = problem.dataspace(a.target)
    if target.read_write:
        if len(a.condition_on) == 1:
            return False
        raise _unsupported(f"read-write {a.target} optimised at {a.level}, which does not keep it, on "
                           f"{len(a.condition_on)} leaders", key,
                           "the target kept at its optimising level (not modelled yet)")
    d = innermost_loop(mapping, tl)
    if d is None:
        raise _unsupported(f"{a.target} optimised at {a.level}, which does not keep it, with no loop below",
                           key, "the target kept at its optimising level (not modelled yet)")
    dim = problem.dims[d]
    return dim in target.dims() and not any(dim in problem.dataspace(c).dims() for c in a.condition_on)


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


def _empty(spec: SparseSpec, problem, tensor: str, k: int) -> float:
    """P(a tile of ``k`` elements of ``tensor`` is empty) as Timeloop's density models give it
    (GetTileOccupancyProbability(tile, 0)); a fixed-structured tile of k > 1 holds floor or ceil of
    k x density nonzeros, so it is empty only while k x density < 1."""
    if k == 1:
        return 1.0 - scalar_density(spec, problem, tensor)
    d = spec.densities.get(tensor)
    if d is not None and d.distribution != "fixed_structured":
        raise _unsupported(f"a {d.distribution} leader tile of {k} elements", "sparse_optimizations",
                           "fixed_structured leaders, or storage of block size 1 at the optimised level")
    exact = k * spec.density(tensor)
    low = math.floor(exact)
    return 1.0 - (exact - low) if low == 0 else 0.0


def _read_impact(spec: SparseSpec, problem, conds: tuple[str, ...], tiles: dict | None = None) -> float:
    """P(read ineffectual): some condition-on tile (a scalar unless ``tiles`` says {leader: k}) is empty."""
    effectual = 1.0
    for c in conds:
        effectual *= 1.0 - _empty(spec, problem, c, (tiles or {}).get(c, 1))
    return 1.0 - effectual


def leader_tiles(problem, arch, mapping, a, tl: int) -> dict:
    """``{leader: elements}`` Timeloop conditions a kept target's read on (storage-gs-analyzer.cpp
    ComputeIneffectualReadImpact, child = compute): the target loop is the first loop of the innermost
    storage level's permutation, trivial or not (its scalar mold); the target level's block size B
    stretches the mold over B of that loop's iterations, so a leader that loop projects to is conditioned
    on B elements (Eyeriss-like weights_spad of block 2 with C first: two Inputs -- never empty at density
    0.5, no gating; measured with real timeloop-model, benchmarks/sparse_differential.py)."""
    block = arch.storage[tl].block_size
    if block <= 1:
        return {}
    dim = problem.dims[mapping.levels[0].permutation[0]]
    return {c: block for c in a.condition_on if dim in problem.dataspace(c).dims()}


def _apply_local(rec: dict, p: float, kind: str, rw: bool, format_ranks: int) -> None:
    """ApplyLocalStorageSAFImpact: move a share p of reads and updates (and their metadata) to gated/skipped.

    Only the metadata ranks sent on a read move (``format_ranks``: the child's
    ranks, or all of them at the innermost level keeping the tensor).
    """
    dr = math.ceil(rec["random_read"] * p) if rw else math.floor(rec["random_read"] * p)
    rec[f"{kind}_read"] += dr
    rec["random_read"] -= dr
    du = math.floor(rec["random_update"] * p)
    rec[f"{kind}_update"] += du
    rec["random_update"] -= du
    for op in ("read", "update"):
        ranks = rec.get(f"random_metadata_{op}")
        if not ranks:
            continue
        moved = [[0, 0] for _ in ranks]
        for r in range(min(format_ranks, len(ranks))):
            for t in range(2):
                delta = math.floor(ranks[r][t] * p)
                ranks[r][t] -= delta
                moved[r][t] += delta
        rec[f"{kind}_metadata_{op}"] = moved


def _storage_counts(spec, problem, arch, mapping, dense, formats) -> tuple[dict, float, dict]:
    """Per level and tensor fine-grained counts, the MACs left and each operand's gating probability.

    PropagateImpactOfExplicitlyOptimizedRead: an optimised level's share p
    of reads also vanishes from every level below (fills, reads, updates)
    down to the next level optimising the same tensor, and from the MACs
    when no level below optimises a read-only operand.
    """
    L = len(arch.storage)
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
    masks = optimisation_masks(spec, problem, arch, mapping)

    def format_ranks(li, name):
        child = next((k for k in range(li - 1, -1, -1) if name in mapping.levels[k].keep), None)
        own = formats.get((child if child is not None else li, name))
        return len(own.md_units) if own is not None else 0

    macs = float(dense.macs)
    innermost = {}
    done = set()
    for ds in problem.dataspaces:
        for li in range(L - 1, -1, -1):
            if (li, ds.name) not in masks:
                continue
            kind, p = masks[li, ds.name]
            below = li - 1
            while below >= 0:
                if (below, ds.name) in formats:
                    raise _unsupported(f"{ds.name} optimised above its formatted level {arch.storage[below].name}",
                                       "sparse_optimizations", "gating/skipping above formatted levels")
                r = rec[below, ds.name]
                for op in OPS:
                    r[f"random_{op}"] -= math.floor(r[f"random_{op}"] * p)
                if (below, ds.name) in masks:
                    lkind, lp = masks[below, ds.name]
                    _apply_local(r, 1 - (1 - lp) / (1 - p), lkind, ds.read_write, format_ranks(below, ds.name))
                    done.add((below, ds.name))
                    break
                below -= 1
            if (li, ds.name) not in done:
                done.add((li, ds.name))
                _apply_local(rec[li, ds.name], p, kind, ds.read_write, format_ranks(li, ds.name))
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


def _validity(spec, problem, arch, mapping, dense, formats, tiles, tables, ac) -> tuple[bool, str]:
    """The dense checks, the formats' checks, capacity with compressed tiles where a tensor has a format
    (``capacity``), and each level's metadata capacity (model/buffer.cpp)."""
    fail = format_failures(spec, problem, arch, mapping)
    if fail:
        return False, fail
    for (li, ds), fmt in formats.items():
        if fmt.fail:
            return False, f"{arch.storage[li].name}: {fmt.fail} for {ds}"
    levels = sorted({li for li, _ in formats})
    if not dense.valid and levels:
        from coopt.model.evaluate import evaluate       # the dense checks but capacity at formatted levels
        dense = evaluate(problem, arch, tables, mapping, arch_costs=relaxed(ac, levels))
    if not dense.valid:
        return False, dense.reason
    tensors = [ds.name for ds in problem.dataspaces]
    densities = {t: spec.density(t) for t in tensors}
    reason = compressed_check(arch, {li: level_words(tiles, set(formats), densities, li, tensors) for li in levels})
    if reason:
        return False, reason
    for li, lvl in enumerate(arch.storage):
        meta = spec.metadata.get(lvl.name)
        bits = sum(math.ceil(sum(u[0] * b[0] + u[1] * b[1] for u, b in zip(f.max_units, f.word_bits)))
                   for (fl, _), f in formats.items() if fl == li)
        if bits and meta is not None and meta.storage_depth is not None \
                and bits > meta.storage_depth * meta.storage_width:
            return False, (f"{lvl.name}: metadata tile of {bits} bits exceeds its metadata capacity of "
                           f"{meta.storage_depth * meta.storage_width} bits")
    return True, ""


def _add(terms) -> float:
    """Left-to-right float addition (Python 3.12's ``sum`` compensates, the batch form's numpy does not)."""
    total = 0.0
    for t in terms:
        total += t
    return total


def evaluate_sparse(spec: SparseSpec, problem, arch, tables, mapping, dense, *, arch_costs=None) -> SparseEval:
    """Sparseloop's statistics for ``mapping``, given its dense evaluation ``dense`` (a MappingEval)."""
    supported(spec, problem, arch, mapping)
    from coopt.model.cost import ArchCosts

    ac = arch_costs or ArchCosts(arch, tables)
    tiles = {(li, ds.name): lvl.dataspaces[ds.name]["tile"] for li, lvl in enumerate(dense.levels)
             for ds in problem.dataspaces}
    formats = tensor_formats(spec, problem, arch, mapping, tiles)
    rec, total, innermost = _storage_counts(spec, problem, arch, mapping, dense, formats)
    has_metadata = {}
    for ds in problem.dataspaces:
        inner = next((li for li, m in enumerate(mapping.levels) if ds.name in m.keep), None)
        has_metadata[ds.name] = (inner, ds.name) in formats
    macs = _compute_counts(spec, problem, total, innermost, has_metadata)
    valid, reason = _validity(spec, problem, arch, mapping, dense, formats, tiles, tables, ac)
    repl = max(1, dense.macs // max(1, dense.compute_cycles))
    compute_cycles = math.ceil((macs["random"] + macs["gated"]) / repl)
    levels, cycles = {}, compute_cycles
    for li, lvl in enumerate(arch.storage):
        # BufferLevel::ComputePerformance (model/buffer.cpp): each tensor's accesses per compute cycle,
        # summed in tensor order, so that the rounding of the slowdown's ceiling is Timeloop's
        rbw = wbw = 0.0
        for ds in problem.dataspaces:
            r, fmt = rec[li, ds.name], formats.get((li, ds.name))
            rd = r["random_read"] + r["gated_read"]
            wr = sum(r[f"{k}_{op}"] for k in ("random", "gated") for op in ("fill", "update"))
            if fmt is not None:    # metadata words share the data's bandwidth (whole words: Timeloop
                # divides two unsigned integers, ceil of the quotient changes nothing)
                rd += sum(format_bits(fmt, r.get(f"{k}_metadata_read", [])) for k in ("random", "gated")) \
                    // lvl.word_bits
                wr += sum(format_bits(fmt, r.get(f"{k}_metadata_{op}", [])) for k in ("random", "gated")
                          for op in ("fill", "update")) // lvl.word_bits
            if compute_cycles:
                rbw += rd / compute_cycles
                wbw += wr / compute_cycles
        slow = 1.0
        for bw, need in ((lvl.read_bandwidth, rbw), (lvl.write_bandwidth, wbw), (lvl.shared_bandwidth, wbw + rbw)):
            if bw is not None and bw < need:
                slow = min(slow, bw / need)
        lc = math.ceil(compute_cycles / slow)
        cycles = max(cycles, lc)
        levels[lvl.name] = {"cycles": lc}
    mac_energy = _add(macs[k] * compute_action_energy(tables, arch.arithmetic.name, f"{k}_compute") for k in KINDS)
    energy = mac_energy
    for li, lvl in enumerate(arch.storage):
        d = dense.levels[li]
        repl_l = max(1, d.instances_used)
        lvl_e = 0.0
        width = spec.metadata[lvl.name].storage_width if lvl.name in spec.metadata else 0
        for ds in problem.dataspaces:
            r, fmt = rec[li, ds.name], formats.get((li, ds.name))
            ratio = vector_ratio(fmt, tiles[li, ds.name], lvl.block_size, spec.density(ds.name)) if fmt else 1.0
            e = _add((r[a] if "count" in a else math.ceil(r[a] / lvl.block_size) * ratio)
                    * storage_action_energy(tables, lvl.name, a) for a in r if "metadata" not in a)
            if fmt is not None and width:
                e += _add(math.ceil(format_bits(fmt, r[a]) / width) * storage_action_energy(tables, lvl.name, a)
                         for a in r if "metadata" in a)
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
