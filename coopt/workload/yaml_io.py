"""Read and write Timeloop ``problem:`` blocks, so coopt and Timeloop share layer files.

Reading accepts what Timeloop v3 accepts: a shape given by name
(``cnn-layer``; omitted means CNN layer, as in Timeloop) or in full
(``dimensions``, ``data_spaces`` with projections, ``coefficients``), and
the bounds under ``instance`` (or, as Timeloop's backwards-compatible form,
directly beside ``shape``).  Any mistake raises ``SpecError`` naming the
file, the dotted key and what was expected, instead of a KeyError later.
Writing always emits the full v0.4 shape plus every bound, since Timeloop
asserts that each dimension has one.
"""
from __future__ import annotations

from typing import Any

from coopt.errors import SpecError
from coopt.workload.problem import (CONV_COEFFICIENTS, CONV_DIMS, DataSpace, Problem,
                                    conv_problem, conv_shape_dataspaces)

CONV_SHAPE_NAMES = ("cnn-layer", "cnn_layer")  # compared case-insensitively
_TOP_KEYS = ("version", "shape", "instance")
_SHAPE_KEYS = ("name", "dimensions", "data_spaces", "coefficients")
_DS_KEYS = ("name", "projection", "read_write")
_IGNORED_INSTANCE_KEYS = ("densities",)
# Derived sizes the Timeloop exercises' problems carry beside the bounds (input height/width and padding);
# Timeloop reads bounds and coefficients by name and ignores them, so they are a documented no-op here.
DERIVED_INSTANCE_KEYS = ("H", "W", "Hpad", "Wpad")


def _fail(msg: str, file: str | None, key: str, expected: str | None = None) -> SpecError:
    return SpecError(msg, file=file, key=key, expected=expected)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _name(v: Any, file: str | None, key: str) -> str:
    if not isinstance(v, str) or not v:
        raise _fail(f"name is {v!r}", file, key, "a non-empty string")
    return v


def _mapping(v: Any, file: str | None, key: str) -> dict:
    if not isinstance(v, dict):
        raise _fail(f"is a {type(v).__name__}", file, key, "a mapping")
    return v


def _check_keys(node: dict, allowed: tuple[str, ...], file: str | None, key: str) -> None:
    for k in node:
        if k not in allowed:
            raise _fail(f"unknown key {k!r}", file, f"{key}.{k}", f"one of {list(allowed)}")


def _is_conv_name(name: Any) -> bool:
    return isinstance(name, str) and name.strip().lower() in CONV_SHAPE_NAMES


def _parse_term(term: Any, dims: tuple[str, ...], coefs: dict, file, key) -> tuple[str | None, str]:
    """A term is ``[dim]`` or ``[dim, coefficient]`` (Timeloop's order)."""
    if (not isinstance(term, list) or len(term) not in (1, 2)
            or not all(isinstance(x, str) for x in term)):
        raise _fail(f"term is {term!r}", file, key, "[dimension] or [dimension, coefficient]")
    if term[0] not in dims:
        raise _fail(f"unknown dimension {term[0]!r}", file, key, f"one of {list(dims)}")
    if len(term) == 2 and term[1] not in coefs:
        raise _fail(f"unknown coefficient {term[1]!r}", file, key,
                    f"one of {list(coefs)} (declared under problem.shape.coefficients)")
    return (term[1] if len(term) == 2 else None), term[0]


def _parse_projection(proj: Any, dims, coefs, file, key) -> tuple:
    if not isinstance(proj, list) or not proj:
        raise _fail(f"projection is {proj!r}", file, key, "a non-empty list")
    if all(isinstance(p, str) for p in proj):  # Timeloop's array form: [C, M, R, S]
        return tuple((_parse_term([p], dims, coefs, file, f"{key}[{i}]"),) for i, p in enumerate(proj))
    coords = []
    for i, coord in enumerate(proj):
        if not isinstance(coord, list) or not coord:
            raise _fail(f"coordinate is {coord!r}", file, f"{key}[{i}]",
                        "a non-empty list of terms like [[R, Wdilation], [P, Wstride]]")
        coords.append(tuple(_parse_term(t, dims, coefs, file, f"{key}[{i}][{j}]")
                            for j, t in enumerate(coord)))
    return tuple(coords)


