"""Mapspace constraints in Timeloop's format, resolved against one architecture and layer.

Every form Timeloop's parser reads (``src/mapping/constraints.cpp``,
``Constraints::ParseList``/``ParseSingleConstraint``) and timeloopfe v4 writes
(``pytimeloop/timeloopfe/v4/constraints.py``) is either honoured or refused in
one line -- never dropped:

* a target names its level by ``target`` or ``name`` (or a storage index), and
  may hold its constraints in a ``constraints:`` list, each with its values
  directly or under ``attributes:`` (``ParseList``'s two forms);
* ``temporal``/``spatial``: ``factors`` as a string (``"C=1 M<=4 P>=2"``,
  commas or spaces, ``C4`` without ``=``), a list of such strings
  (timeloopfe) or a map (``{C: 1, M: "<=4"}``); ``=`` fixes a factor (0 = the
  whole dimension; beyond the dimension Timeloop warns and ignores it, so do
  we, with the same warning), ``<=`` caps it (``ParseMaxFactors``), ``>=`` is
  a floor (``ParseMinFactors``, used by ``Uber::InitIndexFactorizationSpace``);
  ``default_max_factor``/``default_min_factor`` apply to unnamed dimensions;
  ``permutation`` (string or list, innermost first, ``_`` separates the
  innermost prefix from the outermost suffix: ``PermutationSpace::InitLevel``);
  spatial ``split`` (first dimensions on X); ``remainders`` only widens
  Timeloop's space to imperfect factors, and coopt's perfect-factor space is
  inside it, so it is accepted;
* ``bypass``/``bypassing``/``datatype``/``dataspace``: ``keep``/``bypass``
  lists (a data space in both, anywhere for one level, is an error);
* ``utilization``/``parallelism``: ``min``, the least fraction of the compute
  units used (``Uber``'s ``MinParallelism``), allowed at the innermost level
  only, as in ``FindTargetTilingLevel``.

Refused (coopt's model has no such behaviour, so honouring them is not
possible): non-empty ``no_reuse``/``no_temporal_reuse``/
``no_multicast_no_reduction``/``no_link_transfer``/``rmw_first_update``/
``no_coalesce`` and ``max_overbooked_proportion`` (sparse overbooking).  A key
Timeloop does not read (``max`` of a utilization, a misspelt ``factor``) is an
error too: Timeloop would ignore it silently.  Anything not constrained is
free for the mapper.
"""
from __future__ import annotations

import re
from collections.abc import Mapping as MappingT
from dataclasses import dataclass, field

from coopt.arch.spec import Architecture
from coopt.energy.notice import warn_once
from coopt.errors import SpecError
from coopt.model.mapping import parse_keep_bypass, parse_split
from coopt.workload.problem import Problem

_FACTOR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*?)\s*(<=|>=|=)?\s*(\d+)")
_ITERATION = ("factors", "permutation", "default_max_factor", "default_min_factor", "remainders")
_KEYS = {
    "temporal": _ITERATION + ("no_reuse", "no_temporal_reuse", "rmw_first_update"),
    "spatial": _ITERATION + ("split", "no_reuse", "no_multicast_no_reduction", "no_link_transfer"),
    "bypass": ("keep", "bypass", "no_coalesce"),
    "utilization": ("min",),
    "max_overbooked_proportion": ("proportion",),
}
_ALIASES = {"datatype": "bypass", "bypassing": "bypass", "dataspace": "bypass", "parallelism": "utilization"}
_COMMON = ("type", "target", "name", "attributes")
# keys whose behaviour coopt's model does not have: honoured only when empty
_UNSUPPORTED = ("no_reuse", "no_temporal_reuse", "no_multicast_no_reduction", "no_link_transfer",
                "rmw_first_update", "no_coalesce")


@dataclass
class LevelConstraints:
    t_fixed: dict[int, int] = field(default_factory=dict)     # dim -> temporal factor
    t_max: dict[int, int] = field(default_factory=dict)
    t_min: dict[int, int] = field(default_factory=dict)
    s_fixed: dict[int, int] = field(default_factory=dict)     # dim -> spatial factor
    s_max: dict[int, int] = field(default_factory=dict)
    s_min: dict[int, int] = field(default_factory=dict)
    t_prefix: list[int] = field(default_factory=list)         # innermost temporal loops, in order
    t_suffix: list[int] = field(default_factory=list)         # outermost temporal loops, in order
    s_order: list[int] | None = None                          # full spatial order (innermost first)
    s_prefix: list[int] = field(default_factory=list)
    s_suffix: list[int] = field(default_factory=list)
    split: int | None = None
    keep: set[str] = field(default_factory=set)
    bypass: set[str] = field(default_factory=set)


