""":class:`Architecture` -> Timeloop's v0.3 tree form, checked by reading it back.

The file must run in real Timeloop v3 + Accelergy and give back exactly the
numbers of the design; every write is read back with :func:`arch_from_yaml`
and a difference is an error, never a silently different design.
"""
from __future__ import annotations

import copy
import math
from dataclasses import fields
from typing import Any

from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.errors import SpecError
from coopt.arch.attrs import (ARITH_WORD_BITS, BLOCK, DEPTH, WIDTH, WORD_BITS, NODE_TECH, spellings, base_name,
                              range_count, split_path, is_buffer_class, is_compute_class)
from coopt.arch.reader import arch_from_yaml

__all__ = ["arch_to_yaml"]


def _present(a: dict, names: tuple[str, ...]) -> list[str]:
    return [s for n in names for s in spellings(n) if s in a]


def _put(a: dict, names: tuple[str, ...], value: Any, default_key: str, *, always: bool = True) -> None:
    """Set every alias the file already uses; add ``default_key`` when none is (and ``always``)."""
    keys = _present(a, names)
    for k in keys:
        a[k] = value
    if not keys and always:
        a[default_key] = value


def _drop(a: dict, names: tuple[str, ...]) -> None:
    for k in _present(a, names):
        del a[k]


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def _node_attrs(attrs: dict, arch: Architecture) -> dict:
    a = copy.deepcopy(dict(attrs))
    if a.get("technology") is not None and NODE_TECH.match(str(a["technology"])):
        a["technology"] = arch.technology
    if "global_cycle_seconds" in a:
        a["global_cycle_seconds"] = arch.cycle_seconds
    return a


