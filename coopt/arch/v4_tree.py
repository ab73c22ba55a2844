"""The node tree of a v4 architecture -> timeloopfe's flat v0.4 form and its constraint targets.

Follows timeloopfe's ``version_transpilers/v4_to_v3.py`` (``transpile``): nodes
in order, ``!Parallel``/``!Hierarchical``/``!Pipelined`` groups flattened,
``!Nothing`` dropped, containers passing their attributes down, each
``spatial`` fan-out multiplying the mesh below it with an
``inter_<node>_spatial`` dummy level, names ``name[1..N]``; constraints per
node through :mod:`coopt.arch.v4_constraints`; a component's
``sparse_optimizations`` (and the spec's top-level ``sparse_optimizations:
targets:`` attached to the node they name, ``processors/sparse_opt_attacher.py``)
become the processed form's ``sparse_optimizations: targets:`` entries, in node
order, each its group with ``name`` added (v4_to_v3: ``sparse_opt_list``).  The
reader (:mod:`coopt.arch.reader`) uses it for a ``nodes:`` list given as is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from coopt.arch.attrs import is_buffer_class
from coopt.arch.v4_constraints import (attach_target, branch_bypass, dummy_group, normalise, normalise_group,
                                       optimise_permutations, to_targets)
from coopt.arch.v4_expr import evaluate, evaluate_all
from coopt.errors import SpecError

__all__ = ["flatten_nodes"]

_LEAF_KEYS = ("name", "attributes", "spatial", "constraints", "sparse_optimizations", "class", "subclass",
              "required_actions", "area_scale", "energy_scale", "enabled", "networks")
_BRANCH_TAGS = ("!Hierarchical", "!Parallel", "!Pipelined")


@dataclass
class _Leaf:
    kind: str                      # container | component | nothing
    name: str
    key: str
    node: dict
    attrs: dict = field(default_factory=dict)
    mesh: tuple[int, int] = (1, 1)
    group: dict = field(default_factory=dict)
    order: list = field(default_factory=list)
    in_parallel: bool = False
    sparse: dict = field(default_factory=dict)     # the node's sparse_optimizations, empties cleaned


def _kind(node: dict) -> str:
    tag = getattr(node, "tag", "")
    if tag in _BRANCH_TAGS or (not tag and "nodes" in node and "class" not in node):
        return "branch"
    if tag == "!Nothing" or "nothing" in str(node.get("class", "")):
        return "nothing"
    if tag == "!Container" or (not tag and "class" not in node):
        return "container"
    return "component"


class _Walker:
    """The node tree in order, with expressions evaluated and constraints normalised per leaf."""

    def __init__(self, file, table: dict | None, problem, evaluate_exprs: bool):
        self.file, self.problem, self.eval = file, problem, evaluate_exprs
        self.table = dict(table or {})
        self.leaves: list[_Leaf] = []
        self.names: dict[str, _Leaf] = {}

    def walk(self, nodes, key: str, in_parallel: bool = False) -> list[list[dict]]:
        """Leaves appended to ``self.leaves``; returns each child's dataspace constraints (for a !Parallel)."""
        if not isinstance(nodes, list):
            raise SpecError(f"is a {type(nodes).__name__}", file=self.file, key=key, expected="a list of nodes")
        per_child = []
        for i, node in enumerate(nodes):
            nk = f"{key}[{i}]"
            if not isinstance(node, dict):
                raise SpecError(f"is a {type(node).__name__}", file=self.file, key=nk, expected="a node (a mapping)")
            if node.get("enabled", True) is False:
                per_child.append([])
                continue
            kind = _kind(node)
            if kind == "branch":
                extra = sorted(set(node) - {"nodes"})
                if extra:
                    raise SpecError(f"unknown keys {extra} on a {getattr(node, 'tag', '') or 'branch'}", file=self.file,
                                    key=nk, expected="only 'nodes'")
                parallel = getattr(node, "tag", "") == "!Parallel"
                groups = self.walk(node.get("nodes") or [], f"{nk}.nodes", in_parallel or parallel)
                if parallel and self.problem is not None:
                    branch_bypass(groups, [d.name for d in self.problem.dataspaces], file=self.file, key=nk)
                per_child.append([g for branch in groups for g in branch])
            else:
                leaf = self._leaf(node, nk, kind, in_parallel)
                per_child.append([leaf.group.setdefault("dataspace", {})])
        return per_child

    def _leaf(self, node: dict, key: str, kind: str, in_parallel: bool) -> _Leaf:
        f = self.file
        for k in node:
            if k not in _LEAF_KEYS or (k == "networks" and kind != "container"):
                raise SpecError(f"unknown key {k!r}", file=f, key=f"{key}.{k}", expected=f"one of {list(_LEAF_KEYS)}")
        if node.get("networks"):
            raise SpecError("'networks' is not supported by coopt (Timeloop's default networks)",
                            file=f, key=f"{key}.networks")
        for k in ("area_scale", "energy_scale"):
            if node.get(k) not in (None, 1):
                raise SpecError(f"'{k}' on an architecture node is not supported by coopt", file=f, key=f"{key}.{k}",
                                expected="the scale inside the component class (compound_components)")
        name = node.get("name", "nothing" if kind == "nothing" else None)
        if not isinstance(name, str) or not name:
            raise SpecError("missing or empty 'name'", file=f, key=f"{key}.name", expected="a string")
        if kind == "component" and not isinstance(node.get("class"), str):
            raise SpecError("component without a 'class'", file=f, key=f"{key}.class",
                            expected="a class (storage/compute with subclass, or DRAM, SRAM, smartbuffer_*, intmac...)")
        attrs = node.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise SpecError(f"is a {type(attrs).__name__}", file=f, key=f"{key}.attributes", expected="a mapping")
        if self.eval:
            attrs = evaluate_all(attrs, self.table, file=f, key=f"{key}.attributes")
        spatial = node.get("spatial") or {}
        if not isinstance(spatial, dict) or set(spatial) - {"meshX", "meshY"}:
            raise SpecError(f"is {spatial!r}", file=f, key=f"{key}.spatial", expected="{meshX: N, meshY: M}")
        mesh = []
        for axis in ("meshX", "meshY"):
            v = spatial.get(axis, 1)
            if self.eval:
                v = evaluate(v, {**self.table, **attrs}, file=f, key=f"{key}.spatial.{axis}")
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"{axis} is {v!r}", file=f, key=f"{key}.spatial.{axis}", expected="a positive integer")
            mesh.append(v)
        cons = node.get("constraints")
        group = normalise_group(cons, self.problem, file=f, key=f"{key}.constraints")
        order = list(cons) if isinstance(cons, dict) else []
        leaf = _Leaf(kind, name, key, node, attrs, (mesh[0], mesh[1]), group, order, in_parallel)
        leaf.sparse = sparse_group(node.get("sparse_optimizations"), kind, file=f, key=f"{key}.sparse_optimizations")
        if kind == "container" and not in_parallel:
            self.table.update(attrs)
        if kind != "nothing":
            if name in self.names:
                raise SpecError(f"duplicate name {name!r}", file=f, key=f"{key}.name", expected="unique node names")
            self.names[name] = leaf
        self.leaves.append(leaf)
        return leaf