@dataclass
class MapConstraints:
    """Per storage level (innermost first) what the mapper may not change."""

    levels: list[LevelConstraints]
    source: list = field(default_factory=list)
    min_parallelism: float = 0.0        # least fraction of the compute units used (Timeloop's 'utilization')

    def key(self) -> tuple:
        return tuple(repr(sorted(vars(l).items())) for l in self.levels) + (self.min_parallelism,)


def _factor_items(value, *, file, key) -> list[tuple[str, str, str]]:
    """(dimension, operator, number) of a factors value in any of Timeloop's or timeloopfe's forms."""
    expected = "like 'C=1 M<=4', a list of such strings or a map {C: 1, M: '<=4'}"
    if value is None:
        return []
    if isinstance(value, MappingT):
        parts = []
        for name, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise SpecError(f"factor of {name} is {v!r}", file=file, key=f"{key}.{name}", expected=expected)
            v = str(v).strip()
            parts.append(f"{name}{v}" if v[:1] in "<>=" else f"{name}={v}")
        value = ",".join(parts)
    elif isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise SpecError(f"factors {value!r}", file=file, key=key, expected=expected)
        value = ",".join(value)
    if not isinstance(value, str):
        raise SpecError(f"factors is {value!r}", file=file, key=key, expected=expected)
    body = value.split("#")[0]
    if _FACTOR.sub("", body).replace(",", " ").strip():
        raise SpecError(f"cannot read factors {value!r}", file=file, key=key, expected=expected)
    return _FACTOR.findall(body)


def _int_attr(t: dict, name: str, *, file, key, low: int = 1) -> int | None:
    v = t.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise SpecError(f"{name} is {v!r}", file=file, key=f"{key}.{name}", expected=f"an integer >= {low}")
    return v


def _parse_factors(t: dict, problem: Problem, *, file, key):
    """(fixed, max, min) factors per dimension index, as Parse(Max|Min)Factors read them."""
    fixed, caps, mins = {}, {}, {}
    for name, op, value in _factor_items(t.get("factors"), file=file, key=f"{key}.factors"):
        if name not in problem.dims:
            raise SpecError(f"unknown dimension {name!r}", file=file, key=f"{key}.factors",
                            expected=f"one of {list(problem.dims)}")
        d, v, bound = problem.dims.index(name), int(value), problem.bounds[name]
        table = fixed if op in ("", "=") else caps if op == "<=" else mins
        if op in ("", "="):
            if v == 0:
                v = bound                      # Timeloop: 0 means the whole dimension
            if v > bound:                      # Timeloop warns and ignores it (ParseFactors)
                warn_once(f"{file or 'constraints'}: {key}.factors: {name}={v} exceeds the layer's {name}={bound}; "
                      f"ignored, as Timeloop does")
                continue
        elif v <= 0:
            raise SpecError(f"{name}{op}{v}", file=file, key=f"{key}.factors", expected="a positive bound")
        if d in table and table[d] != v:
            raise SpecError(f"{name} given twice ({name}{op or '='}{table[d]} and {name}{op or '='}{v})",
                            file=file, key=f"{key}.factors", expected="one value per dimension")
        table[d] = v
    for name, table in (("default_max_factor", caps), ("default_min_factor", mins)):
        v = _int_attr(t, name, file=file, key=key)
        if v is not None:
            for d in range(len(problem.dims)):
                table.setdefault(d, v)
    for d, lo in mins.items():
        if d in caps and caps[d] < lo:
            raise SpecError(f"{problem.dims[d]}>={lo} and {problem.dims[d]}<={caps[d]} exclude each other",
                            file=file, key=f"{key}.factors")
    return fixed, caps, mins


def _parse_perm(text, problem: Problem, *, file, key) -> tuple[list[int], list[int]]:
    """(innermost prefix, outermost suffix) of a permutation, as ParsePermutations splits it at '_'."""
    if text is None:
        return [], []
    if isinstance(text, (list, tuple)):
        if not all(isinstance(t, str) for t in text):
            raise SpecError(f"permutation {text!r}", file=file, key=key, expected="dimension names")
        text = "".join(text) if all(len(d) == 1 for d in problem.dims) else " ".join(text)
    if not isinstance(text, str):
        raise SpecError("permutation must be a string or a list", file=file, key=key, expected="like 'NCP_Q'")
    body = text.split("#")[0].replace(",", " ")
    prefix, _, suffix = body.partition("_")
    out = []
    for part in (prefix, suffix):
        names = part.split() if " " in part.strip() or not all(len(d) == 1 for d in problem.dims) \
            else list(part.strip())
        dims = []
        for ch in names:
            if ch not in problem.dims:
                raise SpecError(f"unknown dimension {ch!r} in permutation", file=file, key=key,
                                expected=f"letters from {list(problem.dims)}")
            dims.append(problem.dims.index(ch))
        out.append(dims)
    if len(set(out[0] + out[1])) != len(out[0]) + len(out[1]):
        raise SpecError(f"permutation {text!r} repeats a dimension", file=file, key=key)
    return out[0], out[1]


