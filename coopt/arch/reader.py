"""Architecture YAML -> :class:`Architecture`, with Timeloop's own reading rules.

Accepted input forms (the value under ``architecture:``):

* the tree form, v0.3 (public tutorials) or v0.4 as timeloopfe dumps it:
  ``{version, subtree: [{name, attributes, local: [...], subtree: [...]}]}``.
  A ``[a..b]`` range on a subtree or component name multiplies the instances
  of everything at and below it; Timeloop allows one subtree per level.
* timeloopfe's v0.4 ``nodes:`` list (``!Container`` / ``!Component`` /
  ``!Parallel`` ...), converted the way timeloopfe's v4->v3 transpiler does:
  a node with a ``spatial`` fan-out gets a ``dummy_storage`` level named
  ``inter_<node>_spatial`` above it, containers pass attributes down.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.errors import SpecError
from coopt.arch.attrs import (ARITH_WORD_BITS, BLOCK, BUFFER_CLASSES, COMPUTE_CLASSES, DEPTH, NETWORK_CLASSES,
                              WIDTH, WORD_BITS, Attrs, NODE_TECH, TIMELOOP_KEYS, mesh_of, base_name,
                              is_buffer_class, is_compute_class, range_count)

@dataclass
class _Comp:
    """A component found while walking the tree, before Timeloop's rules are applied."""

    name: str          # as written, maybe with a range
    cls: str           # the class Accelergy estimates: ``subclass`` where given
    attrs: dict        # what Timeloop reads
    raw: dict          # what we keep for writing back
    n_elements: int
    key: str
    path: str
    role: str = ""     # the class Timeloop reads (storage or compute), ``class`` as written

__all__ = ["arch_from_yaml"]


def _need_dict(v: Any, key: str, file: str | None, what: str = "a mapping") -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise SpecError(f"is a {type(v).__name__}", file=file, key=key, expected=what)
    return v


def _need_list(v: Any, key: str, file: str | None) -> list:
    if v is None:
        return []
    if not isinstance(v, list):
        raise SpecError(f"is a {type(v).__name__}", file=file, key=key, expected="a list")
    return v


def _need_name(node: dict, key: str, file: str | None) -> str:
    name = node.get("name")
    if not isinstance(name, str) or not base_name(name):
        raise SpecError("missing or empty 'name'", file=file, key=f"{key}.name", expected="a string")
    return name


def _need_class(node: dict, key: str, file: str | None) -> str:
    cls = node.get("class")
    if not isinstance(cls, str) or not cls:
        raise SpecError("component without a 'class'", file=file, key=f"{key}.class",
                        expected="a class name such as SRAM, regfile, DRAM or intmac")
    return cls


def _walk_tree(root: dict, file: str | None) -> tuple[list[_Comp], str, dict]:
    """The v0.3 / v0.4 subtree form, walked as Topology::ParseTreeSpecs does."""
    if root.get("local"):
        raise SpecError("components directly under 'architecture' are ignored by Timeloop",
                        file=file, key="architecture.local", expected="components inside a subtree")
    comps: list[_Comp] = []
    cur, key, mult = root, "architecture", 1
    top_name, top_attrs, inherited, parts = None, {}, {}, []
    while cur.get("subtree") is not None:
        subs = _need_list(cur["subtree"], f"{key}.subtree", file)
        if len(subs) != 1:
            raise SpecError(f"has {len(subs)} subtrees; Timeloop supports exactly one per level",
                            file=file, key=f"{key}.subtree", expected="a list with one node")
        key = f"{key}.subtree[0]"
        cur = _need_dict(subs[0], key, file)
        name = _need_name(cur, key, file)
        mult *= range_count(name, key=f"{key}.name", file=file)
        parts.append(name)
        attrs = dict(_need_dict(cur.get("attributes"), f"{key}.attributes", file))
        if top_name is None:
            top_name, top_attrs = base_name(name), attrs
        else:
            inherited.update({k: v for k, v in attrs.items() if k.replace("-", "_") not in TIMELOOP_KEYS})
        for i, c in enumerate(_need_list(cur.get("local"), f"{key}.local", file)):
            ck = f"{key}.local[{i}]"
            c = _need_dict(c, ck, file)
            cname, cls = _need_name(c, ck, file), _need_class(c, ck, file)
            sub = c.get("subclass")
            if sub is not None and (not isinstance(sub, str) or not sub):
                raise SpecError(f"subclass is {sub!r}", file=file, key=f"{ck}.subclass", expected="a class name")
            own = dict(_need_dict(c.get("attributes"), f"{ck}.attributes", file))
            raw = {**{k: v for k, v in inherited.items() if k not in own}, **own}
            n = mult * range_count(cname, key=f"{ck}.name", file=file)
            comps.append(_Comp(cname, sub or cls, own, raw, n, ck, ".".join(parts + [cname]), cls))
    if top_name is None:
        raise SpecError("no 'subtree'", file=file, key="architecture",
                        expected="architecture: {version, subtree: [{name, local: [...]}]}")
    return comps, top_name, top_attrs