_SPARSE_KEYS = ("action_optimization", "representation_format", "compute_optimization")


def _clean(x):
    """timeloopfe's ``clean_empties``: empty lists, mappings and None removed, innermost first."""
    if isinstance(x, dict):
        out = {k: _clean(v) for k, v in x.items()}
        return {k: v for k, v in out.items() if v is not None and v != {} and v != []}
    if isinstance(x, list):
        out = [_clean(v) for v in x]
        return [v for v in out if v is not None and v != {} and v != []]
    return x


def sparse_group(node, kind: str, *, file, key: str) -> dict:
    """A node's ``sparse_optimizations`` (sparse_optimizations.py ``SparseOptimizationGroup``), empties cleaned.

    ``target`` only names the node (top-level targets); Timeloop reads the entry's ``name``.  timeloopfe
    drops a container's group without a word, so coopt refuses it.
    """
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise SpecError(f"is a {type(node).__name__}", file=file, key=key, expected="a mapping")
    for k in node:
        if k not in (*_SPARSE_KEYS, "target"):
            raise SpecError(f"unknown key {k!r} in sparse_optimizations", file=file, key=f"{key}.{k}",
                            expected=f"one of {list(_SPARSE_KEYS)}")
    group = _clean({k: v for k, v in node.items() if k != "target"})
    if group and kind != "component":
        raise SpecError(f"sparse_optimizations on a {kind} would be ignored by timeloopfe", file=file, key=key,
                        expected="sparse_optimizations on storage or compute components")
    return group


