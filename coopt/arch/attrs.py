"""Timeloop's reading rules for component names and attributes: classes, ranges, aliases, meshes.

Why a module of its own: the reader and the writer of architecture YAML must
agree on how Timeloop v3 spells and looks up an attribute (``depth`` or
``memory_depth``, ``datawidth`` or ``word_bits``), counts ``[a..b]`` ranges
and derives a mesh; both import these rules from here.
"""
from __future__ import annotations

import math
import re
from typing import Any

from coopt.errors import SpecError

# Timeloop include/model/topology.hpp (substring match, buffer checked first).
BUFFER_CLASSES = ("DRAM", "SRAM", "regfile", "smartbuffer", "storage")
COMPUTE_CLASSES = ("mac", "intmac", "fpmac", "compute")
NETWORK_CLASSES = ("XY_NoC", "Legacy", "ReductionTree", "SimpleMulticast")

# Attribute aliases, in the order Timeloop looks them up.
WORD_BITS = ("word_bits", "word_width", "datawidth")
ARITH_WORD_BITS = ("word_bits", "datawidth")
BLOCK = ("block_size", "n_words")
WIDTH = ("width", "memory_width", "data_storage_width")
DEPTH = ("depth", "memory_depth", "data_storage_depth")
# Keys Timeloop's parser reads: never inherited from enclosing tree nodes (Timeloop doesn't).
TIMELOOP_KEYS = set(WORD_BITS + BLOCK + WIDTH + DEPTH) | {
    "cluster_size", "entries", "sizeKB", "technology", "read_bandwidth", "write_bandwidth",
    "shared_bandwidth", "bandwidth", "multiple_buffering", "min_utilization", "reduction_supported",
    "instances", "meshX", "meshY"}
_RANGE = re.compile(r"\[\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*\]")
NODE_TECH = re.compile(r"^\d+(\.\d+)?\s*nm$")
_INT = re.compile(r"^[-+]?\d+$")

__all__ = ["BUFFER_CLASSES", "COMPUTE_CLASSES", "NETWORK_CLASSES", "WORD_BITS", "ARITH_WORD_BITS", "BLOCK", "WIDTH",
           "DEPTH", "TIMELOOP_KEYS", "NODE_TECH", "is_buffer_class", "is_compute_class", "base_name", "range_count",
           "split_path", "spellings", "Attrs", "mesh_of"]


def is_buffer_class(cls: str) -> bool:
    return any(s in cls for s in BUFFER_CLASSES)


def is_compute_class(cls: str) -> bool:
    return any(s in cls for s in COMPUTE_CLASSES)


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------
def base_name(name: str) -> str:
    """``PE[0..167]`` -> ``PE`` (Timeloop's parseName)."""
    return name.split("[", 1)[0].strip()


def range_count(name: str, *, key: str | None = None, file: str | None = None) -> int:
    """Number of elements a ``name[a..b]`` denotes (1 without a range)."""
    m = _RANGE.search(name)
    if not m:
        if "[" in name:
            raise SpecError(f"malformed instance range in name '{name}'", file=file, key=key,
                            expected="name[first..last], e.g. PE[0..167]")
        return 1
    lo, hi = int(m.group(1)), int(m.group(2))
    if hi < lo or lo < 0:
        raise SpecError(f"empty or negative instance range in name '{name}'", file=file, key=key,
                        expected="name[first..last] with 0 <= first <= last")
    return hi - lo + 1


def split_path(path: str) -> list[str]:
    """Split a dotted hierarchy name on dots that are not inside ``[a..b]``."""
    parts, depth, cur = [], 0, []
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "." and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def spellings(name: str) -> tuple[str, ...]:
    """Timeloop turns hyphens into underscores before parsing: accept both."""
    alt = name.replace("_", "-")
    return (name, alt) if alt != name else (name,)


class Attrs:
    """Typed look-ups in one component's attribute dict, with located errors."""

    def __init__(self, attrs: dict, key: str, file: str | None):
        self.attrs, self.key, self.file = attrs, key, file

    def find(self, names: tuple[str, ...]) -> tuple[str, Any] | None:
        for n in names:
            for s in spellings(n):
                if s in self.attrs and self.attrs[s] is not None:
                    return s, self.attrs[s]
        return None

    def err(self, k: str, msg: str, expected: str | None = None) -> SpecError:
        return SpecError(msg, file=self.file, key=f"{self.key}.{k}", expected=expected)

    def int(self, names: tuple[str, ...], *, minimum: int = 0) -> int | None:
        hit = self.find(names)
        if hit is None:
            return None
        k, v = hit
        if isinstance(v, bool):
            raise self.err(k, f"{v!r} is not a number", "an integer")
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        elif isinstance(v, str) and _INT.match(v.strip()):
            v = int(v.strip())
        if not isinstance(v, int):
            raise self.err(k, f"{v!r} is not an integer", "an integer")
        if v < minimum:
            raise self.err(k, f"{v} is too small", f"an integer >= {minimum}")
        return v

    def float(self, names: tuple[str, ...], *, minimum: float = 0.0) -> float | None:
        hit = self.find(names)
        if hit is None:
            return None
        k, v = hit
        if isinstance(v, bool):
            raise self.err(k, f"{v!r} is not a number", "a number")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise self.err(k, f"{v!r} is not a number", "a number") from None
        if not math.isfinite(f) or f < minimum:
            raise self.err(k, f"{v!r} is out of range", f"a number >= {minimum:g}")
        return f

    def bool(self, names: tuple[str, ...]) -> bool | None:
        hit = self.find(names)
        if hit is None:
            return None
        k, v = hit
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
        raise self.err(k, f"{v!r} is not a boolean", "true or false")


def mesh_of(a: Attrs, instances: int, name: str) -> tuple[int, int]:
    """Timeloop's ValidateTopology: fill meshX/meshY from instances."""
    mx, my = a.int(("meshX",), minimum=1), a.int(("meshY",), minimum=1)
    if mx is not None and my is not None:
        if mx * my != instances:
            raise a.err("meshX", f"{name}: meshX*meshY = {mx}*{my} != {instances} instances",
                        "meshX * meshY == instances")
        return mx, my
    if mx is not None:
        if instances % mx:
            raise a.err("meshX", f"{name}: meshX {mx} does not divide its {instances} instances",
                        "a divisor of the instance count")
        return mx, instances // mx
    if my is not None:
        if instances % my:
            raise a.err("meshY", f"{name}: meshY {my} does not divide its {instances} instances",
                        "a divisor of the instance count")
        return instances // my, my
    return instances, 1
