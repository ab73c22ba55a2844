"""A timeloopfe v4 specification -> the processed input Timeloop reads, so the rest of coopt is unchanged.

``load_spec(paths, variables)`` reads a Jinja2 top file, or an architecture
plus component and problem files, and returns ``(raw, sources)`` in the form
timeloopfe writes as ``parsed-processed-input.yaml``
(``version_transpilers/v4_to_v3.py``): the architecture as one v0.4
``subtree`` level of flat ``local`` components (``name[1..N]``, ``meshX``/
``meshY``, container attributes passed down, an ``inter_<node>_spatial``
dummy level under every fan-out), ``architecture_constraints: targets:`` from
the constraints written in the nodes (:mod:`coopt.arch.v4_constraints`),
``compound_components`` from ``components:``, ``sparse_optimizations: targets:``
from the components' ``sparse_optimizations`` (:mod:`coopt.arch.v4_tree`), and
the problem with its expressions evaluated (its ``densities`` as written).  Plain Timeloop files (no Jinja, no ``nodes:``) are
read exactly as before (:func:`coopt.yamlio.load_merged`).

Keys timeloopfe accepts and Timeloop ignores are documented no-ops: the
derived CNN instance keys (``H``, ``W``, ``Hpad``, ``Wpad``: see
:mod:`coopt.workload.yaml_io`), ``globals.environment_variables``, the
defaults timeloopfe writes (``n_banks``, ``has_power_gating``...).  Anything
coopt cannot honour (``networks``, custom Python
expression functions, plug-in folders, ``maximize_dims``) is refused.

Sources followed (cited per function in these modules): Accelergy-Project/timeloop-python at b8aaf2c,
``pytimeloop/timeloopfe/v4/`` and ``common/``; Accelergy-Project/accelergy at 6911d15,
``accelergy/utils/yaml.py`` and ``accelergy/parsing_utils.py``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from coopt.arch.v4_expr import evaluate, evaluate_all
from coopt.arch.v4_files import Quoted, V4State, is_jinja, load_v4_file
from coopt.arch.v4_mapping import attach_container_directives, level_names
from coopt.arch.v4_tree import flatten_nodes
from coopt.errors import SpecError
from coopt.yamlio import load_merged, loads_yaml, read_text

__all__ = ["load_spec", "process", "flatten_nodes", "is_v4_text", "TIMELOOPFE_DEFAULTS"]

_V4_MARK = re.compile(r"!(Component|Container|Hierarchical|Parallel|Pipelined|Nothing)\b|^\s*nodes\s*:", re.M)
# timeloopfe v4/arch.py StorageAttributes defaults, written into every storage node it dumps.  They equal
# Timeloop's own defaults, so they are not written here: coopt's estimators would otherwise see keys the
# user did not write (n_banks: 2 reaches coopt's CACTI model; the reference's CactiSRAM ignored it).
TIMELOOPFE_DEFAULTS = {"n_banks": 2, "cluster_size": 1, "reduction_supported": True, "multiple_buffering": 1,
                       "min_utilization": 0, "allow_overbooking": False}
# Top-level lists that several input files may each extend (timeloopfe combines repeated keys).
_COMBINE = {"compound_components": "classes", "components": "classes", "constraints": "targets"}


def is_v4_text(path, text: str) -> bool:
    return is_jinja(path, text) or bool(_V4_MARK.search(text))


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
        # densities stay in raw for the sparse reader; the shape (all constraints need) is read without them
        node = {**node, "instance": {k: v for k, v in node["instance"].items() if k != "densities"}}
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
        # "16" -> 16, as YAML reads it; a Quoted value (a search's categorical string) stays a string
        out[k] = loads_yaml(v, file=file) if isinstance(v, str) and not isinstance(v, Quoted) else v
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
    top_sparse = raw.pop("sparse_optimizations", None) or {}
    if not isinstance(top_sparse, dict) or not isinstance(top_sparse.get("targets") or [], list):
        raise SpecError("is not {targets: [...]}", file=sources.get("sparse_optimizations"),
                        key="sparse_optimizations", expected="{targets: [{target: NODE, ...}]}")
    sparse: list = []
    arch, targets = flatten_nodes(raw["architecture"], file=afile, variables=variables, problem=problem,
                                  evaluate_exprs=True, size_one_dims=size_one_dims, top_targets=top,
                                  targets_file=tfile, sparse=sparse, top_sparse=top_sparse.get("targets"),
                                  sparse_file=sources.get("sparse_optimizations"))
    raw["architecture"] = arch
    if raw.get("mapping"):              # a v4 mapping may name a !Container (timeloopfe's constraint_attacher)
        raw["mapping"] = attach_container_directives(raw["mapping"], level_names(arch),
                                                     [ds.name for ds in problem.dataspaces])
    if sparse:                      # v4_to_v3: {"targets": sparse_opt_list}, in node order
        raw["sparse_optimizations"] = {"targets": sparse}
        sources.setdefault("sparse_optimizations", afile)
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

