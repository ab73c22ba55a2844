"""Mapspace constraints in Timeloop's format, resolved against one architecture and layer.

A constraint target names a storage level and a type:
``temporal``/``spatial`` (``factors: C=1 M=4`` fix factors, ``C<=4`` caps
them; ``permutation: NC_Q`` fixes the innermost loops N, C and the outermost
Q, as Timeloop reads it; ``split`` fixes how many of a spatial permutation's
dimensions go on X), ``bypass``/``datatype`` (``keep``/``bypass`` lists) and
``utilization`` (``min``, a level's least capacity use).  Anything not
constrained is free for the mapper.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from coopt.arch.spec import Architecture
from coopt.errors import SpecError
from coopt.model.mapping import iter_directives, parse_keep_bypass, parse_split
from coopt.workload.problem import Problem

_FACTOR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*?)\s*(<=|>=|=)?\s*(\d+)")


@dataclass
class LevelConstraints:
    t_fixed: dict[int, int] = field(default_factory=dict)     # dim -> temporal factor
    t_max: dict[int, int] = field(default_factory=dict)
    s_fixed: dict[int, int] = field(default_factory=dict)     # dim -> spatial factor
    s_max: dict[int, int] = field(default_factory=dict)
    t_prefix: list[int] = field(default_factory=list)         # innermost temporal loops, in order
    t_suffix: list[int] = field(default_factory=list)         # outermost temporal loops, in order
    s_order: list[int] | None = None                          # full spatial order (innermost first)
    s_prefix: list[int] = field(default_factory=list)
    s_suffix: list[int] = field(default_factory=list)
    split: int | None = None
    keep: set[str] = field(default_factory=set)
    bypass: set[str] = field(default_factory=set)
    min_utilization: float = 0.0


@dataclass
class MapConstraints:
    """Per storage level (innermost first) what the mapper may not change."""

    levels: list[LevelConstraints]
    source: list = field(default_factory=list)

    def key(self) -> tuple:
        return tuple(repr(sorted(vars(l).items())) for l in self.levels)


def _parse_factor_list(text, problem: Problem, *, file, key):
    fixed, caps = {}, {}
    if text is None:
        return fixed, caps
    if not isinstance(text, str):
        raise SpecError("factors must be a string", file=file, key=key, expected="like 'C=1 M<=4'")
    body = text.split("#")[0]
    leftover = _FACTOR.sub("", body).replace(",", " ").strip()
    if leftover:
        raise SpecError(f"cannot read factors {text!r}", file=file, key=key, expected="like 'C=1 M<=4'")
    for name, op, value in _FACTOR.findall(body):
        if name not in problem.dims:
            raise SpecError(f"unknown dimension {name!r}", file=file, key=key, expected=f"one of {list(problem.dims)}")
        d = problem.dims.index(name)
        v = int(value)
        bound = problem.bounds[name]
        if op in ("", "="):
            if v == 0:
                v = bound                      # Timeloop: 0 means the whole dimension
            if v > bound:
                continue                       # Timeloop ignores a factor beyond the dimension
            fixed[d] = v
        elif op == "<=":
            caps[d] = max(1, v)
        # '>=' is accepted and ignored: Timeloop's mapper treats it as a hint only
    return fixed, caps


def _parse_perm(text, problem: Problem, *, file, key) -> tuple[list[int], list[int]]:
    if text is None:
        return [], []
    if isinstance(text, (list, tuple)):
        text = "".join(str(t) for t in text)
    if not isinstance(text, str):
        raise SpecError("permutation must be a string", file=file, key=key, expected="like 'NCP_Q'")
    body = text.split("#")[0].replace(" ", "")
    prefix, _, suffix = body.partition("_")
    out = []
    for part in (prefix, suffix):
        dims = []
        for ch in part:
            if ch not in problem.dims:
                raise SpecError(f"unknown dimension {ch!r} in permutation", file=file, key=key,
                                expected=f"letters from {list(problem.dims)}")
            dims.append(problem.dims.index(ch))
        out.append(dims)
    if len(set(out[0] + out[1])) != len(out[0]) + len(out[1]):
        raise SpecError(f"permutation {text!r} repeats a dimension", file=file, key=key)
    return out[0], out[1]


def parse_constraints(targets, arch: Architecture, problem: Problem, *, file=None,
                      key: str = "constraints") -> MapConstraints:
    """Resolve Timeloop constraint targets (a list of dicts) for ``arch`` and ``problem``."""
    levels = [LevelConstraints() for _ in arch.storage]
    if targets is None:
        return MapConstraints(levels, [])
    if isinstance(targets, dict):
        targets = targets.get("targets", [])
    if not isinstance(targets, list):
        raise SpecError("constraints must be a list of targets", file=file, key=key,
                        expected="- target: LEVEL\\n  type: temporal|spatial|bypass|utilization")
    ds_names = [d.name for d in problem.dataspaces]
    for k, li, kind, t in iter_directives(targets, arch, file=file, key=key):
        lc = levels[li]
        kind = t.get("type")
        if kind in ("temporal", "spatial"):
            fixed, caps = _parse_factor_list(t.get("factors"), problem, file=file, key=f"{k}.factors")
            prefix, suffix = _parse_perm(t.get("permutation"), problem, file=file, key=f"{k}.permutation")
            if kind == "temporal":
                lc.t_fixed.update(fixed)
                lc.t_max.update(caps)
                if prefix or suffix:
                    lc.t_prefix, lc.t_suffix = prefix, suffix
            else:
                lc.s_fixed.update(fixed)
                lc.s_max.update(caps)
                if prefix or suffix:
                    if len(prefix) == len(problem.dims) and not suffix:
                        lc.s_order = prefix
                    lc.s_prefix, lc.s_suffix = prefix, suffix
                s = parse_split(t, len(problem.dims), file=file, key=k)
                if s is not None:
                    lc.split = s
        elif kind in ("bypass", "datatype", "dataspace"):
            kept, bypassed = parse_keep_bypass(t, ds_names, file=file, key=k)
            lc.keep |= kept
            lc.bypass |= bypassed
            both = lc.keep & lc.bypass
            if both:
                raise SpecError(f"{sorted(both)} both kept and bypassed", file=file, key=k)
        elif kind == "utilization":
            v = t.get("min", 0)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise SpecError(f"min is {v!r}", file=file, key=f"{k}.min", expected="a number in [0, 1]")
            lc.min_utilization = float(v)
        else:
            raise SpecError(f"unknown constraint type {kind!r}", file=file, key=f"{k}.type",
                            expected="temporal, spatial, bypass or utilization")
    # Outermost level keeps everything unless told otherwise (it is the backing store).
    for ds in ds_names:
        if all(ds in lc.bypass for lc in levels):
            raise SpecError(f"{ds} bypasses every storage level", file=file, key=key,
                            expected=f"{ds} kept in at least one level (e.g. the outermost)")
    return MapConstraints(levels, list(targets))


CONSTRAINT_KEYS = ("architecture_constraints", "mapspace_constraints", "constraints")


def collect_targets(raw: dict, sources: dict) -> tuple[list, str | None, str]:
    """Timeloop's places for constraints (architecture_constraints, mapspace_constraints, constraints,
    mapspace: constraints:) merged into one target list; returns (targets, file(s), key) for errors."""
    targets, files, keys = [], [], []

    def take(node, key, file):
        if node is None:
            return
        if isinstance(node, dict):
            node = node.get("targets", [])
        if not isinstance(node, list):
            raise SpecError("must be a list of constraint targets", file=file, key=key)
        targets.extend(node)
        if node:
            keys.append(key)
            if file and file not in files:
                files.append(file)

    for key in CONSTRAINT_KEYS:
        take(raw.get(key), key, sources.get(key))
    ms = raw.get("mapspace")
    if isinstance(ms, dict) and isinstance(ms.get("constraints"), (list, dict)):
        take(ms["constraints"], "mapspace.constraints", sources.get("mapspace"))
    return targets, ", ".join(files) or None, keys[0] if len(keys) == 1 else "constraints"


def constraints_from_inputs(raw: dict, arch: Architecture, problem: Problem, sources: dict) -> MapConstraints:
    """The constraints of a Timeloop input set, resolved for ``arch`` and ``problem``."""
    targets, file, key = collect_targets(raw, sources)
    return parse_constraints(targets, arch, problem, file=file, key=key)
