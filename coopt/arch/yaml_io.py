"""Architecture YAML <-> :class:`Architecture`, with Timeloop's own reading rules.

Why: coopt must see exactly the numbers Timeloop v3 derives from the same
file (its ``Topology::ParseTreeSpecs`` walk and ``BufferLevel::ParseSpecs``
attribute rules), and must write back a file real Timeloop + Accelergy accept.

Accepted input forms (the value under ``architecture:``):

* the tree form, v0.3 (public tutorials) or v0.4 as timeloopfe dumps it:
  ``{version, subtree: [{name, attributes, local: [...], subtree: [...]}]}``.
  A ``[a..b]`` range on a subtree or component name multiplies the instances
  of everything at and below it; Timeloop allows one subtree per level.
* timeloopfe's v0.4 ``nodes:`` list (``!Container`` / ``!Component`` /
  ``!Parallel`` ...), converted the way timeloopfe's v4->v3 transpiler does:
  a node with a ``spatial`` fan-out gets a ``dummy_storage`` level named
  ``inter_<node>_spatial`` above it, containers pass attributes down.

Output is always the v0.3 tree form.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, fields
from typing import Any, Iterator

from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.errors import SpecError

__all__ = ["arch_from_yaml", "arch_to_yaml", "BUFFER_CLASSES", "COMPUTE_CLASSES",
           "is_buffer_class", "is_compute_class"]

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
_TIMELOOP_KEYS = set(WORD_BITS + BLOCK + WIDTH + DEPTH) | {
    "cluster_size", "entries", "sizeKB", "technology", "read_bandwidth", "write_bandwidth",
    "shared_bandwidth", "bandwidth", "multiple_buffering", "min_utilization", "reduction_supported",
    "instances", "meshX", "meshY"}
_RANGE = re.compile(r"\[\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*\]")
_NODE_TECH = re.compile(r"^\d+(\.\d+)?\s*nm$")
_INT = re.compile(r"^[-+]?\d+$")


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


def _spellings(name: str) -> tuple[str, ...]:
    """Timeloop turns hyphens into underscores before parsing: accept both."""
    alt = name.replace("_", "-")
    return (name, alt) if alt != name else (name,)


class _Attrs:
    """Typed look-ups in one component's attribute dict, with located errors."""

    def __init__(self, attrs: dict, key: str, file: str | None):
        self.attrs, self.key, self.file = attrs, key, file

    def find(self, names: tuple[str, ...]) -> tuple[str, Any] | None:
        for n in names:
            for s in _spellings(n):
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


def _mesh(a: _Attrs, instances: int, name: str) -> tuple[int, int]:
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


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------
@dataclass
class _Comp:
    """A component found while walking the tree, before Timeloop's rules are applied."""

    name: str          # as written, maybe with a range
    cls: str
    attrs: dict        # what Timeloop reads
    raw: dict          # what we keep for writing back
    n_elements: int
    key: str
    path: str


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
            inherited.update({k: v for k, v in attrs.items() if k.replace("-", "_") not in _TIMELOOP_KEYS})
        for i, c in enumerate(_need_list(cur.get("local"), f"{key}.local", file)):
            ck = f"{key}.local[{i}]"
            c = _need_dict(c, ck, file)
            cname, cls = _need_name(c, ck, file), _need_class(c, ck, file)
            own = dict(_need_dict(c.get("attributes"), f"{ck}.attributes", file))
            raw = {**{k: v for k, v in inherited.items() if k not in own}, **own}
            n = mult * range_count(cname, key=f"{ck}.name", file=file)
            comps.append(_Comp(cname, cls, own, raw, n, ck, ".".join(parts + [cname])))
    if top_name is None:
        raise SpecError("no 'subtree'", file=file, key="architecture",
                        expected="architecture: {version, subtree: [{name, local: [...]}]}")
    return comps, top_name, top_attrs


def _leaves(nodes: Any, key: str, file: str | None) -> Iterator[tuple[dict, str]]:
    """Flatten !Hierarchical / !Parallel / !Pipelined groups (their tags are dropped) in order."""
    for i, n in enumerate(_need_list(nodes, key, file)):
        nk = f"{key}[{i}]"
        n = _need_dict(n, nk, file)
        if n.get("enabled", True) is False:
            continue
        if "nodes" in n and "class" not in n:
            yield from _leaves(n["nodes"], f"{nk}.nodes", file)
        else:
            yield n, nk