def _attach_sparse(w: _Walker, t, file, key) -> None:
    """A top-level ``sparse_optimizations: targets:`` entry joined to its node (sparse_opt_attacher.py)."""
    if not isinstance(t, dict) or not isinstance(t.get("target"), str):
        raise SpecError("a sparse optimisation target needs 'target'", file=file, key=key,
                        expected="{target: NODE, action_optimization: ..., representation_format: ...}")
    leaf = w.names.get(t["target"])
    if leaf is None:
        raise SpecError(f"target {t['target']!r} is not a node", file=file, key=f"{key}.target",
                        expected=f"one of {sorted(w.names)}")
    group = sparse_group(t, leaf.kind, file=file, key=key)
    for k, v in group.items():
        if leaf.sparse.get(k) not in (None, v):
            raise SpecError(f"{k} of {t['target']!r} given both here and in the node", file=file, key=f"{key}.{k}",
                            expected="each optimisation of a node given once")
        leaf.sparse[k] = v


def _check_container(leaf: _Leaf, file) -> None:
    """A container's constraints reach Timeloop only as the spatial constraint of its fan-out (v4_to_v3)."""
    fan = leaf.mesh[0] * leaf.mesh[1]
    lost = [t for t, body in leaf.group.items() if body and (t != "spatial" or fan == 1)]
    if lost:
        raise SpecError(f"container '{leaf.name}': {lost} constraints would be ignored by timeloopfe "
                        f"({'only a spatial constraint on a fan-out is used' if fan > 1 else 'it has no fan-out'})",
                        file=file, key=f"{leaf.key}.constraints", expected="constraints on components")


