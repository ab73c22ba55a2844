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
    compressed: bool = False    # some rank drops zeros (CP, RLE, B)


def _occupancies(tile: int, density: float) -> list[tuple[int, float]]:
    """Fixed-structured tile occupancies and their probabilities (fixed-structured-distribution.cpp)."""
    exact = tile * density
    lo = math.floor(exact)
    p_ceil = exact - lo
    out = [(lo, 1 - p_ceil)]
    if p_ceil > 0:
        out.append((math.ceil(exact), p_ceil))
    return [(k, p) for k, p in out if p != 0]


COMPRESSED = {"CP": True, "RLE": True, "B": True, "UB": False, "UOP": False}   # format-models/*.hpp
VECTOR_WIDTH_THRESHOLDS = {    # model/buffer.hpp VectorWidthCoefficientTable (densities 0.1 .. 1.0)
    2: (251, 125, 84, 63, 51, 42, 36, 32, 28, 1), 4: (375, 188, 125, 94, 75, 63, 54, 47, 42, 1),
    8: (438, 219, 146, 110, 88, 73, 63, 55, 49, 1), 16: (469, 235, 157, 118, 94, 79, 67, 59, 52, 1),
    32: (485, 243, 162, 122, 97, 81, 70, 61, 52, 1)}
RANK_FAILURE = "more compression ranks needed than supported in hardware"


@dataclass
class _Rank:
    rank: object              # FormatRank
    fiber: int                # points one fiber of this rank spans
    below: int                # points of the tile one element of this rank covers (the next rank's tile)
    tile: int = 0             # points of this rank's whole tile (its outermost loop's tile)


def _p_empty(n: int, k: int, tile: int) -> float:
    """P(a tile of ``n`` points is empty) given ``k`` nonzeros among ``tile`` (fixed-structured, constrained)."""
    exact = n * (k / tile)
    lo = math.floor(exact)
    if lo == 0:
        return 1 - (exact - lo)
    return (exact - lo) if math.ceil(exact) == 0 else 0.0


def _units(fmt: str, fibers_max: float, fiber: int, cur: int, below: int, k: int, tile: int) -> list[float]:
    """[metadata, payload] units of one rank (format-models/*.cpp GetOccupancy)."""
    if fmt == "UB":
        return [fibers_max * fiber, fibers_max * fiber]
    fibers = fibers_max * (1 - _p_empty(cur, k, tile))
    nz = 1 - _p_empty(below, k, tile)
    if fmt == "CP":
        md = math.ceil(fiber * nz) * fibers
        return [md, md]
    if fmt == "RLE":
        md = fiber * nz * fibers
        return [md, md]
    if fmt == "B":
        return [fibers * fiber, fibers * math.ceil(fiber * nz)]
    return [0.0, fibers * (fiber + 1)]               # UOP


def _loops(mapping, lo: int, hi: int, relevant) -> list[tuple[str, int]]:
    """Non-trivial loops over ``relevant`` dimensions at levels lo..hi, innermost first (spatial below temporal)."""
    out = []
    for lvl in mapping.levels[lo: hi + 1]:
        for d in lvl.spatial_permutation:
            out.append((mapping.dims[d], lvl.spatial[d]))
        for d in lvl.permutation:
            out.append((mapping.dims[d], lvl.temporal[d]))
    return [(d, f) for d, f in out if d in relevant and f > 1]


def _extents(loops) -> dict:
    ext: dict = {}
    for d, f in loops:
        ext[d] = ext.get(d, 1) * f
    return ext


def _assign(problem, tensor, ranks_outer_first, loops, below_loops, first_rank: int) -> tuple[list, str]:
    """ApplyRanksOuterToInner: the level's own ``loops`` (innermost first) to ranks ``first_rank``.. (top down)."""
    ds = problem.dataspace(tensor)
    plans = {}
    i = len(loops) - 1
    n = len(ranks_outer_first)
    for r in range(n - 1, first_rank - 1, -1):
        rank = ranks_outer_first[n - 1 - r]
        if i < 0:
            raise SparseUnsupported(f"rank {r} of {tensor} holds no loop", key="representation_format",
                                    expected="a non-trivial loop for every rank (empty ranks are not modelled yet)")
        if rank.flattened is not None and loops[i][0] not in rank.flattened:
            raise SparseUnsupported(f"rank {r} of {tensor} does not flatten {loops[i][0]}",
                                    key="representation_format.flattened_rankIDs",
                                    expected="each rank's first loop among its flattened dimensions")
        top = i
        i -= 1
        while i >= 0 and rank.flattened is not None and loops[i][0] in rank.flattened:
            i -= 1
        plans[r] = (rank, problem.tile_size(ds, _extents(loops[i + 1: top + 1])),
                    problem.tile_size(ds, _extents(below_loops + loops[: top + 1])))
    return plans, (RANK_FAILURE if i >= 0 else "")


