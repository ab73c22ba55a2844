"""A mapping: per storage level, temporal and spatial loop factors, loop orders and bypass.

Read and written in Timeloop's mapping YAML (``mapping: - target: L, type:
temporal|spatial|datatype, factors: ..., permutation: ..., split: ...``).
Permutations are stored innermost loop first, as Timeloop writes them; in a
spatial permutation the first ``split`` dimensions are spread over the X
axis, the rest over Y.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from math import prod
from typing import Iterable, Mapping as MappingT

from coopt.arch.spec import Architecture
from coopt.errors import MappingError, SpecError
from coopt.workload.problem import Problem

_FACTOR_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*?)\s*=?\s*(\d+)")


@dataclass(frozen=True)
class LevelMapping:
    """Loops and bypass of one storage level (temporal loops above its spatial fan-out)."""

    target: str
    temporal: tuple[int, ...]              # factor per problem dimension (problem.dims order)
    permutation: tuple[int, ...]           # dimension indices, innermost first
    spatial: tuple[int, ...]               # factor per problem dimension
    spatial_permutation: tuple[int, ...]   # dimension indices, innermost first
    split: int                             # first `split` entries of spatial_permutation are X
    keep: frozenset[str]                   # data spaces stored at this level

    def spatial_xy(self) -> tuple[int, int]:
        x = prod(self.spatial[d] for d in self.spatial_permutation[: self.split])
        y = prod(self.spatial[d] for d in self.spatial_permutation[self.split:])
        return x, y


@dataclass(frozen=True)
class Mapping:
    """One mapping of a problem onto an architecture; ``levels[0]`` is the innermost."""

    levels: tuple[LevelMapping, ...]
    dims: tuple[str, ...] = field(default=())

    def factors(self, dim: str) -> list[tuple[str, str, int]]:
        d = self.dims.index(dim)
        out = []
        for lvl in self.levels:
            out.append((lvl.target, "spatial", lvl.spatial[d]))
            out.append((lvl.target, "temporal", lvl.temporal[d]))
        return out

    def key(self) -> tuple:
        return tuple((l.temporal, l.permutation, l.spatial, l.spatial_permutation, l.split,
                      tuple(sorted(l.keep))) for l in self.levels)


# --------------------------------------------------------------------------- parsing

def parse_factors(text, dims: tuple[str, ...], *, file=None, key=None) -> dict[str, int]:
    """Factors as Timeloop writes them: ``"C4 M4 R1"``, ``"R=1,P=16"`` or a mapping."""
    if isinstance(text, MappingT):
        items = list(text.items())
    elif isinstance(text, str):
        body = text.strip()
        items = _FACTOR_RE.findall(body)
        leftover = _FACTOR_RE.sub("", body).replace(",", " ").strip()
        if leftover:
            raise SpecError(f"cannot read factors {text!r}", file=file, key=key,
                            expected="like 'C4 M2 R1' or 'C=4,M=2'")
    else:
        raise SpecError(f"factors must be a string, got {type(text).__name__}", file=file, key=key,
                        expected="like 'C4 M2 R1' or 'C=4,M=2'")
    out: dict[str, int] = {}
    for name, value in items:
        if name not in dims:
            raise SpecError(f"unknown dimension {name!r} in factors", file=file, key=key,
                            expected=f"one of {list(dims)}")
        try:
            v = int(value)
        except (TypeError, ValueError):
            raise SpecError(f"factor of {name} is {value!r}", file=file, key=key,
                            expected="a positive integer") from None
        if v < 1:
            raise SpecError(f"factor of {name} is {v}", file=file, key=key, expected="a positive integer")
        out[name] = v
    return out


def parse_permutation(text, dims: tuple[str, ...], *, file=None, key=None) -> list[str]:
    """Permutation innermost first; missing dimensions are appended in problem order (as Timeloop)."""
    if isinstance(text, (list, tuple)):
        names = [str(t) for t in text]
    elif isinstance(text, str):
        if all(len(d) == 1 for d in dims) and " " not in text and "," not in text:
            names = list(text.strip())
        else:
            names = [t for t in re.split(r"[\s,]+", text.strip()) if t]
    else:
        raise SpecError("permutation must be a string", file=file, key=key, expected="like 'MCRSNPQ'")
    for n in names:
        if n not in dims:
            raise SpecError(f"unknown dimension {n!r} in permutation", file=file, key=key,
                            expected=f"letters from {list(dims)}")
    if len(set(names)) != len(names):
        raise SpecError(f"permutation {text!r} repeats a dimension", file=file, key=key)
    return names + [d for d in dims if d not in names]


def iter_directives(items, arch: Architecture, *, file=None, key: str = "mapping"):
    """Timeloop directive lists (mappings and constraints): yield (key, level index, type, directive).

    Checks what both share: a mapping per entry and a known target level.
    """
    names = [lvl.name for lvl in arch.storage]
    for i, d in enumerate(items):
        k = f"{key}[{i}]"
        if not isinstance(d, MappingT):
            raise SpecError("each entry must be a mapping", file=file, key=k, expected="{target, type, ...}")
        target = d.get("target")
        if target not in names:
            raise SpecError(f"unknown target level {target!r}", file=file, key=f"{k}.target",
                            expected=f"one of {names}")
        yield k, names.index(target), d.get("type", "temporal"), d


def parse_split(d, ndims: int, *, file=None, key=None) -> int | None:
    """A spatial directive's ``split`` (first dimensions on X), None when absent."""
    if "split" not in d:
        return None
    s = d["split"]
    if not isinstance(s, int) or isinstance(s, bool) or s < 0:
        raise SpecError(f"split is {s!r}", file=file, key=f"{key}.split", expected="a non-negative integer")
    return min(s, ndims)