def _walk_nodes(root: dict, file: str | None) -> tuple[list[_Comp], str, dict]:
    """timeloopfe's v0.4 ``nodes:`` list, flattened by its v4->v3 transpiler (:mod:`coopt.arch.v4_tree`)."""
    from coopt.arch.v4_tree import flatten_nodes

    flat, _ = flatten_nodes(root, file=file)
    return _walk_tree(flat, file)


def _storage(c: _Comp, file: str | None) -> StorageLevel:
    """BufferLevel::ParseSpecs, field by field."""
    a = Attrs(c.attrs, f"{c.key}.attributes", file)
    name = base_name(c.name)
    wb = a.int(WORD_BITS, minimum=1) or 16
    block_in = a.int(BLOCK, minimum=1)
    cluster_in = a.int(("cluster_size",), minimum=1)
    block, cluster = block_in or 1, cluster_in or 1
    width = a.int(WIDTH, minimum=1)
    if width is not None:
        wkey = a.find(WIDTH)[0]
        if width % (wb * block):
            raise a.err(wkey, f"{name}: width {width} is not a multiple of word_bits*block_size "
                              f"= {wb}*{block}", "width divisible by word_bits * block_size")
        if block_in is not None and cluster_in is not None:
            if block * wb * cluster != width:
                raise a.err(wkey, f"{name}: block_size*word_bits*cluster_size = {block}*{wb}*{cluster}"
                                  f" != width {width}", "block_size * word_bits * cluster_size == width")
        elif cluster_in is not None:
            block = width // cluster // wb
            if block < 1:
                raise a.err("cluster_size", f"{name}: cluster_size {cluster} leaves no word per block",
                            "cluster_size <= width / word_bits")
        elif block_in is not None:
            cluster = width // (wb * block)
        else:
            block, cluster = width // wb, 1
    else:
        width = wb * block * cluster

    depth: int | None
    entries = a.int(("entries",), minimum=0)
    depth_in = a.int(DEPTH, minimum=0)
    kb = a.find(("sizeKB",))
    if kb is not None and (entries is not None or depth_in is not None):
        raise a.err("sizeKB", f"{name}: sizeKB together with depth/entries", "only one size attribute")
    if entries is not None:
        if entries % block:
            raise a.err("entries", f"{name}: entries {entries} is not a multiple of block_size {block}",
                        "entries divisible by block_size")
        depth = entries // block
    elif depth_in is not None:
        depth = depth_in
    elif kb is not None:
        size = a.int(("sizeKB",), minimum=0) * 1024 * 8 // wb
        if size % block:
            raise a.err("sizeKB", f"{name}: sizeKB gives {size} words, not a multiple of block_size "
                                  f"{block}", "a size divisible by block_size")
        depth = size // block
    else:
        depth = None

    tech_attr = a.find(("technology",))
    is_dram = "DRAM" in c.role or (tech_attr is not None and str(tech_attr[1]) == "DRAM")
    if is_dram and cluster != 1:
        raise a.err("cluster_size", f"{name}: a DRAM must have cluster_size 1", "cluster_size 1")

    read_bw = write_bw = None
    bw = a.float(("bandwidth",))
    if bw is not None:
        read_bw = write_bw = bw / 2
    read_bw = a.float(("read_bandwidth",)) if a.find(("read_bandwidth",)) else read_bw
    write_bw = a.float(("write_bandwidth",)) if a.find(("write_bandwidth",)) else write_bw
    mb = a.float(("multiple_buffering",))
    if mb is not None and mb <= 0:
        raise a.err("multiple_buffering", f"{name}: multiple_buffering must be positive", "a number > 0")
    mu = a.float(("min_utilization",))
    if mu is not None and mu > 1:
        raise a.err("min_utilization", f"{name}: min_utilization {mu} > 1", "a number in [0, 1]")
    if mu and depth is None:
        raise a.err("min_utilization", f"{name}: min_utilization needs a bounded size", "a depth")
    red = a.bool(("reduction_supported",))
    instances = a.int(("instances",), minimum=1) or c.n_elements
    mx, my = mesh_of(a, instances, name)
    return StorageLevel(
        name=name, cls=c.cls, instances=instances, mesh_x=mx, mesh_y=my, depth=depth, width=width,
        word_bits=wb, block_size=block, cluster_size=cluster, read_bandwidth=read_bw,
        write_bandwidth=write_bw, shared_bandwidth=a.float(("shared_bandwidth",)),
        multiple_buffering=1.0 if mb is None else mb, min_utilization=mu or 0.0,
        technology="DRAM" if is_dram else "SRAM", reduction_supported=True if red is None else red,
        attributes=copy.deepcopy(c.raw), path=c.path)