def _plan(spec, problem, mapping, li: int, tensor: str, ranks, formats_at: dict) -> tuple[list, str]:
    """The ranks (innermost first) of a formatted tensor: fiber shapes and the tiles below each.

    Without a lower level keeping the tensor, the ranks take the loops down
    to the compute; with one (pre-tiling), the lowest ranks are the child's
    -- its own format's ranks, or one rank holding its whole tile -- and the
    level's own loops fill the ranks above.
    """
    relevant = problem.dataspace(tensor).dims()
    child = next((k for k in range(li - 1, -1, -1) if tensor in mapping.levels[k].keep), None)
    if child is None:                                 # no pre-tiling: every loop down to the compute
        plans, fail = _assign(problem, tensor, ranks, _loops(mapping, 0, li, relevant), [], 0)
        inner = []
    else:
        below = _loops(mapping, 0, child, relevant)
        if child in formats_at:
            inner, fail_child = _plan(spec, problem, mapping, child, tensor, formats_at[child], formats_at)
        else:
            t = problem.tile_size(problem.dataspace(tensor), _extents(below))
            inner, fail_child = [_Rank(ranks[-1], t, 1, t)], ""
        plans, fail = _assign(problem, tensor, ranks, _loops(mapping, child + 1, li, relevant), below, len(inner))
        fail = fail or fail_child
    out = list(inner)
    for r in range(len(inner), len(ranks)):
        rank, fiber, tile = plans[r]
        out.append(_Rank(rank, fiber, out[r - 1].tile if r else 1, tile))
    for r in range(len(inner)):                       # the parent's own formats name the lower ranks
        out[r] = _Rank(ranks[len(ranks) - 1 - r], out[r].fiber, out[r].below, out[r].tile)
    return out, fail


def _word_bits(bits: int | None, meta) -> int:
    """AdjustFormatWordBits (sparse-optimization-parser.cpp): the level's default, or the next divisor of its width."""
    if bits is None:
        return meta.word_bits if meta else 0
    width = meta.storage_width if meta else 0
    if bits and width and width % bits:
        b = bits
        while b < 2 * bits and width % b:
            b += 1
        return b
    return bits


def active_formats(spec, arch, mapping) -> dict:
    """The formats of tensors the mapping keeps at their level; elsewhere Timeloop finds no tile to format."""
    names = [lvl.name for lvl in arch.storage]
    return {(lv, t): r for (lv, t), r in spec.formats.items() if t in mapping.levels[names.index(lv)].keep}


def _aligned(child_ranks, ranks) -> bool:
    """DefineCompressionFormatModels: a child's ranks are the parent's lowest ones, format for format."""
    c, p = list(reversed(child_ranks)), list(reversed(ranks))          # innermost first
    return len(c) <= len(p) and all(a.format == b.format for a, b in zip(c, p))


def format_failures(spec, problem, arch, mapping) -> str:
    """CheckFormatModelsAndMapping (sparse-analysis.cpp): why Timeloop rejects the mapping, or ''."""
    names = [lvl.name for lvl in arch.storage]
    active = active_formats(spec, arch, mapping)
    for ds in problem.dataspaces:
        parent_compressed, parent_ranks, parent = None, -1, None
        for li in range(len(names) - 1, -1, -1):
            if ds.name not in mapping.levels[li].keep:
                continue
            ranks = active.get((names[li], ds.name), ())
            compressed = any(COMPRESSED[r.format] for r in ranks)
            meta = spec.metadata.get(names[li])
            if parent_compressed is None:
                parent_compressed, parent_ranks, parent = compressed, len(ranks) if compressed else -1, li
                continue
            if parent_compressed and not compressed and not (meta and meta.decompression_supported):
                return f"{names[li]}: decompression (from parent level) needed but not supported"
            if ds.read_write and parent_compressed and not compressed and not (meta and meta.compression_supported):
                return f"{names[li]}: compression (to parent level) needed but not supported"
            if parent_compressed and compressed and parent_ranks < len(ranks):
                return f"{names[parent]}: runtime partition needed but not supported (NOT IMPLEMENTED YET)"
            parent_compressed, parent_ranks, parent = compressed, len(ranks) if compressed else -1, li
    return ""


