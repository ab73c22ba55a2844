"""A timeloopfe v4 specification -> the processed input Timeloop reads, so the rest of coopt is unchanged.

``load_spec(paths, variables)`` reads a Jinja2 top file, or an architecture
plus component and problem files, and returns ``(raw, sources)`` in the form
timeloopfe writes as ``parsed-processed-input.yaml``
(``version_transpilers/v4_to_v3.py``): the architecture as one v0.4
``subtree`` level of flat ``local`` components (``name[1..N]``, ``meshX``/
``meshY``, container attributes passed down, an ``inter_<node>_spatial``
dummy level under every fan-out), ``architecture_constraints: targets:`` from
the constraints written in the nodes (:mod:`coopt.arch.v4_constraints`),
``compound_components`` from ``components:``, and the problem with its
expressions evaluated.  Plain Timeloop files (no Jinja, no ``nodes:``) are
read exactly as before (:func:`coopt.yamlio.load_merged`).

Keys timeloopfe accepts and Timeloop ignores are documented no-ops: the
derived CNN instance keys (``H``, ``W``, ``Hpad``, ``Wpad``: see
:mod:`coopt.workload.yaml_io`), ``globals.environment_variables``, the
defaults timeloopfe writes (``n_banks``, ``has_power_gating``...).  Anything
coopt cannot honour (``sparse_optimizations``, ``networks``, custom Python
expression functions, plug-in folders, ``maximize_dims``) is refused.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from coopt.arch.attrs import is_buffer_class
from coopt.arch.v4_constraints import (attach_target, branch_bypass, dummy_group, normalise, normalise_group,
                                       optimise_permutations, to_targets)
from coopt.arch.v4_expr import evaluate, evaluate_all
from coopt.arch.v4_files import V4State, is_jinja, load_v4_file
from coopt.errors import SpecError
from coopt.yamlio import load_merged, loads_yaml, read_text

__all__ = ["load_spec", "flatten_nodes", "is_v4_text", "TIMELOOPFE_DEFAULTS"]

_V4_MARK = re.compile(r"!(Component|Container|Hierarchical|Parallel|Pipelined|Nothing)\b|^\s*nodes\s*:", re.M)
_LEAF_KEYS = ("name", "attributes", "spatial", "constraints", "sparse_optimizations", "class", "subclass",
              "required_actions", "area_scale", "energy_scale", "enabled", "networks")
_BRANCH_TAGS = ("!Hierarchical", "!Parallel", "!Pipelined")
# timeloopfe v4/arch.py StorageAttributes defaults, written into every storage node it dumps.  They equal
# Timeloop's own defaults, so they are not written here: coopt's estimators would otherwise see keys the
# user did not write (n_banks: 2 reaches coopt's CACTI model; the reference's CactiSRAM ignored it).
TIMELOOPFE_DEFAULTS = {"n_banks": 2, "cluster_size": 1, "reduction_supported": True, "multiple_buffering": 1,
                       "min_utilization": 0, "allow_overbooking": False}


# Top-level lists that several input files may each extend (timeloopfe combines repeated keys).
_COMBINE = {"compound_components": "classes", "components": "classes", "constraints": "targets"}


def is_v4_text(path, text: str) -> bool:
    return is_jinja(path, text) or bool(_V4_MARK.search(text))


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
        for k in ("sparse_optimizations", "networks"):
            if node.get(k):
                raise SpecError(f"'{k}' is not supported by coopt (dense tensors, Timeloop's default networks)",
                                file=f, key=f"{key}.{k}")
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
        if kind == "container" and not in_parallel:
            self.table.update(attrs)
        if kind != "nothing":
            if name in self.names:
                raise SpecError(f"duplicate name {name!r}", file=f, key=f"{key}.name", expected="unique node names")
            self.names[name] = leaf
        self.leaves.append(leaf)
        return leaf


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
                  top_targets: list | None = None, targets_file: str | None = None) -> tuple[dict, list]:
    """timeloopfe's v4->v3 transpiler: ``(architecture in v0.4 subtree form, constraint targets)``.

    Without ``problem`` only the architecture is meaningful (constraints need the problem's dimensions).
    ``size_one_dims`` adds the problem's size-1 dimensions to permutations as timeloopfe does; leave it
    off where the targets are applied to other layers than this problem.
    """
    w = _Walker(file, variables if evaluate_exprs else None, problem, evaluate_exprs)
    w.walk(arch.get("nodes") or [], "architecture.nodes")
    for i, t in enumerate(top_targets or []) if problem is not None else ():
        _attach(w, t, problem, targets_file, f"constraints.targets[{i}]")
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


def _problem(raw: dict, sources: dict, table: dict):
    from coopt.workload.yaml_io import problem_from_yaml

    node = raw.get("problem")
    if not isinstance(node, dict):
        return None
    file = sources.get("problem")
    inst = node.get("instance")
    if isinstance(inst, dict):
        node = dict(node)
        node["instance"] = {k: evaluate(v, table, file=file, key=f"problem.instance.{k}") if k != "densities" else v
                            for k, v in inst.items()}
        raw["problem"] = node
    return problem_from_yaml(node, file=file)


def _part_matches(raw: dict, sources: dict, part: str, timeloops: tuple, inner: str) -> tuple[list, str | None]:
    """Every top-level key containing ``part`` (timeloopfe's part_name_match: ``extra_mapping_constraints``
    is a constraints list, ``my_components`` a components list), popped and joined; Timeloop's own keys stay."""
    items, file = [], None
    for key in [k for k in raw if isinstance(k, str) and part in k and k not in timeloops]:
        node = raw.pop(key)
        got = node.get(inner) if isinstance(node, dict) else node
        if got is None:
            continue
        if not isinstance(got, list):
            raise SpecError(f"is a {type(got).__name__}", file=sources.get(key), key=f"{key}.{inner}",
                            expected="a list")
        items.extend(got)
        file = file or sources.get(key)
    return items, file


def _refuse_globals(raw: dict, sources: dict) -> None:
    g = raw.get("globals") or {}
    if not isinstance(g, dict):
        return
    for k in ("expression_custom_functions", "accelergy_plug_ins"):
        if g.get(k):
            raise SpecError(f"'{k}' is not supported by coopt (it would run the files' Python code)",
                            file=sources.get("globals"), key=f"globals.{k}")


def _override(variables: dict, overrides: dict, file) -> dict:
    """``--set NAME=VALUE`` on a spec: a value of its ``variables:`` replaced in place (later ones see it)."""
    unknown = sorted(set(overrides) - set(variables))
    if unknown:
        raise SpecError(f"no variable {unknown[0]!r} in the spec's variables:", file=file, key="--set",
                        expected=f"one of {sorted(k for k in variables if k != 'version')}")
    out = dict(variables)
    for k, v in overrides.items():
        out[k] = loads_yaml(v, file=file) if isinstance(v, str) else v     # "16" -> 16, as YAML reads it
    return out


def process(raw: dict, sources: dict, *, size_one_dims: bool = True, overrides: dict | None = None) -> dict:
    """A merged v4 input (``architecture.nodes``) -> the processed form (see the module's docstring)."""
    afile = sources.get("architecture")
    _refuse_globals(raw, sources)
    variables = raw.pop("variables", None) or {}
    if not isinstance(variables, dict):
        raise SpecError("is not a mapping", file=sources.get("variables"), key="variables")
    if overrides:
        variables = _override(variables, overrides, sources.get("variables"))
    variables = evaluate_all(variables, {}, file=sources.get("variables"), key="variables")
    problem = _problem(raw, sources, variables)
    if problem is None:                 # an architecture alone (coopt network): Timeloop's CNN layer shape
        from coopt.workload.problem import conv_problem
        problem, size_one_dims = conv_problem("cnn-layer"), False
    top, tfile = _part_matches(raw, sources, "constraints", ("architecture_constraints", "mapspace_constraints"),
                               "targets")
    arch, targets = flatten_nodes(raw["architecture"], file=afile, variables=variables, problem=problem,
                                  evaluate_exprs=True, size_one_dims=size_one_dims, top_targets=top,
                                  targets_file=tfile)
    raw["architecture"] = arch
    if targets:
        given = raw.get("architecture_constraints") or {}
        raw["architecture_constraints"] = {**given, "targets": [*(given.get("targets") or []), *targets]}
        sources.setdefault("architecture_constraints", afile)
    classes, cfile = _part_matches(raw, sources, "components", ("compound_components",), "classes")
    if classes:
        flat = []
        for c in classes:
            flat.extend(c if isinstance(c, list) else [c])   # include_all() gives one list per file
        given = (raw.get("compound_components") or {}).get("classes") or []
        raw["compound_components"] = {"version": "0.4", "classes": [*given, *flat]}
        sources.setdefault("compound_components", cfile)
    if raw.get("mapping") == []:
        raw.pop("mapping")
    return raw


def _plain(x):
    """Plain dicts, lists and strings once expressions are evaluated: the rest of coopt (and every YAML
    writer) sees what it sees from a Timeloop file."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, str) and type(x) is not str:
        return str(x)
    return x


def _shown(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def load_spec(paths, variables: dict | None = None, *, size_one_dims: bool = True,
              overrides: dict | None = None) -> tuple[dict, dict]:
    """Read Timeloop or timeloopfe v4 input files into the merged, processed form: ``(raw, {key: file})``.

    ``variables`` are the Jinja2 variables (``--var``); ``overrides`` replace values of the spec's own
    ``variables:`` (``--set`` on a spec), before any expression over them is evaluated.
    """
    state = V4State(variables)

    def read(path):
        text = read_text(path, what="YAML file")
        if not is_v4_text(path, text):
            data = loads_yaml(text, file=str(path))
        else:
            data = load_v4_file(path, state)
        if not isinstance(data, dict):
            raise SpecError(f"top level is a {type(data).__name__}" if data is not None else "file is empty",
                            file=str(path), expected="a YAML mapping (key: value) at the top level")
        return data

    raw, sources = load_merged([Path(p) for p in paths], read=read, combine=_COMBINE)
    for key, value in raw.items():          # a key spliced in by include() is that file's, for error messages
        if id(value) in state.origin:
            sources[key] = _shown(state.origin[id(value)])
    if variables and not state.rendered:
        raise SpecError(f"--var {next(iter(variables))}=... given, but no input file is a Jinja2 template",
                        key="--var", expected="a top file such as top.yaml.jinja2")
    arch = raw.get("architecture")
    if isinstance(arch, dict) and "nodes" in arch:
        raw = _plain(process(raw, sources, size_one_dims=size_one_dims, overrides=overrides))
    elif overrides:
        raise SpecError(f"--set {next(iter(overrides))}=... given, but {', '.join(map(str, paths))} is not a v4 "
                        "spec with variables:", key="--set", expected="a template, or a v4 spec (architecture nodes)")
    return raw, sources

