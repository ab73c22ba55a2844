"""A network from Timeloop problem files: a folder of them, or a YAML list naming them with counts.

What Timeloop users keep (one ``problem:`` per layer, v0.3/v0.4, or the
public exercises' ``layer_shapes/`` files that start with
``{{include_text('../problem_base.yaml')}}`` and merge it with ``<<<:``,
timeloopfe's recursive merge).  Only ``include_text`` is rendered; any other
Jinja is refused by name.  Layers run in file order (natural order: 2
before 10) and are named after their files; identical shapes are merged
with counts, as for the built-in networks.

Shapes are brought to one canonical form so that the same layer gives the
same shape whoever wrote it: a rank that is bounded 1 and only ever a
coordinate of its own adds nothing and is dropped (the exercises' ``G: 1``);
a rank that indexes every tensor on its own (groups ``G > 1``, heads) makes
independent copies of the layer, counted like the built-in MobileNet-V2's
depthwise convolutions; a CNN shape becomes ``conv_problem``'s.
Instance keys Timeloop would ignore are taken only when they cannot matter
(value 1, like the exercises' ``H: 1``) or spell a known rank or
coefficient in another case (``HStride`` means ``Hstride``); any other
unknown key is an error naming the file and key.

A file's ``densities`` (``problem.instance.densities``, as Timeloop reads
them) are that layer's: kept on its NetworkLayer in the canonical problem's
tensor names (coopt.workload.densities); layers of one shape merge only
under the same densities.
"""
from __future__ import annotations

import re
from pathlib import Path

from coopt.errors import SpecError
from coopt.workload.densities import check_copies, read_densities, split_densities
from coopt.workload.network_types import Network, merge_layers
from coopt.workload.problem import (CONV_COEFFICIENTS, CONV_DIMS, MAX_BOUND, DataSpace, Problem, compact,
                                    contraction_as_gemm, conv_problem, conv_shape_dataspaces)
from coopt.workload.yaml_io import problem_from_yaml

MAX_FILES = 10_000
_INCLUDE = re.compile(r"\{\{\s*include_text\(\s*['\"]([^'\"]+)['\"]\s*\)\s*\}\}")
_JINJA = re.compile(r"\{\{|\{%")
_MERGE = "<<<"


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _render(path: Path) -> tuple[str, list[Path]]:
    """The file's text with ``{{include_text('F')}}`` replaced by F's text; the files included."""
    from coopt.yamlio import read_text

    text = read_text(path, what="problem file")
    included: list[Path] = []

    def include(m: re.Match) -> str:
        target = (path.parent / m.group(1)).resolve()
        included.append(target)
        return read_text(target, what="included file")

    text = _INCLUDE.sub(include, text)
    m = _JINJA.search(_INCLUDE.sub("", read_text(path, what="problem file")))
    if m:
        line = text[: m.start()].count("\n") + 1
        raise SpecError(f"line {line}: Jinja beyond include_text('...') is not supported", file=str(path),
                        expected="plain YAML, or {{include_text('FILE')}} lines")
    return text, included


def _deep_merge(node):
    """timeloopfe's ``<<<: *base``: the base merged in recursively, the node's own keys winning."""
    if isinstance(node, list):
        return [_deep_merge(v) for v in node]
    if not isinstance(node, dict):
        return node
    own = {k: _deep_merge(v) for k, v in node.items() if k != _MERGE}
    if _MERGE not in node:
        return own
    bases = node[_MERGE] if isinstance(node[_MERGE], list) else [node[_MERGE]]
    out: dict = {}
    for base in bases:
        out = _merge_two(out, _deep_merge(base))
    return _merge_two(out, own)


def _merge_two(base, top):
    if isinstance(base, dict) and isinstance(top, dict):
        out = dict(base)
        for k, v in top.items():
            out[k] = _merge_two(base[k], v) if k in base else v
        return out
    return top


def read_problem_doc(path: Path, parsed: dict | None = None) -> tuple[dict, list[Path]]:
    """The YAML document of a problem file after include_text and ``<<<`` merges; the files it included.
    ``parsed`` caches documents by text: a folder's files often repeat one another (never mutated)."""
    from coopt.yamlio import loads_yaml

    text, included = _render(path)
    if parsed is not None and text in parsed:
        return parsed[text], included
    doc = loads_yaml(text, file=str(path))
    if not isinstance(doc, dict):
        raise SpecError(f"top level is a {type(doc).__name__}", file=str(path), expected="a YAML mapping")
    doc = _deep_merge(doc)
    if parsed is not None:
        parsed[text] = doc
    return doc, included