def flatten_nodes(arch: dict, *, file: str | None = None, variables: dict | None = None, problem=None,
                  evaluate_exprs: bool = False, size_one_dims: bool = True,
                  top_targets: list | None = None, targets_file: str | None = None,
                  sparse: list | None = None, top_sparse: list | None = None,
                  sparse_file: str | None = None) -> tuple[dict, list]:
    """timeloopfe's v4->v3 transpiler: ``(architecture in v0.4 subtree form, constraint targets)``.

    ``sparse``, a list, receives the ``sparse_optimizations: targets:`` entries (``top_sparse``: the spec's
    own top-level targets, from ``sparse_file``); without it a node's sparse optimisations are refused.

    Without ``problem`` only the architecture is meaningful (constraints need the problem's dimensions).
    ``size_one_dims`` adds the problem's size-1 dimensions to permutations as timeloopfe does; leave it
    off where the targets are applied to other layers than this problem.
    """
    w = _Walker(file, variables if evaluate_exprs else None, problem, evaluate_exprs)
    w.walk(arch.get("nodes") or [], "architecture.nodes")
    for i, t in enumerate(top_targets or []) if problem is not None else ():
        _attach(w, t, problem, targets_file, f"constraints.targets[{i}]")
    for i, t in enumerate(top_sparse or []):
        _attach_sparse(w, t, sparse_file, f"sparse_optimizations.targets[{i}]")
    level = {"name": "top_level", "attributes": {"version": "0.4", **(variables or {})}, "local": []}
    targets: list = []
    arch_attrs: dict = {}
    mx = my = nx = ny = 1
    first = True
    for leaf in w.leaves:
        mx, my, nx, ny = mx * nx, my * ny, 1, 1
        if leaf.kind == "nothing":
            continue
        is_container = leaf.kind == "container"
        fan = leaf.mesh[0] * leaf.mesh[1]
        if (is_container or fan != 1) and leaf.in_parallel:
            what = "a container" if is_container else "a component with a spatial fan-out"
            raise SpecError(f"'{leaf.name}' is {what} inside a !Parallel, which timeloopfe does not support",
                            file=file, key=leaf.key, expected="components without 'spatial' in a !Parallel")
        if is_container:
            arch_attrs.update(leaf.attrs)
            _check_container(leaf, file)
            if first:
                level["name"] = f"{leaf.name}_top_level"
                level["attributes"].update(leaf.attrs)
        first = False
        if problem is not None and leaf.kind == "component" and is_buffer_class(leaf.node["class"]):
            optimise_permutations(leaf.group.setdefault("temporal", {}), problem if size_one_dims else None)
        if problem is not None and fan > 1:
            optimise_permutations(leaf.group.setdefault("spatial", {}), problem if size_one_dims else None)
        place = [leaf]
        if is_container or fan != 1:
            nx, ny = leaf.mesh
            place = []
            if fan != 1:
                place.append(("dummy", leaf))
            if not is_container:
                place.append(("node", leaf))
        else:
            place = [("node", leaf)]
        for what, n in place:
            if what == "dummy":
                name, cls = f"inter_{n.name}_spatial", "dummy_storage"
                attrs = {"width": 1, "depth": 1, "datawidth": 1, "technology": -1}
                group, order = dummy_group(problem, n.group.get("spatial")), ()
                comp = {"class": cls}
            else:
                name, attrs, order = n.name, dict(n.attrs), n.order
                group = {k: v for k, v in n.group.items() if k != "spatial" or fan == 1}
                comp = {k: n.node[k] for k in ("class", "subclass") if n.node.get(k) is not None}
            attrs["meshX"], attrs["meshY"] = mx, my
            for k, v in arch_attrs.items():
                attrs.setdefault(k, v)
            full = f"{name}[1..{mx * my}]"
            level["local"].append({"name": full, **comp, "attributes": attrs})
            if problem is not None:
                targets.extend(to_targets(group, name, order))
            if what == "node" and n.sparse:
                if sparse is None:
                    raise SpecError("sparse_optimizations in an architecture read alone is not supported by coopt",
                                    file=file, key=f"{n.key}.sparse_optimizations",
                                    expected="a v4 spec (coopt evaluate/map) for sparse optimisations")
                sparse.append({**n.sparse, "name": n.name})
            mx, my, nx, ny = mx * nx, my * ny, 1, 1
    if not level["local"]:
        raise SpecError("no components", file=file, key="architecture.nodes", expected="storage levels and a compute unit")
    return {"version": "0.4", "subtree": [level]}, targets


def _attach(w: _Walker, t, problem, file, key) -> None:
    """Top-level ``constraints: targets:`` of a v4 spec, attached to the node they name (constraint_attacher.py)."""
    if not isinstance(t, dict) or not isinstance(t.get("target"), str):
        raise SpecError("a target needs 'target' and 'type'", file=file, key=key, expected="{target: NAME, type: ...}")
    ctype = {"bypass": "dataspace", "datatype": "dataspace"}.get(t.get("type"), t.get("type"))
    leaf = w.names.get(t["target"])
    if leaf is None:
        raise SpecError(f"target {t['target']!r} is not a node", file=file, key=f"{key}.target",
                        expected=f"one of {sorted(w.names)}")
    if ctype not in ("spatial", "temporal", "dataspace", "max_overbooked_proportion"):
        raise SpecError(f"unknown type {t.get('type')!r}", file=file, key=f"{key}.type",
                        expected="spatial, temporal, dataspace (bypass) or max_overbooked_proportion")
    body = normalise(ctype, t, problem, file=file, key=key)
    attach_target(leaf.group, ctype, body, file=file, key=key)