def parse_keep_bypass(d, dataspaces: list[str], *, file=None, key=None) -> tuple[set[str], set[str]]:
    """The ``keep`` and ``bypass`` lists of a datatype/bypass directive, checked."""
    out = []
    for field_name in ("keep", "bypass"):
        vals = d.get(field_name) or []
        if not isinstance(vals, list):
            raise SpecError(f"{field_name} must be a list", file=file, key=f"{key}.{field_name}",
                            expected=str(dataspaces))
        for ds in vals:
            if ds not in dataspaces:
                raise SpecError(f"unknown data space {ds!r}", file=file, key=f"{key}.{field_name}",
                                expected=f"one of {dataspaces}")
        out.append(set(vals))
    return out[0], out[1]


def mapping_from_yaml(directives, arch: Architecture, problem: Problem, *, file=None) -> Mapping:
    """Build a Mapping from Timeloop's directive list, checking levels, dimensions and products."""
    if isinstance(directives, MappingT) and "mapping" in directives:
        directives = directives["mapping"]
    if not isinstance(directives, list):
        raise SpecError("mapping must be a list of directives", file=file, key="mapping",
                        expected="- target: LEVEL\\n  type: temporal|spatial|datatype ...")
    dims = problem.dims
    names = [lvl.name for lvl in arch.storage]
    ds_names = [ds.name for ds in problem.dataspaces]
    n = len(names)
    temporal: list[dict[str, int]] = [{} for _ in range(n)]
    perm: list[list[str] | None] = [None] * n
    spatial: list[dict[str, int]] = [{} for _ in range(n)]
    sperm: list[list[str] | None] = [None] * n
    split: list[int | None] = [None] * n
    keep: list[set[str]] = [set(ds_names) for _ in range(n)]
    for key, li, kind, d in iter_directives(directives, arch, file=file):
        if kind in ("temporal", "spatial"):
            facs = parse_factors(d.get("factors", ""), dims, file=file, key=f"{key}.factors")
            p = parse_permutation(d.get("permutation", ""), dims, file=file, key=f"{key}.permutation")
            if kind == "temporal":
                temporal[li].update(facs)
                perm[li] = p
            else:
                spatial[li].update(facs)
                sperm[li] = p
                s = parse_split(d, len(dims), file=file, key=key)
                if s is not None:
                    split[li] = s
        elif kind in ("datatype", "bypass", "dataspace"):
            kept, bypassed = parse_keep_bypass(d, ds_names, file=file, key=key)
            keep[li] = (keep[li] | kept) - bypassed
        else:
            raise SpecError(f"unknown directive type {kind!r}", file=file, key=f"{key}.type",
                            expected="temporal, spatial or datatype")
    levels = []
    for li in range(n):
        p = perm[li] or list(dims)
        sp = sperm[li] or list(dims)
        levels.append(LevelMapping(
            target=names[li],
            temporal=tuple(temporal[li].get(dm, 1) for dm in dims),
            permutation=tuple(dims.index(x) for x in p),
            spatial=tuple(spatial[li].get(dm, 1) for dm in dims),
            spatial_permutation=tuple(dims.index(x) for x in sp),
            split=len(dims) if split[li] is None else split[li],
            keep=frozenset(keep[li]),
        ))
    mapping = Mapping(tuple(levels), dims)
    check_products(mapping, problem, file=file)
    return mapping


def check_products(mapping: Mapping, problem: Problem, *, file=None) -> None:
    """Every dimension's factors must multiply to its bound (perfect factorisation)."""
    for di, dim in enumerate(problem.dims):
        total = prod(l.temporal[di] * l.spatial[di] for l in mapping.levels)
        if total != problem.bounds[dim]:
            raise MappingError(f"factors of {dim} multiply to {total}", file=file, key=f"mapping.{dim}",
                               expected=f"{problem.bounds[dim]} (the layer's {dim})")


# --------------------------------------------------------------------------- writing

def _factor_string(factors: Iterable[int], dims: tuple[str, ...]) -> str:
    return " ".join(f"{d}={f}" if len(d) > 1 else f"{d}{f}" for d, f in zip(dims, factors))


def _perm_string(perm: Iterable[int], dims: tuple[str, ...]) -> str:
    names = [dims[i] for i in perm]
    return "".join(names) if all(len(d) == 1 for d in dims) else " ".join(names)


def mapping_to_yaml(mapping: Mapping, arch: Architecture, problem: Problem) -> dict:
    """Timeloop mapping YAML (``{"mapping": [...]}``), outermost level first."""
    dims = problem.dims
    ds_names = [ds.name for ds in problem.dataspaces]
    out = []
    for li in reversed(range(len(mapping.levels))):
        lvl = mapping.levels[li]
        out.append({"target": lvl.target, "type": "temporal",
                    "factors": _factor_string(lvl.temporal, dims),
                    "permutation": _perm_string(lvl.permutation, dims)})
        fx, fy = arch.fanout(li)
        if fx * fy > 1:
            out.append({"target": lvl.target, "type": "spatial",
                        "factors": _factor_string(lvl.spatial, dims),
                        "permutation": _perm_string(lvl.spatial_permutation, dims),
                        "split": lvl.split})
        out.append({"target": lvl.target, "type": "datatype",
                    "keep": [d for d in ds_names if d in lvl.keep],
                    "bypass": [d for d in ds_names if d not in lvl.keep]})
    return {"mapping": out}