def flatten_targets(targets, arch: Architecture, *, file=None, key: str = "constraints"):
    """Yield (key, level index, type, values) for every constraint, in Timeloop's accepted layouts."""
    names = [lvl.name for lvl in arch.storage]
    for i, t in enumerate(targets):
        k = f"{key}[{i}]"
        if not isinstance(t, MappingT):
            raise SpecError("each constraint must be a mapping", file=file, key=k,
                            expected="{target: LEVEL, type: temporal|spatial|bypass|utilization, ...}")
        level = t.get("target", t.get("name"))
        if isinstance(level, int) and not isinstance(level, bool):
            if not 0 <= level < len(names):
                raise SpecError(f"target level index {level}", file=file, key=f"{k}.target",
                                expected=f"0..{len(names) - 1}")
            li = level
        elif level in names:
            li = names.index(level)
        else:
            raise SpecError(f"unknown target level {level!r}", file=file, key=f"{k}.target",
                            expected=f"one of {names}")
        inner = t.get("constraints")
        if inner is not None:
            if not isinstance(inner, list):
                raise SpecError("constraints must be a list", file=file, key=f"{k}.constraints")
            for j, c in enumerate(inner):
                if not isinstance(c, MappingT):
                    raise SpecError("each constraint must be a mapping", file=file, key=f"{k}.constraints[{j}]")
                yield from _one(f"{k}.constraints[{j}]", li, c, file)
            continue
        yield from _one(k, li, t, file)


def _one(k: str, li: int, c: dict, file):
    kind = c.get("type")
    kind = _ALIASES.get(kind, kind)
    if kind not in _KEYS:
        raise SpecError(f"unknown constraint type {c.get('type')!r}", file=file, key=f"{k}.type",
                        expected="temporal, spatial, bypass/dataspace, utilization")
    attrs = c.get("attributes")
    if attrs is not None and not isinstance(attrs, MappingT):
        raise SpecError(f"attributes is {type(attrs).__name__}", file=file, key=f"{k}.attributes",
                        expected="a mapping of the constraint's values")
    values = dict(attrs or {})
    values.update({x: v for x, v in c.items() if x not in ("attributes", "constraints")})
    for x, v in values.items():
        if x not in _COMMON and x not in _KEYS[kind]:
            raise SpecError(f"unknown key {x!r} in a {kind} constraint", file=file, key=f"{k}.{x}",
                            expected=f"one of {list(_KEYS[kind])}")
        if x in _UNSUPPORTED and v not in (None, [], ""):
            raise SpecError(f"{x} {v!r} is not supported: coopt's model has no such behaviour", file=file,
                            key=f"{k}.{x}", expected="the key removed (or an empty list)")
    if kind == "max_overbooked_proportion":
        raise SpecError("max_overbooked_proportion is not supported (sparse overbooking)", file=file,
                        key=f"{k}.type", expected="a dense constraint")
    yield k, li, kind, values


