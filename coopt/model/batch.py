"""A batch of mappings as numpy arrays, the form the vectorised model and the mapper share.

Shapes: ``[B, L, D]`` for per-level per-dimension factors and permutations
(levels innermost first, permutations innermost loop first), ``[B, L]`` for
the spatial split and ``[B, L, P]`` for keep flags.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coopt.model.mapping import LevelMapping, Mapping


@dataclass
class MappingBatch:
    tf: np.ndarray       # [B,L,D] temporal factor per dimension
    tperm: np.ndarray    # [B,L,D] dimension index of each temporal loop, innermost first
    sf: np.ndarray       # [B,L,D] spatial factor per dimension
    sperm: np.ndarray    # [B,L,D] dimension index of each spatial loop, innermost first
    split: np.ndarray    # [B,L] the first `split` spatial loops are X, the rest Y
    keep: np.ndarray     # [B,L,P] data space kept at level

    def __len__(self) -> int:
        return self.tf.shape[0]

    @staticmethod
    def from_mappings(mappings: list[Mapping], dataspace_names: list[str]) -> "MappingBatch":
        return MappingBatch(
            tf=np.array([[l.temporal for l in m.levels] for m in mappings], dtype=np.int64),
            tperm=np.array([[l.permutation for l in m.levels] for m in mappings], dtype=np.int64),
            sf=np.array([[l.spatial for l in m.levels] for m in mappings], dtype=np.int64),
            sperm=np.array([[l.spatial_permutation for l in m.levels] for m in mappings], dtype=np.int64),
            split=np.array([[l.split for l in m.levels] for m in mappings], dtype=np.int64),
            keep=np.array([[[n in l.keep for n in dataspace_names] for l in m.levels] for m in mappings],
                          dtype=bool),
        )

    def take(self, idx) -> "MappingBatch":
        return MappingBatch(self.tf[idx], self.tperm[idx], self.sf[idx], self.sperm[idx], self.split[idx],
                            self.keep[idx])

    def mapping(self, b: int, targets: list[str], dims: tuple[str, ...], dataspace_names: list[str]) -> Mapping:
        levels = []
        for li, target in enumerate(targets):
            levels.append(LevelMapping(
                target=target,
                temporal=tuple(int(x) for x in self.tf[b, li]),
                permutation=tuple(int(x) for x in self.tperm[b, li]),
                spatial=tuple(int(x) for x in self.sf[b, li]),
                spatial_permutation=tuple(int(x) for x in self.sperm[b, li]),
                split=int(self.split[b, li]),
                keep=frozenset(n for n, k in zip(dataspace_names, self.keep[b, li]) if k),
            ))
        return Mapping(tuple(levels), dims)

    @staticmethod
    def concat(batches: list["MappingBatch"]) -> "MappingBatch":
        return MappingBatch(*(np.concatenate([getattr(b, f) for b in batches])
                              for f in ("tf", "tperm", "sf", "sperm", "split", "keep")))
