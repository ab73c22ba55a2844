"""Representation formats: metadata occupancy, format accesses and compressed data, as Timeloop counts them.

A port of the parts of Timeloop's representation analysis coopt reproduces
exactly, for a tensor whose format sits at the only level that keeps it, in
one rank (src/sparse-analysis/representation-analyzer.cpp
DefineCompressionFormatModels and ApplyRanksOuterToInner without
pre-tiling; CalculateExpectedOccupancy; CalculateExpectedMetaDataAccesses),
with the per-rank occupancies of src/workload/format-models/*.cpp and
DataMovementInfo::GetMetaDataTileOccupancyGivenDataTile
(src/loop-analysis/tiling-tile-info.cpp).

One rank holds the outermost non-trivial loop that touches the tensor and,
under a ``flattened_rankIDs`` rule, every inner loop of the rule's
dimensions; a non-trivial loop left over fails the mapping ("more
compression ranks needed"), as in Timeloop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from coopt.model.sparse.spec import SparseUnsupported


@dataclass
class TensorFormat:
    """One formatted tensor at one level (counts per instance)."""

    ranks: tuple                # FormatRank per rank, outermost first
    density: float              # expected density of its tile
    md_units: list              # expected [metadata, payload] units per rank, innermost rank first
    word_bits: list             # [metadata, payload] bits per rank, innermost rank first
    max_units: list             # [metadata, payload] units per rank at the largest occupancy
    fail: str = ""              # why Timeloop rejects the mapping ('' when it does not)


def _occupancies(tile: int, density: float) -> list[tuple[int, float]]:
    """Fixed-structured tile occupancies and their probabilities (fixed-structured-distribution.cpp)."""
    exact = tile * density
    lo = math.floor(exact)
    p_ceil = exact - lo
    out = [(lo, 1 - p_ceil)]
    if p_ceil > 0:
        out.append((math.ceil(exact), p_ceil))
    return [(k, p) for k, p in out if p != 0]


def _rank_units(fmt: str, fiber: int, tile: int, k: int) -> list[float]:
    """[metadata, payload] units of the single (top) rank holding a ``tile`` with ``k`` nonzeros."""
    p_tile_empty = 1.0 if k == 0 else 0.0
    fibers = 1 * (1 - p_tile_empty)
    nz = k / tile                                    # P(a scalar of the tile is nonzero)
    if fmt == "CP":
        md = math.ceil(fiber * nz) * fibers
        return [md, md]
    if fmt == "RLE":
        md = fiber * nz * fibers
        return [md, md]
    if fmt == "B":
        return [fibers * fiber, fibers * math.ceil(fiber * nz)]
    if fmt == "UB":
        return [1 * fiber, 1 * fiber]
    return [0.0, fibers * (fiber + 1)]               # UOP


def _rank_loops(problem, mapping, li: int, tensor: str, rank) -> tuple[dict, str]:
    """Extents the rank holds (dimension -> product) and a failure reason, per ApplyRanksOuterToInner."""
    relevant = problem.dataspace(tensor).dims()
    loops = []                                       # innermost first
    for lvl in mapping.levels[: li + 1]:
        for d in lvl.spatial_permutation:
            loops.append((mapping.dims[d], lvl.spatial[d]))
        for d in lvl.permutation:
            loops.append((mapping.dims[d], lvl.temporal[d]))
    loops = [(d, f) for d, f in loops if d in relevant and f > 1]
    extents: dict = {}
    if not loops:
        return extents, ""
    rule = rank.flattened
    i = len(loops) - 1
    if rule is not None and loops[i][0] not in rule:
        return extents, "more compression ranks needed than supported in hardware"
    while i >= 0 and (i == len(loops) - 1 or (rule is not None and loops[i][0] in rule)):
        d, f = loops[i]
        extents[d] = extents.get(d, 1) * f
        i -= 1
    return extents, ("more compression ranks needed than supported in hardware" if i >= 0 else "")


def check_formats(spec, problem, arch, mapping) -> None:
    """Raise ``SparseUnsupported`` for a format outside the modelled subset."""
    names = [lvl.name for lvl in arch.storage]
    targets = {a.target for a in spec.actions}
    for (level, tensor), ranks in spec.formats.items():
        key = f"sparse_optimizations.{level}.representation_format.{tensor}"
        li = names.index(level)
        d = spec.densities.get(tensor)
        reasons = [
            (len(ranks) != 1, f"{len(ranks)} ranks", "one rank (multi-rank formats are not modelled yet)"),
            (tensor not in mapping.levels[li].keep, f"{tensor} is not kept at {level}", "the tensor kept there"),
            (any(tensor in m.keep for k, m in enumerate(mapping.levels) if k != li),
             f"{tensor} is kept at other levels too", "the formatted level the only one keeping the tensor "
             "(pre-tiling and (de)compression between levels are not modelled yet)"),
            (d is not None and d.distribution != "fixed_structured", f"{d and d.distribution} density",
             "fixed_structured with formats"),
            (arch.storage[li].block_size != 1, f"block size {arch.storage[li].block_size}",
             "block size 1 at a formatted level"),
            (tensor in targets, f"{tensor} is gated or skipped and formatted",
             "formats on tensors that are not gating/skipping targets"),
        ]
        for bad, msg, expected in reasons:
            if bad:
                raise SparseUnsupported(msg, key=key, expected=expected)


def tensor_formats(spec, problem, arch, mapping, tiles: dict) -> dict:
    """``{(level index, tensor): TensorFormat}``; ``tiles[(li, tensor)]`` is the dense tile size."""
    names = [lvl.name for lvl in arch.storage]
    out = {}
    for (level, tensor), ranks in spec.formats.items():
        li = names.index(level)
        meta = spec.metadata.get(level)
        default_bits = meta.word_bits if meta else 0
        rank = ranks[0]
        extents, fail = _rank_loops(problem, mapping, li, tensor, rank)
        fiber = problem.tile_size(problem.dataspace(tensor), extents)
        tile = tiles[li, tensor]
        density = spec.density(tensor)
        units, expected_nnz, max_units = [0.0, 0.0], 0.0, [0.0, 0.0]
        for k, p in _occupancies(tile, density):
            u = _rank_units(rank.format, fiber, tile, k)
            u[1] = 0.0                                   # the innermost non-empty rank's payload is the data
            units = [units[0] + p * u[0], units[1] + p * u[1]]
            expected_nnz += p * k
            max_units = u
        bits = [default_bits if rank.metadata_word_bits is None else rank.metadata_word_bits,
                default_bits if rank.payload_word_bits is None else rank.payload_word_bits]
        out[li, tensor] = TensorFormat(ranks, expected_nnz / tile if tile else 0.0, [units], [bits], [max_units],
                                       fail)
    return out


def format_accesses(fmt: TensorFormat, dense_count: int, tile: int) -> list:
    """Per rank [metadata, payload] accesses for ``dense_count`` algorithmic accesses of a ``tile``."""
    ratio = dense_count / tile if tile else 0.0
    return [[math.ceil(u[0] * ratio), math.ceil(u[1] * ratio)] for u in fmt.md_units]


def format_bits(fmt: TensorFormat, accesses: list) -> int:
    """Bits moved by per-rank [metadata, payload] accesses."""
    return sum(a[0] * b[0] + a[1] * b[1] for a, b in zip(accesses, fmt.word_bits))


def compressed_count(count: int, density: float) -> int:
    """ProcessDataReprImpactOnStorageAccesses: the accesses left after dropping the expected zeros."""
    return count - math.floor(count * (1 - density))
