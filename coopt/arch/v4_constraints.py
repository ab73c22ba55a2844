"""Constraints written inside v4 architecture nodes -> Timeloop constraint targets.

timeloopfe's semantics, step by step:

* forms (``timeloopfe/v4/constraints.py``): ``spatial``/``temporal``
  (``factors`` as a list ``[R=1, S=1]``, a string ``"R=1 S=1"`` /
  ``"R=1,S=1"`` -- and here also a map ``{R: 1}``; ``permutation`` as a list
  or string; ``split``, ``no_reuse``, ``no_link_transfer``,
  ``rmw_first_update``, ``default_max_factor``, ``default_min_factor``,
  ``remainders``), ``dataspace`` (``keep``, ``bypass``, ``no_coalesce``; ``*``
  means every data space), ``max_overbooked_proportion``;
* macros (``processors/constraint_macro.py``): ``factors_only``,
  ``no_iteration_over_dataspaces``, ``must_iterate_over_dataspaces``,
  ``keep_only``, ``bypass_only`` (``maximize_dims`` is refused);
* ``!Parallel`` branches (``processors/dataspace2branch.py``): each branch
  bypasses what it does not keep; a data space kept in two branches, or in
  none, is an error;
* permutations (``processors/permutation_optimizer.py``): dimensions fixed
  to 1, then dimensions of size 1 in the problem, go innermost;
* the spatial dummy level (``version_transpilers/v4_to_v3.py``,
  ``constraints.dummy_constraints``): every factor 1, every data space
  bypassed, the node's spatial constraint moved onto it.
"""
from __future__ import annotations

from coopt.errors import SpecError

__all__ = ["GROUP_TYPES", "normalise_group", "attach_target", "branch_bypass", "optimise_permutations",
           "dummy_group", "to_targets"]

GROUP_TYPES = ("spatial", "temporal", "dataspace", "max_overbooked_proportion")
_ITER_KEYS = ("factors", "permutation", "default_max_factor", "default_min_factor", "remainders", "no_reuse",
              "factors_only", "no_iteration_over_dataspaces", "must_iterate_over_dataspaces", "target", "type")
_KEYS = {
    "spatial": _ITER_KEYS + ("split", "no_link_transfer"),
    "temporal": _ITER_KEYS + ("rmw_first_update",),
    "dataspace": ("keep", "bypass", "no_coalesce", "keep_only", "bypass_only", "target", "type"),
    "max_overbooked_proportion": ("proportion", "target", "type"),
}
_DS_LISTS = ("keep", "bypass", "no_coalesce", "no_reuse", "no_link_transfer", "rmw_first_update")


def _split_factor(f: str, file, key) -> tuple[str, str, int]:
    """timeloopfe Factors.splitfactor: ``X=3``, ``X<=3``, ``X>=3``."""
    for op in ("<=", ">=", "="):
        if op in f:
            name, value = f.split(op, 1)
            try:
                return name.strip(), op, int(str(value).strip())
            except ValueError:
                break
    raise SpecError(f"cannot read factor {f!r}", file=file, key=key, expected='"X=123", "X<=123" or "X>=123"')


def _factors(v, file, key) -> list[str]:
    """timeloopfe Factors.factory: a list, a comma- or space-separated string; a map {X: 3} as X=3."""
    if v is None:
        return []
    if isinstance(v, dict):
        v = [f"{k}={n}" for k, n in v.items()]
    elif isinstance(v, str):
        v = v.split(",") if "," in v else v.split(" ")
    if not isinstance(v, list):
        raise SpecError(f"factors is a {type(v).__name__}", file=file, key=key,
                        expected="a list like [R=1, S=1], a string 'R=1 S=1' or a map {R: 1}")
    out: list[str] = []
    for i, f in enumerate(v):
        f = "".join(str(s) for s in f) if isinstance(f, list) else str(f).strip()
        if f:
            _add_factor(out, f, file, f"{key}[{i}]")
    return out


def _add_factor(out: list[str], f: str, file, key) -> None:
    """Factors.check_unique_remove_repeat: repeats dropped, two different values for one dimension refused."""
    name, op, value = _split_factor(f, file, key)
    f = f"{name}{op}{value}"
    if f in out:
        return
    for g in out:
        gn, gop, gv = _split_factor(g, file, key)
        if gn == name and gv != value and {op, gop} != {"<=", ">="}:
            raise SpecError(f"conflicting factors {g} and {f}", file=file, key=key, expected="one value per dimension")
    out.append(f)