def _walk_nodes(root: dict, file: str | None) -> tuple[list[_Comp], str, dict]:
    """timeloopfe's v0.4 ``nodes:`` list, flattened like its v4->v3 transpiler."""
    comps: list[_Comp] = []
    mx = my = 1
    top_name, top_attrs, inherited, first = "top_level", {}, {}, True
    for node, key in _leaves(root["nodes"], "architecture.nodes", file):
        name = _need_name(node, key, file)
        is_container = "class" not in node
        cls = None if is_container else _need_class(node, key, file)
        if cls is not None and "nothing" in cls:
            continue
        attrs = dict(_need_dict(node.get("attributes"), f"{key}.attributes", file))
        sp = _Attrs(_need_dict(node.get("spatial"), f"{key}.spatial", file), f"{key}.spatial", file)
        fx, fy = sp.int(("meshX",), minimum=1) or 1, sp.int(("meshY",), minimum=1) or 1
        if is_container:
            inherited.update(attrs)
            if first:
                top_name, top_attrs = f"{base_name(name)}_top_level", dict(attrs)
        first = False
        if fx * fy != 1:
            dummy = {"width": 1, "depth": 1, "datawidth": 1, "technology": -1}
            dummy.update({k: v for k, v in inherited.items() if k not in dummy})
            dname = f"inter_{base_name(name)}_spatial"
            comps.append(_nodes_comp(dname, "dummy_storage", dummy, mx, my, f"{key}.spatial", top_name))
            mx, my = mx * fx, my * fy
        if not is_container:
            full = {**{k: v for k, v in inherited.items() if k not in attrs}, **attrs}
            comps.append(_nodes_comp(base_name(name), cls, full, mx, my, key, top_name))
    return comps, top_name, top_attrs


def _nodes_comp(name: str, cls: str, attrs: dict, mx: int, my: int, key: str, top: str) -> _Comp:
    attrs = {**attrs, "meshX": mx, "meshY": my}
    n = mx * my
    return _Comp(f"{name}[1..{n}]", cls, attrs, attrs, n, key, f"{top}.{name}[1..{n}]")


def _storage(c: _Comp, file: str | None) -> StorageLevel:
    """BufferLevel::ParseSpecs, field by field."""
    a = _Attrs(c.attrs, f"{c.key}.attributes", file)
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
    is_dram = "DRAM" in c.cls or (tech_attr is not None and str(tech_attr[1]) == "DRAM")
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
    mx, my = _mesh(a, instances, name)
    return StorageLevel(
        name=name, cls=c.cls, instances=instances, mesh_x=mx, mesh_y=my, depth=depth, width=width,
        word_bits=wb, block_size=block, cluster_size=cluster, read_bandwidth=read_bw,
        write_bandwidth=write_bw, shared_bandwidth=a.float(("shared_bandwidth",)),
        multiple_buffering=1.0 if mb is None else mb, min_utilization=mu or 0.0,
        technology="DRAM" if is_dram else "SRAM", reduction_supported=True if red is None else red,
        attributes=copy.deepcopy(c.raw), path=c.path)


def _arithmetic(c: _Comp, file: str | None) -> ArithmeticLevel:
    """ArithmeticUnits::ParseSpecs: instances, word bits (default 16), mesh."""
    a = _Attrs(c.attrs, f"{c.key}.attributes", file)
    name = base_name(c.name)
    instances = a.int(("instances",), minimum=1) or c.n_elements
    mx, my = _mesh(a, instances, name)
    return ArithmeticLevel(name=name, cls=c.cls, instances=instances, mesh_x=mx, mesh_y=my,
                           word_bits=a.int(ARITH_WORD_BITS, minimum=1) or 16,
                           attributes=copy.deepcopy(c.raw), path=c.path)


def _node_technology(top_attrs: dict, comps: list[_Comp]) -> str:
    tech = top_attrs.get("technology")
    if tech is not None and str(tech) not in ("DRAM", "-1"):
        return str(tech)
    for c in comps:
        t = c.raw.get("technology")
        if t is not None and _NODE_TECH.match(str(t)):
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
        if is_buffer_class(c.cls):
            storage.append(_storage(c, file))
        elif is_compute_class(c.cls):
            arith.append(_arithmetic(c, file))
        elif any(s in c.cls for s in NETWORK_CLASSES):
            raise SpecError(f"component '{base_name(c.name)}' is a network (class {c.cls}); "
                            "coopt models Timeloop's default networks only", file=file,
                            key=f"{c.key}.class", expected="a storage or compute class")
        else:
            raise SpecError(f"component '{base_name(c.name)}' has class '{c.cls}', which is neither "
                            "storage nor compute", file=file, key=f"{c.key}.class",
                            expected=f"a class containing one of {list(BUFFER_CLASSES + COMPUTE_CLASSES)}")
    if len(arith) != 1:
        raise SpecError(f"found {len(arith)} compute components {[a.name for a in arith]}",
                        file=file, key="architecture", expected="exactly one (class mac/intmac/fpmac/compute)")
    if not storage:
        raise SpecError("no storage component", file=file, key="architecture",
                        expected="at least one (class DRAM/SRAM/regfile/smartbuffer/storage)")
    a = _Attrs(top_attrs, "architecture.subtree[0].attributes" if "subtree" in node
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


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------
def _present(a: dict, names: tuple[str, ...]) -> list[str]:
    return [s for n in names for s in _spellings(n) if s in a]


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
    if a.get("technology") is not None and _NODE_TECH.match(str(a["technology"])):
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
        nodes[depth]["local"].append({"name": local_name, "class": c.cls, "attributes": attrs})
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