def _known_names(node: dict) -> list[str]:
    shape = node.get("shape")
    if isinstance(shape, dict) and "dimensions" in shape:
        dims = [d for d in shape.get("dimensions") or [] if isinstance(d, str)]
        coefs = [c.get("name") for c in shape.get("coefficients") or [] if isinstance(c, dict)]
        return dims + [c for c in coefs if isinstance(c, str)]
    return list(CONV_DIMS) + list(CONV_COEFFICIENTS)


def _clean_instance(node: dict, file: str) -> dict:
    """Instance keys Timeloop would ignore: the harmless ones taken (see the module note), others refused."""
    inst = node.get("instance")
    if not isinstance(inst, dict):
        return node
    known = _known_names(node)
    lower: dict[str, list[str]] = {}
    for k in known:
        lower.setdefault(k.lower(), []).append(k)
    out, aliased = {}, {}
    for k, v in inst.items():
        if k in known or k == "densities":
            out.setdefault(k, v)
            continue
        match = lower.get(str(k).lower(), [])
        if len(match) == 1:
            aliased[match[0]] = v              # the file's own spelling wins over a merged-in default
        elif v == 1 and not isinstance(v, bool):
            continue                           # H: 1, W: 1 (the exercises' base): a bound of 1 changes nothing
        else:
            raise SpecError(f"unknown rank {k!r} = {v!r}", file=file, key=f"problem.instance.{k}",
                            expected=f"one of the shape's ranks and coefficients {known}")
    out.update(aliased)
    return {**node, "instance": out}


def _single(ds: DataSpace, dim: str) -> bool:
    """Whether ``dim`` appears in ``ds`` only as a coordinate of its own."""
    coords = [c for c in ds.projection if any(d == dim for _, d in c)]
    return bool(coords) and all(len(c) == 1 and c[0][0] is None for c in coords)


def canonical(problem: Problem) -> tuple[Problem, int, dict[str, str]]:
    """The problem in canonical form, how many independent copies of it the original is, and each
    tensor's name in that form (a GEMM's A, B, Z become the CNN layer's Inputs, Weights, Outputs)."""
    copies, dims, spaces = 1, list(problem.dims), list(problem.dataspaces)
    same = {ds.name: ds.name for ds in spaces}
    keep = set(CONV_DIMS) if set(CONV_DIMS) <= set(dims) else set()     # a CNN shape keeps its seven
    for d in problem.dims:
        if d in keep:
            continue
        uses = [ds for ds in spaces if any(t[1] == d for c in ds.projection for t in c)]
        unit = problem.bounds[d] == 1 and all(_single(ds, d) for ds in uses)
        independent = len(uses) == len(spaces) and all(_single(ds, d) for ds in uses)
        if unit or independent:
            copies *= problem.bounds[d]
            dims.remove(d)
            spaces = [DataSpace(ds.name, tuple(c for c in ds.projection if not (len(c) == 1 and c[0][1] == d)),
                                ds.read_write) for ds in spaces]
    bounds = {d: problem.bounds[d] for d in dims}
    if (set(dims) == set(CONV_DIMS) and tuple(spaces) == conv_shape_dataspaces()
            and set(problem.coefficients) == set(CONV_COEFFICIENTS)):
        return conv_problem(problem.name, **bounds, **problem.coefficients), copies, same
    reduced = Problem(problem.name, tuple(dims), tuple(spaces), bounds, dict(problem.coefficients),
                      problem.shape_name)
    gemm = contraction_as_gemm(reduced)           # an einsum-style GEMM (the exercises' MM/ files)
    if gemm is not None:             # gemm_problem: A takes the Inputs' place, B the Weights'
        return gemm[0], copies * gemm[1], dict(zip(same, ("Inputs", "Weights", "Outputs")))
    return reduced, copies, same


def with_batch(problem: Problem, batch: int, file: str) -> Problem:
    """The problem with its batch rank N multiplied by ``batch``."""
    if batch == 1:
        return problem
    if "N" not in problem.dims:
        raise SpecError(f"--batch {batch} but the shape has no batch rank N", file=file, key="problem.shape",
                        expected="a shape with a rank N, or --batch 1")
    n = problem.bounds["N"] * batch
    if n > MAX_BOUND:
        raise SpecError(f"batch {batch} makes N {n:,}", file=file, key="batch", expected=f"N up to {MAX_BOUND:,}")
    return Problem(problem.name, problem.dims, problem.dataspaces, {**problem.bounds, "N": n},
                   dict(problem.coefficients), problem.shape_name)