def parse_constraints(targets, arch: Architecture, problem: Problem, *, file=None,
                      key: str = "constraints") -> MapConstraints:
    """Resolve Timeloop constraint targets (a list of dicts) for ``arch`` and ``problem``."""
    levels = [LevelConstraints() for _ in arch.storage]
    if targets is None:
        return MapConstraints(levels, [])
    if isinstance(targets, MappingT):
        targets = targets.get("targets", [])
    if not isinstance(targets, list):
        raise SpecError("constraints must be a list of targets", file=file, key=key,
                        expected="- target: LEVEL\\n  type: temporal|spatial|bypass|utilization")
    ds_names = [d.name for d in problem.dataspaces]
    min_par = 0.0
    for k, li, kind, t in flatten_targets(targets, arch, file=file, key=key):
        lc = levels[li]
        if kind in ("temporal", "spatial"):
            fixed, caps, mins = _parse_factors(t, problem, file=file, key=k)
            _int_attr(t, "remainders", file=file, key=k, low=0)
            prefix, suffix = _parse_perm(t.get("permutation"), problem, file=file, key=f"{k}.permutation")
            if kind == "temporal":
                _merge(lc.t_fixed, fixed, problem, file=file, key=f"{k}.factors")
                _merge(lc.t_max, caps, problem, file=file, key=f"{k}.factors")
                _merge(lc.t_min, mins, problem, file=file, key=f"{k}.factors")
                if prefix or suffix:
                    _once(lc, "t", prefix, suffix, file=file, key=f"{k}.permutation")
                continue
            fx, fy = arch.fanout(li)
            if fx * fy == 1 and (any(v > 1 for v in fixed.values()) or any(v > 1 for v in mins.values())):
                raise SpecError(f"a spatial factor above 1 at {arch.storage[li].name}, which has no fan-out",
                                file=file, key=f"{k}.factors",
                                expected="spatial constraints at levels whose next-inner level has more instances")
            _merge(lc.s_fixed, fixed, problem, file=file, key=f"{k}.factors")
            _merge(lc.s_max, caps, problem, file=file, key=f"{k}.factors")
            _merge(lc.s_min, mins, problem, file=file, key=f"{k}.factors")
            if prefix or suffix:
                _once(lc, "s", prefix, suffix, file=file, key=f"{k}.permutation")
                if len(prefix) == len(problem.dims) and not suffix:
                    lc.s_order = prefix
            s = parse_split(t, len(problem.dims), file=file, key=k)
            if s is not None:
                lc.split = s
        elif kind == "bypass":
            kept, bypassed = parse_keep_bypass(t, ds_names, file=file, key=k)
            lc.keep |= kept
            lc.bypass |= bypassed
            both = lc.keep & lc.bypass
            if both:
                raise SpecError(f"{', '.join(sorted(both))} both kept and bypassed at {arch.storage[li].name}",
                                file=file, key=k, expected="each data space in keep or in bypass, not both")
        else:   # utilization: Timeloop's min parallelism, at the innermost storage level only
            v = t.get("min", 0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise SpecError(f"min is {v!r}", file=file, key=f"{k}.min", expected="a number in [0, 1]")
            if li != 0:
                raise SpecError(f"utilization constrained at {arch.storage[li].name}", file=file, key=f"{k}.target",
                                expected=f"the innermost storage level {arch.storage[0].name}, as in Timeloop")
            min_par = float(v)
    for ds in ds_names:
        if all(ds in lc.bypass for lc in levels):
            raise SpecError(f"{ds} bypasses every storage level", file=file, key=key,
                            expected=f"{ds} kept in at least one level (e.g. the outermost)")
    return MapConstraints(levels, list(targets), min_par)


def _once(lc: LevelConstraints, kind: str, prefix: list, suffix: list, *, file, key) -> None:
    """A level's permutation, given once (Timeloop: 're-specification of permutation')."""
    old = (getattr(lc, f"{kind}_prefix"), getattr(lc, f"{kind}_suffix"))
    if (old[0] or old[1]) and old != (prefix, suffix):
        raise SpecError("a second, different permutation for this level", file=file, key=key,
                        expected="one permutation per level and type")
    setattr(lc, f"{kind}_prefix", prefix)
    setattr(lc, f"{kind}_suffix", suffix)


def _merge(into: dict, new: dict, problem: Problem, *, file, key) -> None:
    """Factors of one level from several constraints; a different value twice is Timeloop's
    're-specification' error."""
    for d, v in new.items():
        if d in into and into[d] != v:
            raise SpecError(f"{problem.dims[d]} constrained twice at one level ({into[d]} and {v})", file=file,
                            key=key, expected="one value per dimension and level")
        into[d] = v


CONSTRAINT_KEYS = ("architecture_constraints", "arch_constraints", "mapspace_constraints", "constraints")


def collect_targets(raw: dict, sources: dict) -> tuple[list, str | None, str]:
    """Timeloop's places for constraints (``architecture: constraints:``, architecture_constraints,
    arch_constraints, mapspace_constraints, constraints, mapspace: constraints:) merged into one target
    list; returns (targets, file(s), key) for errors."""
    targets, files, keys = [], [], []

    def take(node, key, file):
        if node is None:
            return
        if isinstance(node, MappingT):
            node = node.get("targets", node.get("constraints", []))
        if not isinstance(node, list):
            raise SpecError("must be a list of constraint targets", file=file, key=key)
        targets.extend(node)
        if node:
            keys.append(key)
            if file and file not in files:
                files.append(file)

    arch = raw.get("architecture")
    if isinstance(arch, MappingT) and arch.get("constraints") is not None:
        take(arch["constraints"], "architecture.constraints", sources.get("architecture"))
    for key in CONSTRAINT_KEYS:
        take(raw.get(key), key, sources.get(key))
    ms = raw.get("mapspace")
    if isinstance(ms, MappingT) and isinstance(ms.get("constraints"), (list, MappingT)):
        take(ms["constraints"], "mapspace.constraints", sources.get("mapspace"))
    return targets, ", ".join(files) or None, keys[0] if len(keys) == 1 else "constraints"


def constraints_from_inputs(raw: dict, arch: Architecture, problem: Problem, sources: dict) -> MapConstraints:
    """The constraints of a Timeloop input set, resolved for ``arch`` and ``problem``."""
    targets, file, key = collect_targets(raw, sources)
    return parse_constraints(targets, arch, problem, file=file, key=key)


def check_mapping(mapping, cons: MapConstraints, arch: Architecture, problem: Problem, *, file=None) -> None:
    """Refuse a given mapping that breaks its constraints, as ``timeloop-model`` does
    (``src/applications/model/model.cpp``: ``constraints_->SatisfiedBy(mapping_)``, then
    ``Constraints::SatisfiedBy`` in ``src/mapping/constraints.cpp``): fixed factors equal, capped factors
    within their cap; coopt also checks what Timeloop leaves as FIXMEs there -- keep/bypass, ``>=``
    floors and the least utilization -- since its mapper honours them, and it checks the constraints of
    every place ``collect_targets`` reads (timeloop-model reads only the architecture's).  A loop order against the constrained permutation is one
    warning line, not a refusal: Timeloop's own mapper output (tests/reference_data/mapper/
    05-conv1d+oc-3level_baked, RegisterFile: ``RPK`` constrained, ``KRP`` mapped) breaks the innermost-first
    reading its ``SatisfiedBy`` implements, so a refusal would turn away mappings Timeloop made.  The
    spatial split is not compared (Timeloop compares it with the count of non-trivial X loops)."""
    dims = problem.dims

    def fail(li: int, what: str):
        raise SpecError(f"mapping breaks a constraint at {arch.storage[li].name}: {what}", file=file,
                        key=f"mapping[{arch.storage[li].name}]", expected="a mapping within the constraints")

    for li, (lc, lvl) in enumerate(zip(cons.levels, mapping.levels)):
        for kind, factors, perm, fixed, caps, mins, pre, suf in (
                ("temporal", lvl.temporal, lvl.permutation, lc.t_fixed, lc.t_max, lc.t_min, lc.t_prefix, lc.t_suffix),
                ("spatial", lvl.spatial, lvl.spatial_permutation, lc.s_fixed, lc.s_max, lc.s_min, lc.s_prefix,
                 lc.s_suffix)):
            for d, v in fixed.items():
                if factors[d] != v:
                    fail(li, f"{kind} {dims[d]}={factors[d]} where {dims[d]}={v} is required")
            for d, v in caps.items():
                if factors[d] > v:
                    fail(li, f"{kind} {dims[d]}={factors[d]} above {dims[d]}<={v}")
            for d, v in mins.items():
                if factors[d] < v:
                    fail(li, f"{kind} {dims[d]}={factors[d]} below {dims[d]}>={v}")
            live = [d for d in perm if factors[d] > 1]
            want_pre = [d for d in pre if factors[d] > 1]
            want_suf = [d for d in suf if factors[d] > 1]
            if live[:len(want_pre)] != want_pre or (want_suf and live[-len(want_suf):] != want_suf):
                shown = "".join(dims[d] for d in pre) + ("_" + "".join(dims[d] for d in suf) if suf else "")
                warn_once(f"{file or 'mapping'}: mapping[{arch.storage[li].name}]: {kind} loop order "
                      f"{''.join(dims[d] for d in live)} (innermost first) differs from the constrained "
                      f"permutation {shown}")
        wrong = (lc.keep - lvl.keep) | (lc.bypass & lvl.keep)
        if wrong:
            ds = sorted(wrong)[0]
            fail(li, f"{ds} is {'bypassed' if ds in lc.keep else 'kept'} where the constraints "
                     f"{'keep' if ds in lc.keep else 'bypass'} it")
    if cons.min_parallelism > 0:
        used = 1
        for lvl in mapping.levels:
            for f in lvl.spatial:
                used *= f
        total = 1
        for li in range(len(mapping.levels)):
            fx, fy = arch.fanout(li)
            total *= fx * fy
        if used < cons.min_parallelism * total:
            fail(0, f"parallelism {used / total:.4g} below utilization min {cons.min_parallelism}")
