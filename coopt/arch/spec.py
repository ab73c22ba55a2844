"""The architecture spec the model reads: storage levels innermost first, then the MACs.

This mirrors what Timeloop extracts from an architecture YAML: for each
storage level its capacity, word and block size, bandwidths and how many
instances sit on how large a mesh; for the arithmetic level its instances.
The fan-out from a level to the next inner one is the ratio of their
instances (X and Y separately), exactly as in Timeloop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coopt.errors import SpecError


@dataclass(frozen=True)
class StorageLevel:
    """One buffer level (all its instances).  ``depth=None`` means unbounded (DRAM)."""

    name: str
    cls: str = "SRAM"
    instances: int = 1
    mesh_x: int = 1
    mesh_y: int = 1
    depth: int | None = None
    width: int | None = None          # bits per row; defaults to word_bits * block_size
    word_bits: int = 16
    block_size: int = 1               # words per row (vector width)
    cluster_size: int = 1
    read_bandwidth: float | None = None    # words / cycle / instance
    write_bandwidth: float | None = None
    shared_bandwidth: float | None = None
    multiple_buffering: float = 1.0
    min_utilization: float = 0.0
    technology: str = "SRAM"          # "SRAM" or "DRAM" (Timeloop's buffer technology)
    reduction_supported: bool = True
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    path: str = ""                    # dotted hierarchy name as Accelergy names it, e.g. system.PE[0..167].spad

    @property
    def size(self) -> int | None:
        """Capacity in words (Timeloop: depth * block_size), None when unbounded."""
        return None if self.depth is None else self.depth * self.block_size

    @property
    def effective_size(self) -> int | None:
        """Capacity available to one tile set, after multiple buffering."""
        if self.size is None:
            return None
        return int(self.size // self.multiple_buffering)

    @property
    def is_dram(self) -> bool:
        return self.technology == "DRAM"


@dataclass(frozen=True)
class ArithmeticLevel:
    name: str = "MAC"
    cls: str = "intmac"
    instances: int = 1
    mesh_x: int = 1
    mesh_y: int = 1
    word_bits: int = 16
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    path: str = ""


@dataclass(frozen=True)
class Architecture:
    """Storage levels (``storage[0]`` is the innermost, next to the MACs) and the MACs."""

    name: str
    storage: tuple[StorageLevel, ...]
    arithmetic: ArithmeticLevel
    technology: str = "45nm"
    cycle_seconds: float = 1e-9
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if not self.storage:
            raise SpecError("an architecture needs at least one storage level", key="architecture")
        names = [lvl.name for lvl in self.storage] + [self.arithmetic.name]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SpecError(f"duplicate component names {sorted(dup)}", key="architecture")
        inner_x, inner_y, inner = self.arithmetic.mesh_x, self.arithmetic.mesh_y, self.arithmetic.instances
        for lvl in self.storage:
            if inner % lvl.instances or inner_x % lvl.mesh_x or inner_y % lvl.mesh_y:
                raise SpecError(
                    f"{lvl.name} has {lvl.instances} instances ({lvl.mesh_x}x{lvl.mesh_y}) which do not divide "
                    f"the {inner} ({inner_x}x{inner_y}) instances below it", key=f"architecture.{lvl.name}")
            inner_x, inner_y, inner = lvl.mesh_x, lvl.mesh_y, lvl.instances

    # -- fan-outs ------------------------------------------------------------
    def fanout(self, level: int) -> tuple[int, int]:
        """(X, Y) fan-out from storage level ``level`` to the level (or MACs) just inside it."""
        outer = self.storage[level]
        inner = self.arithmetic if level == 0 else self.storage[level - 1]
        return inner.mesh_x // outer.mesh_x, inner.mesh_y // outer.mesh_y

    def level_index(self, name: str) -> int:
        for i, lvl in enumerate(self.storage):
            if lvl.name == name:
                return i
        raise SpecError(f"unknown storage level {name}",
                        expected=f"one of {[lvl.name for lvl in self.storage]}")

    @property
    def clock_hz(self) -> float:
        return 1.0 / self.cycle_seconds

    @property
    def onchip_kib(self) -> float:
        """On-chip SRAM: every non-DRAM level's capacity x word bits x instances (no estimator needed)."""
        bits = sum((lvl.size or 0) * lvl.word_bits * lvl.instances for lvl in self.storage if not lvl.is_dram)
        return bits / 8 / 1024

    def fingerprint(self) -> tuple:
        """Hashable identity of everything the model reads (for result caches)."""
        return (self.storage, self.arithmetic, self.technology, self.cycle_seconds)