def _storage_attrs(lvl: StorageLevel, arch: Architecture, implied: int) -> dict:
    a = _node_attrs(lvl.attributes, arch)
    wb, block, cluster = lvl.word_bits, lvl.block_size, lvl.cluster_size
    width = lvl.width if lvl.width is not None else wb * block * cluster
    _put(a, WORD_BITS, wb, "datawidth")
    _put(a, WIDTH, width, "width")
    _put(a, BLOCK, block, "block_size", always=False)
    _put(a, ("cluster_size",), cluster, "cluster_size", always=False)
    has_b, has_c = bool(_present(a, BLOCK)), bool(_present(a, ("cluster_size",)))
    if has_b and has_c:
        derived = (block, cluster)
    elif has_c:
        derived = (width // cluster // wb, cluster)
    elif has_b:
        derived = (block, width // (wb * block))
    else:
        derived = (width // wb, 1)
    if derived != (block, cluster):
        _put(a, BLOCK, block, "block_size")
        _put(a, ("cluster_size",), cluster, "cluster_size")
    _drop(a, ("sizeKB",))
    if lvl.depth is None:
        _drop(a, DEPTH + ("entries",))
    else:
        if _present(a, ("entries",)):
            _put(a, ("entries",), lvl.depth * block, "entries")
        _put(a, DEPTH, lvl.depth, "depth", always=not _present(a, ("entries",)))
    is_dram_cls = "DRAM" in lvl.cls
    if lvl.technology == "DRAM" and not is_dram_cls:
        a["technology"] = "DRAM"
    elif lvl.technology != "DRAM" and str(a.get("technology")) == "DRAM":
        a["technology"] = arch.technology
    _drop(a, ("bandwidth",))
    for attr in ("read_bandwidth", "write_bandwidth", "shared_bandwidth"):
        v = getattr(lvl, attr)
        if v is None:
            _drop(a, (attr,))
        else:
            _put(a, (attr,), _num(v), attr)
    _put(a, ("multiple_buffering",), _num(lvl.multiple_buffering), "multiple_buffering",
         always=lvl.multiple_buffering != 1.0)
    _put(a, ("min_utilization",), _num(lvl.min_utilization), "min_utilization",
         always=lvl.min_utilization != 0.0)
    _put(a, ("reduction_supported",), lvl.reduction_supported, "reduction_supported",
         always=not lvl.reduction_supported)
    _put(a, ("instances",), lvl.instances, "instances", always=lvl.instances != implied)
    a["meshX"], a["meshY"] = lvl.mesh_x, lvl.mesh_y
    return a


def _arith_attrs(ar: ArithmeticLevel, arch: Architecture, implied: int) -> dict:
    a = _node_attrs(ar.attributes, arch)
    _put(a, ARITH_WORD_BITS, ar.word_bits, "datawidth", always=ar.word_bits != 16)
    _put(a, ("instances",), ar.instances, "instances", always=ar.instances != implied)
    a["meshX"], a["meshY"] = ar.mesh_x, ar.mesh_y
    return a


def _chain_from_paths(comps: list) -> tuple[list[str], list[tuple[int, str]]] | None:
    """Rebuild the chain of tree nodes from the components' paths; None if they don't form one."""
    chain: list[str] = []
    placed: list[tuple[int, str]] = []
    for c in comps:
        if not c.path:
            return None
        segs = split_path(c.path)
        if len(segs) < 2 or base_name(segs[-1]) != c.name or not all(base_name(s) for s in segs):
            return None
        prefix = segs[:-1]
        if len(prefix) < len(chain) or prefix[:len(chain)] != chain:
            return None
        chain = prefix
        placed.append((len(chain) - 1, segs[-1]))
    return chain, placed


def _chain_generated(arch: Architecture, comps: list) -> tuple[list[str], list[tuple[int, str]]]:
    """Nest one subtree per fan-out step so instance counts follow from the names."""
    chain, placed, mult = [arch.name or "system"], [], 1
    for c in comps:
        if c.instances % mult:
            raise SpecError(f"{c.name} has {c.instances} instances, not a multiple of the "
                            f"{mult} above it", key=f"architecture.{c.name}")
        if c.instances != mult:
            k = c.instances // mult
            chain.append(f"{c.name}_array[0..{k - 1}]")
            mult = c.instances
        placed.append((len(chain) - 1, c.name))
    return chain, placed


def _class_keys(c) -> dict:
    """``class`` Timeloop reads; a class outside its storage/compute names goes to ``subclass`` (timeloopfe's form)."""
    if isinstance(c, StorageLevel) and not is_buffer_class(c.cls):
        return {"class": "storage", "subclass": c.cls}
    if not isinstance(c, StorageLevel) and not is_compute_class(c.cls) and not is_buffer_class(c.cls):
        return {"class": "compute", "subclass": c.cls}
    return {"class": c.cls}


def _same_numbers(a: Any, b: Any) -> list[str]:
    return [f.name for f in fields(a) if f.compare and f.name != "path" and getattr(a, f.name) != getattr(b, f.name)]


def arch_to_yaml(arch: Architecture) -> dict:
    """``{"architecture": {...}}`` in the v0.3 tree form Timeloop v3 + Accelergy accept.

    The tree follows the levels' ``path`` names when they form a chain (so
    Accelergy names components as before); otherwise subtrees named
    ``<level>_array[0..k-1]`` are nested at each fan-out step.  Each component
    keeps its class and attributes; the numbers Timeloop reads are refreshed
    from the dataclass fields.
    """
    comps = list(reversed(arch.storage)) + [arch.arithmetic]
    chain, placed = _chain_from_paths(comps) or _chain_generated(arch, comps)
    mults = [range_count(s) for s in chain]
    nodes = [{"name": s, "attributes": {}, "local": []} for s in chain]
    top = _node_attrs(arch.attributes, arch)
    top.pop("version", None)
    top["technology"] = arch.technology
    top["global_cycle_seconds"] = arch.cycle_seconds
    nodes[0]["attributes"] = top
    for c, (depth, local_name) in zip(comps, placed):
        implied = math.prod(mults[:depth + 1]) * range_count(local_name)
        attrs = (_storage_attrs(c, arch, implied) if isinstance(c, StorageLevel)
                 else _arith_attrs(c, arch, implied))
        nodes[depth]["local"].append({"name": local_name, **_class_keys(c), "attributes": attrs})
    for parent, child in zip(nodes, nodes[1:]):
        parent["subtree"] = [child]
    for n in nodes:
        if not n["attributes"]:
            del n["attributes"]
        if not n["local"]:
            del n["local"]
    out = {"architecture": {"version": 0.3, "subtree": [nodes[0]]}}
    back = arch_from_yaml(out["architecture"])
    for mine, theirs in zip(comps, list(reversed(back.storage)) + [back.arithmetic]):
        diff = _same_numbers(mine, theirs)
        if diff:
            raise SpecError(f"cannot write {mine.name} faithfully: {diff} would read back as "
                            f"{[getattr(theirs, d) for d in diff]} instead of {[getattr(mine, d) for d in diff]}",
                            key=f"architecture.{mine.name}")
    return out