def load_layer(path: Path, name: str, batch: int = 1,
               parsed: dict | None = None) -> tuple[Problem, int, dict | None]:
    """One layer file -> (canonical problem named ``name``, copies, its densities or None when dense).
    The densities are keyed by the canonical problem's tensors (coopt.workload.densities)."""
    doc, _ = read_problem_doc(path, parsed)
    if "problem" not in doc:
        raise SpecError("no top-level problem block", file=str(path), key="problem",
                        expected="a Timeloop problem file")
    node = doc["problem"]
    if isinstance(node, dict):
        node = _clean_instance(node, str(path))
    node, dens_node, dens_key = split_densities(node)
    original = problem_from_yaml(node, file=str(path), name=name)
    densities = read_densities(dens_node, [ds.name for ds in original.dataspaces], file=str(path), key=dens_key)
    problem, copies, names = canonical(original)
    check_copies(densities, copies, file=str(path), key=dens_key)
    if densities:
        densities = {names[t]: d for t, d in densities.items()}
    return compact(with_batch(problem, batch, str(path))), copies, densities


def _positive_int(v, file: str, key: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_BOUND:
        raise SpecError(f"is {v!r}", file=file, key=key, expected=f"an integer from 1 to {MAX_BOUND:,}")
    return v


def _list_entries(path: Path, doc: dict) -> list[tuple[Path, str, int]]:
    """A list file's ``layers:`` -> (file, layer name, count); files relative to the list file."""
    file = str(path)
    items = doc.get("layers")
    if not isinstance(items, list) or not items:
        raise SpecError(f"layers is {items!r}", file=file, key="layers",
                        expected="a non-empty list of problem files or {file, count, name}")
    unknown = set(doc) - {"layers", "name"}
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)}", file=file, expected="layers and name")
    out = []
    for i, item in enumerate(items):
        key = f"layers[{i}]"
        if isinstance(item, str):
            item = {"file": item}
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            raise SpecError(f"is {item!r}", file=file, key=key, expected="a file name or {file, count, name}")
        bad = set(item) - {"file", "count", "name"}
        if bad:
            raise SpecError(f"unknown keys {sorted(bad)}", file=file, key=key, expected="file, count, name")
        target = path.parent / item["file"]
        count = _positive_int(item.get("count", 1), file, f"{key}.count")
        out.append((target, str(item.get("name") or Path(item["file"]).stem), count))
    return out


def _folder_entries(folder: Path, parsed: dict) -> list[tuple[Path, str, int]]:
    """A folder's problem files in natural order, less those only included by others; or its list file."""
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file()),
                   key=_natural)
    if len(files) > MAX_FILES:
        raise SpecError(f"{len(files):,} YAML files", file=str(folder), expected=f"at most {MAX_FILES:,}")
    docs, included = {}, set()
    for p in files:
        docs[p], inc = read_problem_doc(p, parsed)
        included.update(inc)
    lists = [p for p in files if "layers" in docs[p]]
    if len(lists) > 1:
        raise SpecError(f"several list files {[p.name for p in lists]}", file=str(folder),
                        expected="at most one YAML file with a layers: list")
    if lists:
        return _list_entries(lists[0], docs[lists[0]])
    entries = [(p, p.stem, 1) for p in files if p.resolve() not in included]
    if not entries:
        raise SpecError("no problem files", file=str(folder), expected="YAML files with a problem: block")
    return entries


def problem_files_network(path: Path, batch: int = 1) -> Network:
    """The Network of a folder of problem files, a list file (``layers:``) or a single problem file."""
    path, parsed = Path(path), {}
    if path.is_dir():
        entries, name = _folder_entries(path, parsed), path.resolve().name
    else:
        doc, _ = read_problem_doc(path, parsed)
        entries = _list_entries(path, doc) if "layers" in doc else [(path, path.stem, 1)]
        name = str(doc.get("name") or path.stem)
    layers = []
    for file, lname, count in entries:
        problem, copies, densities = load_layer(file, lname, batch, parsed)
        layers.append((lname, problem, count * copies, densities))
    return Network(name, merge_layers(layers), source=str(path))