def _parse_read_write(v: Any, file, key) -> bool:
    if isinstance(v, bool):
        return v
    if _is_int(v) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise _fail(f"read_write is {v!r}", file, key, "true or false")


def _parse_shape(shape: dict, file, key) -> tuple[str, tuple, tuple, dict]:
    """Full shape dict -> (name, dims, data spaces, coefficient defaults)."""
    _check_keys(shape, _SHAPE_KEYS, file, key)
    name = _name(shape["name"], file, f"{key}.name") if "name" in shape else ""
    dims_node = shape.get("dimensions")
    if not isinstance(dims_node, list) or not dims_node:
        raise _fail(f"dimensions is {dims_node!r}", file, f"{key}.dimensions",
                    "a non-empty list of dimension names")
    dims = tuple(_name(d, file, f"{key}.dimensions[{i}]") for i, d in enumerate(dims_node))
    if len(set(dims)) != len(dims):
        raise _fail(f"repeated dimension in {list(dims)}", file, f"{key}.dimensions", "unique names")
    coefs: dict[str, int] = {}
    coef_node = shape.get("coefficients", []) or []
    if not isinstance(coef_node, list):
        raise _fail(f"coefficients is {coef_node!r}", file, f"{key}.coefficients",
                    "a list of {name, default}")
    for i, c in enumerate(coef_node):
        ckey = f"{key}.coefficients[{i}]"
        _check_keys(_mapping(c, file, ckey), ("name", "default"), file, ckey)
        cname = _name(c.get("name"), file, f"{ckey}.name")
        if cname in coefs or cname in dims:
            raise _fail(f"coefficient {cname!r} declared twice or clashes with a dimension",
                        file, f"{ckey}.name", "a unique name")
        coefs[cname] = _positive(c.get("default"), file, f"{ckey}.default")
    ds_node = shape.get("data_spaces")
    if not isinstance(ds_node, list) or not ds_node:
        raise _fail(f"data_spaces is {ds_node!r}", file, f"{key}.data_spaces",
                    "a non-empty list of {name, projection, read_write}")
    spaces = []
    for i, ds in enumerate(ds_node):
        dkey = f"{key}.data_spaces[{i}]"
        _check_keys(_mapping(ds, file, dkey), _DS_KEYS, file, dkey)
        dname = _name(ds.get("name"), file, f"{dkey}.name")
        if any(s.name == dname for s in spaces):
            raise _fail(f"data space {dname!r} declared twice", file, f"{dkey}.name", "a unique name")
        proj = _parse_projection(ds.get("projection"), dims, coefs, file, f"{dkey}.projection")
        rw = _parse_read_write(ds.get("read_write", False), file, f"{dkey}.read_write")
        spaces.append(DataSpace(dname, proj, rw))
    return name, dims, tuple(spaces), coefs


def _positive(v: Any, file, key) -> int:
    if not _is_int(v) or v < 1:
        raise _fail(f"value is {v!r}", file, key, "a positive integer")
    return v


def _check_dense(v: Any, file, key) -> None:
    """coopt models dense tensors; refuse sparsity rather than silently ignore it."""
    if v in (None, {}):
        return
    items = v.items() if isinstance(v, dict) else [(None, v)]
    for ds, d in items:
        dens = d.get("density") if isinstance(d, dict) else d
        if isinstance(dens, bool) or not isinstance(dens, (int, float)) or dens != 1:
            where = f"{key}.{ds}" if ds is not None else key
            raise _fail(f"density {dens!r} is not supported", file, where,
                        "dense tensors (density 1 or no densities)")


def _parse_instance(inst: dict, dims, coefs: dict, file, key) -> tuple[dict, dict]:
    bounds = {d: 1 for d in dims}
    values = dict(coefs)
    for k, v in inst.items():
        if k in _IGNORED_INSTANCE_KEYS:
            _check_dense(v, file, f"{key}.{k}")
        elif k in bounds:
            bounds[k] = _positive(v, file, f"{key}.{k}")
        elif k in values:
            values[k] = _positive(v, file, f"{key}.{k}")
        elif k in DERIVED_INSTANCE_KEYS:
            continue
        else:
            raise _fail(f"unknown instance key {k!r}", file, f"{key}.{k}",
                        f"a dimension {list(dims)} or coefficient {list(coefs)}")
    return bounds, values