def check_formats(spec, problem, arch, mapping) -> None:
    """Raise ``SparseUnsupported`` for a format outside the modelled subset."""
    names = [lvl.name for lvl in arch.storage]
    active = active_formats(spec, arch, mapping)
    for (level, tensor), ranks in active.items():
        key = f"sparse_optimizations.{level}.representation_format.{tensor}"
        li = names.index(level)
        d = spec.densities.get(tensor)
        keeps = [k for k, m in enumerate(mapping.levels) if tensor in m.keep]
        child = max((k for k in keeps if k < li), default=None)
        compressed = any(COMPRESSED[r.format] for r in ranks)
        relevant = problem.dataspace(tensor).dims()
        child_tile = (problem.tile_size(problem.dataspace(tensor), _extents(_loops(mapping, 0, child, relevant)))
                      if child is not None else 0)
        reasons = [
            (any(k > li and (names[k], tensor) not in active for k in keeps),
             f"{tensor} is kept unformatted above {level}",
             "formatted levels above formatted ones only (Timeloop stops on compression below an "
             "uncompressed level)"),
            (child is not None and (names[child], tensor) in active
             and not _aligned(active[names[child], tensor], ranks),
             f"{tensor}'s formats at {level} and {names[child] if child is not None else ''} do not align",
             "a child's ranks repeating the parent's lowest ranks (Timeloop fails such a mapping)"),
            (child is not None and not compressed, f"uncompressed format above {names[child] if child is not None else ''}",
             "a compressed rank (CP, RLE, B) when a lower level keeps the tensor"),
            (child is not None and child_tile == 1, f"{tensor}'s tile below {level} is one element",
             "child tiles of more than one element"),
            (d is not None and d.distribution != "fixed_structured", f"{d and d.distribution} density",
             "fixed_structured with formats"),
        ]
        for bad, msg, expected in reasons:
            if bad:
                raise SparseUnsupported(msg, key=key, expected=expected)
        if child is not None:
            if math.floor(child_tile * spec.density(tensor)) == 0:
                raise SparseUnsupported(f"{names[child]}'s tile of {tensor} may be empty", key=key,
                                        expected="child tiles that are never empty (the conditional "
                                                 "occupancy below a compressed level is not modelled yet)")


def tensor_formats(spec, problem, arch, mapping, tiles: dict) -> dict:
    """``{(level index, tensor): TensorFormat}``; ``tiles[(li, tensor)]`` is the dense tile size."""
    names = [lvl.name for lvl in arch.storage]
    out = {}
    for (level, tensor), ranks in active_formats(spec, arch, mapping).items():
        li = names.index(level)
        meta = spec.metadata.get(level)
        formats_at = {names.index(lv): r for (lv, t), r in active_formats(spec, arch, mapping).items() if t == tensor}
        plan, fail = _plan(spec, problem, mapping, li, tensor, ranks, formats_at)
        tile = tiles[li, tensor]
        units = [[0.0, 0.0] for _ in plan]
        expected_nnz = 0.0
        max_units = units
        empty = [p.fiber == 1 and r != len(plan) - 1 for r, p in enumerate(plan)]
        for k, p in _occupancies(tile, spec.density(tensor)):
            per = [[0.0, 0.0] for _ in plan]
            fibers, cur = 1.0, tile
            for r in range(len(plan) - 1, -1, -1):
                if not empty[r]:
                    per[r] = _units(plan[r].rank.format, fibers, plan[r].fiber, cur, plan[r].below, k, tile)
                fibers *= plan[r].fiber
                cur = plan[r].below
            first = next((r for r in range(len(plan)) if any(per[r])), None)
            if first is not None:
                per[first][1] = 0.0                   # the innermost non-empty rank's payload is the data
            units = [[u[0] + p * v[0], u[1] + p * v[1]] for u, v in zip(units, per)]
            expected_nnz += p * k
            max_units = per
        bits = [[0, 0] if empty[r] else [_word_bits(q.rank.metadata_word_bits, meta),
                                         _word_bits(q.rank.payload_word_bits, meta)] for r, q in enumerate(plan)]
        out[li, tensor] = TensorFormat(ranks, expected_nnz / tile if tile else 0.0, units, bits, max_units, fail,
                                       any(COMPRESSED[r.format] for r in ranks))
    return out


def vector_ratio(fmt: "TensorFormat", tile: int, block: int, density: float) -> float:
    """BufferLevel::ComputeVectorAccesses' correction for compressed tiles in wide rows (model/buffer.cpp)."""
    d = fmt.density
    if not fmt.compressed or tile == 0 or block <= 1 or d >= 1.0:
        return 1.0
    idx = int(math.floor(d / 0.1) - 1) if d >= 0.1 else 0
    if VECTOR_WIDTH_THRESHOLDS[block][idx] <= tile // block:
        return 1.0
    total = sum(math.ceil(k / block) * p for k, p in _occupancies(tile, density) if k >= 1)
    return total / (tile * d / block)


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