def _arithmetic(c: _Comp, file: str | None) -> ArithmeticLevel:
    """ArithmeticUnits::ParseSpecs: instances, word bits (default 16), mesh."""
    a = Attrs(c.attrs, f"{c.key}.attributes", file)
    name = base_name(c.name)
    instances = a.int(("instances",), minimum=1) or c.n_elements
    mx, my = mesh_of(a, instances, name)
    return ArithmeticLevel(name=name, cls=c.cls, instances=instances, mesh_x=mx, mesh_y=my,
                           word_bits=a.int(ARITH_WORD_BITS, minimum=1) or 16,
                           attributes=copy.deepcopy(c.raw), path=c.path)


def _node_technology(top_attrs: dict, comps: list[_Comp]) -> str:
    tech = top_attrs.get("technology")
    if tech is not None and str(tech) not in ("DRAM", "-1") and (NODE_TECH.match(str(tech)) or not any(
            NODE_TECH.match(str(c.raw.get("technology"))) for c in comps)):
        return str(tech)
    for c in comps:
        t = c.raw.get("technology")
        if t is not None and NODE_TECH.match(str(t)):
            return str(t)
    return Architecture.__dataclass_fields__["technology"].default


def arch_from_yaml(node: dict, *, file: str | None = None) -> Architecture:
    """Build an :class:`Architecture` from the value under ``architecture:``."""
    if isinstance(node, dict) and "architecture" in node and not ({"subtree", "nodes"} & node.keys()):
        node = node["architecture"]
    node = _need_dict(node, "architecture", file)
    if "nodes" in node:
        comps, top_name, top_attrs = _walk_nodes(node, file)
    elif "subtree" in node:
        comps, top_name, top_attrs = _walk_tree(node, file)
    else:
        raise SpecError("no 'subtree' or 'nodes'", file=file, key="architecture",
                        expected="the Timeloop v0.3/v0.4 tree form (subtree/local) or the v0.4 nodes list")
    storage: list[StorageLevel] = []
    arith: list[ArithmeticLevel] = []
    for c in comps:
        if is_buffer_class(c.role):
            storage.append(_storage(c, file))
        elif is_compute_class(c.role):
            arith.append(_arithmetic(c, file))
        elif any(s in c.role for s in NETWORK_CLASSES):
            raise SpecError(f"component '{base_name(c.name)}' is a network (class {c.cls}); "
                            "coopt models Timeloop's default networks only", file=file,
                            key=f"{c.key}.class", expected="a storage or compute class")
        else:
            raise SpecError(f"component '{base_name(c.name)}' has class '{c.role}', which is neither "
                            "storage nor compute", file=file, key=f"{c.key}.class",
                            expected=f"a class containing one of {list(BUFFER_CLASSES + COMPUTE_CLASSES)}")
    if len(arith) != 1:
        raise SpecError(f"found {len(arith)} compute components {[a.name for a in arith]}",
                        file=file, key="architecture", expected="exactly one (class mac/intmac/fpmac/compute)")
    if not storage:
        raise SpecError("no storage component", file=file, key="architecture",
                        expected="at least one (class DRAM/SRAM/regfile/smartbuffer/storage)")
    a = Attrs(top_attrs, "architecture.subtree[0].attributes" if "subtree" in node
               else "architecture.nodes[0].attributes", file)
    cycle = a.float(("global_cycle_seconds",))
    if cycle is not None and cycle <= 0:
        raise a.err("global_cycle_seconds", "must be positive", "seconds > 0")
    try:
        return Architecture(name=top_name, storage=tuple(reversed(storage)), arithmetic=arith[0],
                            technology=_node_technology(top_attrs, comps),
                            cycle_seconds=cycle if cycle is not None else 1e-9,
                            attributes=copy.deepcopy(top_attrs))
    except SpecError as err:
        raise err.at(file=file) from None
