"""Buffer capacity under compression, as Timeloop checks it.

Why: a tensor with a representation format at a level occupies only its nonzeros there, so a tile that
overflows the buffer dense may fit compressed.  Timeloop (master 4cf6d4c, ``model/buffer.cpp``:
``ComputeTileOccupancyAndConfidence`` then ``Evaluate``'s "mapped tile size exceeds buffer capacity" and
minimum-utilisation checks) counts such a tensor -- compressed, or uncompressed with metadata -- at its
largest occupancy at confidence 1, ``DataMovementInfo::GetMaxDataTileOccupancyByConfidence``: for a
fixed-structured density ``GetTileOccupancyByConfidence`` (``fixed-structured-distribution.cpp``), the
floor of tile x density when that is whole, else its ceiling.  Other tensors at the level count their
dense tile.  The level's effective size and minimum utilisation are checked on that sum.
"""
from __future__ import annotations

import copy
import math

import numpy as np

__all__ = ["formatted_levels", "occupancy", "relaxed", "compressed_check"]


def formatted_levels(spec, arch) -> list[int]:
    """Indices of the storage levels where some tensor has a representation format."""
    names = {lv for lv, _ in spec.formats}
    return [li for li, lvl in enumerate(arch.storage) if lvl.name in names]


def occupancy(tile, density: float):
    """Largest nonzero count of a fixed-structured tile (scalar or array), as Timeloop rounds it."""
    exact = np.asarray(tile, dtype=np.float64) * density
    low = np.floor(exact)
    whole = 1.0 <= 1 - (exact - low)                     # confidence 1 <= P(floor)
    out = np.where(whole, low, np.ceil(exact))
    return int(out) if out.ndim == 0 else out


def relaxed(ac, levels: list[int]):
    """A copy of ``ArchCosts`` without the capacity and minimum-utilisation checks at ``levels`` (the dense
    checks elsewhere, fan-outs and instances stay): those levels are checked on compressed tiles instead."""
    out = copy.copy(ac)
    out.capacity, out.min_util = ac.capacity.copy(), ac.min_util.copy()
    out.capacity[levels], out.min_util[levels] = np.inf, 0.0
    return out


def compressed_check(arch, used: dict[int, float]) -> str:
    """'' when each level's occupancy in ``used`` (level index -> words) fits it, else Timeloop's reason."""
    for li, words in used.items():
        lvl = arch.storage[li]
        cap = lvl.effective_size
        if cap is None:
            continue
        if words > cap:
            return f"{lvl.name}: compressed tile of {int(words)} words exceeds its capacity of {cap} words"
        if lvl.min_utilization > 0 and words < cap * lvl.min_utilization:
            return f"{lvl.name}: compressed tile of {int(words)} words is below its minimum utilisation"
    return ""


def level_words(tiles: dict, formatted: set, densities: dict, li: int, tensors) -> float:
    """Words a level holds: formatted tensors at their occupancy, the others at their dense tile."""
    return math.fsum(occupancy(tiles[li, t], densities[t]) if (li, t) in formatted else tiles[li, t]
                     for t in tensors)
