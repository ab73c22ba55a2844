"""From per-level nest statistics to reads, fills and updates: Timeloop's tile collapse.

A port of timeloop/src/loop-analysis/tiling.cpp (CollapseDataMovementNest
and the legacy read/update split), vectorised over a batch of mappings.
All arrays are ``[batch, level, dataspace]`` (levels innermost first) unless
noted.  Nest analysis is done for every level as if it kept every tensor;
bypassed levels are then "masked": the next kept level above serves their
children, its access counts scaled as Timeloop scales them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NestStats:
    """Nest-analysis output for a batch of mappings (what Timeloop's CollapseTiles reads)."""

    size: np.ndarray        # [B,L,P] tile size at the level's outermost loop
    total: np.ndarray       # [B,L,P] accesses the level serves to its children (sum over multicast groups)
    weighted: np.ndarray    # [B,L,P] the same weighted by multicast factor (words received by children)
    link: np.ndarray        # [B,L,P] inter-child link transfers
    msize: np.ndarray       # [B,L,P] tile size at the level's master spatial loop (0 if none)
    master: np.ndarray      # [B,L] level has a spatial fan-out loop
    fanout: np.ndarray      # [B,L] logical fan-out used by the mapping
    repl: np.ndarray        # [B,L] utilised instances of the level
    xexp: np.ndarray        # [B,L] utilised X extent of the level's instances
    yexp: np.ndarray        # [B,L] utilised Y extent
    compute: np.ndarray     # [B] temporal iterations per MAC
    compute_repl: np.ndarray  # [B] utilised MACs


@dataclass
class Accesses:
    """Per-instance scalar accesses after collapse (Timeloop's reads/fills/updates)."""

    reads: np.ndarray
    fills: np.ndarray
    updates: np.ndarray
    utilized: np.ndarray    # [B,L,P] capacity used (tile size where kept, else 0)
    partition: np.ndarray


def _round(x):
    """std::round (half away from zero) for non-negative values."""
    return np.floor(x + 0.5)


def collapse(nest: NestStats, keep: np.ndarray, read_write: np.ndarray) -> Accesses:
    """Timeloop's CollapseDataMovementNest + ComputeReadUpdateReductionAccesses_Legacy.

    The compiled loop form (``kernel.collapse_rows``) when numba is there, else numpy;
    tests hold the two equal.
    """
    from coopt.model import jit

    if not jit.enabled():
        return collapse_numpy(nest, keep, read_write)
    from coopt.model.kernel import collapse_rows

    B, L, P = nest.size.shape
    out = [np.zeros((B, L, P)) for _ in range(5)]
    collapse_rows(nest.size.astype(np.float64), nest.total.astype(np.float64),
                  nest.weighted.astype(np.float64), nest.link.astype(np.float64), nest.msize.astype(np.float64),
                  nest.master.astype(np.bool_), nest.fanout.astype(np.float64), nest.repl.astype(np.float64),
                  keep.astype(np.bool_), np.asarray(read_write, dtype=np.bool_), *out)
    return Accesses(reads=out[0], fills=out[1], updates=out[2], utilized=out[3], partition=out[4])


def collapse_numpy(nest: NestStats, keep: np.ndarray, read_write: np.ndarray) -> Accesses:
    """The array form of the collapse (reference for the compiled one)."""
    B, L, P = nest.size.shape
    size = nest.size.astype(np.float64).copy()
    total = nest.total.astype(np.float64).copy()
    weighted = nest.weighted.astype(np.float64).copy()
    link = nest.link.astype(np.float64).copy()
    fanout = np.broadcast_to(nest.fanout[:, :, None], (B, L, P)).astype(np.float64)
    repl = np.broadcast_to(nest.repl[:, :, None], (B, L, P)).astype(np.float64)
    keep = keep.astype(bool)

    # Partition sizes (integer arithmetic, outermost level holds the whole tensor).
    part = np.zeros((B, L, P), dtype=np.int64)
    isize = nest.size.astype(np.int64)
    part[:, L - 1] = isize[:, L - 1]
    for cur in range(L - 2, -1, -1):
        pfd = np.where(nest.master[:, cur + 1, None], nest.msize[:, cur + 1].astype(np.int64), isize[:, cur])
        safe = np.where(pfd == 0, 1, pfd)
        part[:, cur] = np.where(pfd != 0, (part[:, cur + 1] * isize[:, cur]) // safe, part[:, cur + 1])
    partition = part.astype(np.float64)

    # Share of the parent's accesses (computed before masking, parent = next level up).
    share = np.zeros((B, L, P))
    share[:, : L - 1] = weighted[:, 1:] / fanout[:, 1:]

    content = total.copy()
    alive = np.ones((B, L, P), dtype=bool)      # Timeloop: size != 0
    # MaskTiles: bypassed levels hand their children to the next kept level up.
    for cur in range(L):
        masked = alive[:, cur] & ~keep[:, cur]
        if not masked.any():
            continue
        outer_exists = np.zeros((B, P), dtype=bool)
        outer_idx = np.full((B, P), L, dtype=np.int64)
        for o in range(L - 1, cur, -1):
            outer_idx = np.where(alive[:, o], o, outer_idx)
        outer_exists = outer_idx < L
        do = masked & outer_exists
        if do.any():
            b, p = np.nonzero(do)
            o = outer_idx[b, p]
            w = weighted[b, o, p]
            factor = np.where(w > 0, content[b, cur, p] * fanout[b, o, p] / np.where(w > 0, w, 1), 0.0)
            nonzero = total[b, o, p] > 0
            total[b, o, p] *= factor
            weighted[b, o, p] *= factor
            link[b, o, p] = np.where(nonzero, 0.0, link[b, o, p])
            content[b, o, p] = total[b, o, p]
        for arr in (size, partition, content, share):
            arr[:, cur] *= ~masked
        alive[:, cur] &= ~masked

    # ProcessOuterMaskedLevels: outermost bypassing levels lose everything;
    # the first kept level from the top has no parent share.
    top = np.ones((B, P), dtype=bool)           # still scanning down from the top
    for cur in range(L - 1, -1, -1):
        reset = top & ~keep[:, cur]
        if reset.any():
            for arr in (size, partition, content, share, total, weighted, link):
                arr[:, cur] *= ~reset
            alive[:, cur] &= ~reset
        first_kept = top & keep[:, cur]
        share[:, cur] *= ~first_kept
        top &= ~keep[:, cur]
        if not top.any():
            break

    # ComputePeerAccesses: link transfers at level cur are charged to cur-1.
    peer = np.zeros((B, L, P))
    if np.any(link[:, 1:] != 0):
        peer[:, :-1] = np.where(link[:, 1:] != 0, link[:, 1:] / repl[:, :-1], 0.0)

    # Legacy read/update split.
    outermost = np.zeros((B, L, P), dtype=bool)
    above_alive = np.zeros((B, P), dtype=bool)
    for cur in range(L - 1, -1, -1):
        outermost[:, cur] = ~above_alive
        above_alive |= alive[:, cur]
    rw = np.broadcast_to(read_write[None, None, :], (B, L, P))
    reads_rw = _round(content + peer - partition)
    fills_rw = np.where(outermost, _round(share + peer), _round(share + peer - partition))
    reads = np.where(rw, reads_rw, _round(content + peer))
    fills = np.where(rw, fills_rw, np.floor(share + peer))
    updates = np.where(rw, _round(content), 0.0)
    reads = np.where(alive, reads, 0.0)
    fills = np.where(alive, fills, 0.0)
    updates = np.where(alive, updates, 0.0)
    utilized = np.where(alive & keep, size, 0.0)
    return Accesses(reads=reads, fills=fills, updates=updates, utilized=utilized, partition=partition)