def _names(v, file, key, allowed: list[str] | None) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise SpecError(f"is {v!r}", file=file, key=key, expected="a list of names")
    if allowed is not None and "*" in v:
        v = [x for x in v if x != "*"] + [d for d in allowed if d not in v]
    if allowed is not None:
        bad = [x for x in v if x not in allowed]
        if bad:
            raise SpecError(f"unknown {bad}", file=file, key=key, expected=f"names among {allowed}")
    return list(dict.fromkeys(v))


def _permutation(v, file, key) -> list[str]:
    """timeloopfe Permutation.factory: a list, or a string split on commas or into letters."""
    if v is None:
        return []
    if isinstance(v, str):
        v = v.split(",") if "," in v else list(v)
        v = [x.strip() for x in v if x.strip()]
    if not isinstance(v, list):
        raise SpecError(f"is {v!r}", file=file, key=key, expected="a list of dimensions")
    return [str(x) for x in v]


def normalise_group(node, shape, *, file, key) -> dict:
    """One node's ``constraints:`` -> {type: {key: value}} with lists and macros expanded."""
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise SpecError(f"is a {type(node).__name__}", file=file, key=key, expected="a mapping of constraint types")
    out = {}
    for ctype, body in node.items():
        ck = f"{key}.{ctype}"
        if ctype not in GROUP_TYPES:
            raise SpecError(f"unknown constraint type {ctype!r}", file=file, key=ck, expected=f"one of {list(GROUP_TYPES)}")
        out[ctype] = normalise(ctype, body, shape, file=file, key=ck)
    return out


def normalise(ctype: str, body, shape, *, file, key) -> dict:
    """One constraint of one type, its lists in timeloopfe's form, macros expanded (constraint_macro.py)."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise SpecError(f"is a {type(body).__name__}", file=file, key=key, expected="a mapping")
    dims = list(shape.dims) if shape else None
    spaces = [d.name for d in shape.dataspaces] if shape else None
    c: dict = {}
    for k, v in body.items():
        if k not in _KEYS[ctype]:
            raise SpecError(f"unknown key {k!r}", file=file, key=f"{key}.{k}", expected=f"one of {list(_KEYS[ctype])}")
        if k in ("target", "type"):
            continue
        if k in ("factors", "factors_only"):
            c[k] = _factors(v, file, f"{key}.{k}")
        elif k == "permutation":
            c[k] = _permutation(v, file, f"{key}.{k}")
        elif k in _DS_LISTS or k.endswith("_only") or k.endswith("_dataspaces"):
            c[k] = _names(v, file, f"{key}.{k}", spaces)
        else:
            c[k] = v
    _expand_macros(c, shape, dims, file, key)
    for k in ("factors", "permutation"):
        if dims is not None:
            for f in c.get(k, []):
                d = _split_factor(f, file, f"{key}.{k}")[0] if k == "factors" else f
                if d not in dims:
                    raise SpecError(f"unknown dimension {d!r}", file=file, key=f"{key}.{k}", expected=f"one of {dims}")
    if ctype == "dataspace":
        both = set(c.get("keep", [])) & set(c.get("bypass", []))
        if both:
            raise SpecError(f"{sorted(both)} both kept and bypassed", file=file, key=key, expected="disjoint keep and bypass")
    return c


def _expand_macros(c: dict, shape, dims, file, key) -> None:
    def need_shape(name):
        if shape is None:
            raise SpecError(f"{name} needs the problem", file=file, key=f"{key}.{name}",
                            expected="a problem in the same specification")
    if "factors_only" in c:
        need_shape("factors_only")
        fs = c.setdefault("factors", [])
        for f in c.pop("factors_only"):
            _add_factor(fs, f, file, f"{key}.factors_only")
        named = {_split_factor(f, file, key)[0] for f in fs}
        for d in dims:
            if d not in named:
                fs.append(f"{d}=1")
    for macro, inside in (("no_iteration_over_dataspaces", True), ("must_iterate_over_dataspaces", False)):
        if macro in c:
            need_shape(macro)
            listed = c.pop(macro)
            chosen = {d for ds in shape.dataspaces if ds.name in listed for d in _ds_dims(ds)}
            fs = c.setdefault("factors", [])
            for d in dims:
                if (d in chosen) == inside:
                    _add_factor(fs, f"{d}=1", file, f"{key}.{macro}")
    for macro, kept in (("keep_only", True), ("bypass_only", False)):
        if macro in c:
            need_shape(macro)
            listed = c.pop(macro)
            others = [d.name for d in shape.dataspaces if d.name not in listed]
            keep, bypass = (listed, others) if kept else (others, listed)
            c["keep"] = list(dict.fromkeys(c.get("keep", []) + keep))
            c["bypass"] = list(dict.fromkeys(c.get("bypass", []) + bypass))


def _ds_dims(ds) -> set[str]:
    return {d for coord in ds.projection for _, d in coord}


def attach_target(group: dict, ctype: str, body: dict, *, file, key) -> None:
    """A top-level ``constraints: targets:`` entry combined into a node's group (constraint_attacher.py)."""
    mine = group.setdefault(ctype, {})
    for k, v in body.items():
        if k not in mine or mine[k] in ([], None):
            mine[k] = v
        elif k == "factors":
            for f in v:
                _add_factor(mine[k], f, file, key)
        elif k in _DS_LISTS:
            mine[k] = list(dict.fromkeys(mine[k] + v))
        elif mine[k] != v:
            raise SpecError(f"{k} given twice: {mine[k]!r} and {v!r}", file=file, key=f"{key}.{k}",
                            expected="one value (timeloopfe refuses re-specification)")