def problem_from_yaml(node: dict, *, file: str | None = None, name: str | None = None) -> Problem:
    """Build a ``Problem`` from the mapping under a Timeloop file's ``problem:`` key.

    ``name`` overrides the problem name, which otherwise is the shape's name
    (Timeloop files carry no per-layer name).
    """
    key = "problem"
    _mapping(node, file, key)
    if "instance" in node:
        _check_keys(node, _TOP_KEYS, file, key)
        inst = _mapping(node["instance"], file, f"{key}.instance")
        ikey = f"{key}.instance"
    else:  # Timeloop's backwards-compatible form: bounds beside the shape
        inst = {k: v for k, v in node.items() if k not in ("version", "shape")}
        ikey = key
    shape = node.get("shape", "cnn-layer")
    if isinstance(shape, dict) and set(shape) == {"name"}:
        shape = shape["name"]
    if isinstance(shape, str) or not isinstance(shape, dict):
        skey = f"{key}.shape.name" if isinstance(node.get("shape"), dict) else f"{key}.shape"
        if not _is_conv_name(shape):
            raise _fail(f"unknown shape {shape!r}", file, skey,
                        "CNN-Layer / cnn-layer / CNN_Layer, or a full shape with dimensions and data_spaces")
        bounds, values = _parse_instance(inst, CONV_DIMS, {c: 1 for c in CONV_COEFFICIENTS}, file, ikey)
        return conv_problem(name or shape, **bounds, **values)
    sname, dims, spaces, coefs = _parse_shape(shape, file, f"{key}.shape")
    bounds, values = _parse_instance(inst, dims, coefs, file, ikey)
    try:
        return Problem(name=name or sname or "problem", dims=dims, dataspaces=spaces,
                       bounds=bounds, coefficients=values, shape_name=sname)
    except SpecError as err:  # defensive: the checks above should already have caught it
        raise err.at(file=file) from None


def load_problem(path: str, *, name: str | None = None) -> Problem:
    """Read a YAML file holding a top-level ``problem:`` block (e.g. a Timeloop input)."""
    from coopt.yamlio import load_yaml  # local: keep ``coopt.workload`` import-light

    doc = load_yaml(path)
    if "problem" not in doc:
        raise SpecError("no top-level problem block", file=str(path), key="problem",
                        expected="a mapping with a 'problem' key")
    return problem_from_yaml(doc["problem"], file=str(path), name=name)


def _is_conv(p: Problem) -> bool:
    return (set(p.dims) == set(CONV_DIMS) and p.dataspaces == conv_shape_dataspaces()
            and set(p.coefficients) == set(CONV_COEFFICIENTS))


def problem_to_yaml(problem: Problem) -> dict:
    """``{"problem": {...}}`` in Timeloop's v0.4 form: full shape plus every bound.

    Coefficient defaults are written as 1 and the actual values go in the
    instance, so Timeloop and ``problem_from_yaml`` both see the values.
    """
    for d in problem.dims:
        if len(d) != 1:  # Timeloop exits on longer names (mapping-constraint parser limit)
            raise SpecError(f"dimension name {d!r} is longer than one character",
                            key="problem.shape.dimensions", expected="one-letter names for Timeloop")
    shape_name = "CNN_Layer" if _is_conv(problem) else (problem.shape_name or problem.name)
    shape = {
        "name": shape_name,
        "dimensions": list(problem.dims),
        "coefficients": [{"name": c, "default": 1} for c in problem.coefficients],
        "data_spaces": [
            {"name": ds.name,
             "projection": [[[d] if c is None else [d, c] for c, d in coord] for coord in ds.projection],
             "read_write": bool(ds.read_write)}
            for ds in problem.dataspaces],
    }
    instance = {d: int(problem.bounds[d]) for d in problem.dims}
    instance.update({c: int(v) for c, v in problem.coefficients.items()})
    return {"problem": {"version": "0.4", "shape": shape, "instance": instance}}