def branch_bypass(groups: list[dict], spaces: list[str], *, file, key) -> None:
    """Dataspace2BranchProcessor for one ``!Parallel``: ``groups`` holds each branch's dataspace constraints."""
    kept = [set().union(*(set(g.get("keep", [])) for g in branch)) if branch else set() for branch in groups]
    for i in range(len(kept)):
        for j in range(i + 1, len(kept)):
            if kept[i] & kept[j]:
                raise SpecError(f"data spaces {sorted(kept[i] & kept[j])} are kept in two branches ({i} and {j})",
                                file=file, key=key, expected="each data space kept in one branch of a !Parallel")
    missing = [d for d in spaces if not any(d in k for k in kept)]
    if missing:
        raise SpecError(f"no branch keeps {missing}", file=file, key=key,
                        expected="a keep constraint in some branch, or a branch '!Nothing {constraints: {dataspace: "
                                 f"{{keep: {missing}}}}}}}'")
    for branch, keep in zip(groups, kept):
        for g in branch:
            bypass = g.setdefault("bypass", [])
            for d in spaces:
                if d not in keep and d not in bypass:
                    if d in g.get("keep", []):
                        raise SpecError(f"{d} kept and bypassed", file=file, key=key)
                    bypass.append(d)


def optimise_permutations(c: dict, problem) -> None:
    """PermutationOptimizerProcessor: dimensions fixed to 1, then size-1 dimensions, go innermost."""
    perm = c.setdefault("permutation", [])
    for f in c.get("factors", []):
        d, _, v = _split_factor(f, None, None)
        if v == 1 and d not in perm:
            perm.insert(0, d)
    if problem is not None:
        for d in problem.dims:
            if problem.bounds[d] == 1 and d not in perm:
                perm.insert(0, d)


def dummy_group(shape, spatial: dict | None) -> dict:
    """constraints.dummy_constraints (no spatial constraint of its own) plus the node's spatial constraint."""
    group: dict = {"spatial": dict(spatial or {})}
    if shape is not None:
        group["temporal"] = {"factors": [f"{d}=1" for d in shape.dims], "permutation": list(shape.dims)}
        group["dataspace"] = {"bypass": [d.name for d in shape.dataspaces]}
    return group


def to_targets(group: dict, target: str, order) -> list[dict]:
    """The node's constraints as Timeloop targets (v4_to_v3.transpile): empties dropped, lists joined."""
    out = []
    for ctype in list(order) + [t for t in GROUP_TYPES if t not in order]:
        body = group.get(ctype)
        if not body or all(v in ([], None, {}) for v in body.values()):
            continue
        t = {k: v for k, v in body.items() if v not in ([], None)}
        if "keep" in body and "keep" not in t:
            t["keep"] = []
        if "factors" in t:
            t["factors"] = ",".join(t["factors"])
        if "permutation" in t:
            t["permutation"] = "".join(t["permutation"])
        t["type"] = "bypass" if ctype == "dataspace" else ctype
        t["target"] = target
        out.append(t)
    return out
