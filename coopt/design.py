"""The one loader of a design: architecture, energy/area tables and the mapper's constraints.

``--arch`` may name a template from ``arch_base/`` (with ``--set`` parameters
and a ``--dataflow`` constraint option) or a Timeloop architecture YAML
(whose constraints come from the places Timeloop reads them --
``architecture_constraints``, ``mapspace_constraints``, ``constraints``,
``mapspace: constraints:`` -- or ``--constraints FILE``), or a timeloopfe v4
spec (a Jinja2 top file with ``--var``, ``--set`` for its ``variables:``; its
inline constraints become targets: :mod:`coopt.arch.v4_spec`).  Tables are the
built-in estimates overridden entry by entry by the user's Accelergy ERT/ART
(:func:`design_tables`, also used by ``coopt evaluate``/``map``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coopt.arch.spec import Architecture
from coopt.arch.spec_template import SpecTemplate
from coopt.arch.template import Template, load_template
from coopt.arch.yaml_io import arch_from_yaml
from coopt.energy.accelergy_io import read_art, read_ert
from coopt.energy.notice import warn_once
from coopt.energy.select import with_overrides
from coopt.energy.tables import EnergyTables
from coopt.errors import SpecError
from coopt.mapper.constraints import collect_targets
from coopt.arch.v4_spec import load_spec
from coopt.yamlio import load_yaml

__all__ = ["Design", "component_classes", "is_template", "design_tables", "design_from_template",
           "design_from_spec", "load_design"]


@dataclass
class Design:
    arch: Architecture
    tables: EnergyTables
    targets: list                      # Timeloop constraint targets (unresolved)
    arch_yaml: dict                    # {"architecture": ...} as Timeloop reads it
    label: str
    template: str | None = None
    params: dict | None = None
    dataflow: str | None = None
    constraints_file: str | None = None    # where the targets came from, for error messages
    spec: dict | None = None               # a spec-backed design: its SpecTemplate as data (export writes it back)
    sparse_targets: list = field(default_factory=list)   # Timeloop sparse_optimizations targets of the design


def is_template(arg: str) -> bool:
    """A template name or template file (``parameters:``), not a Timeloop/v4 spec file."""
    p = Path(arg)
    if not p.suffix:
        return True
    if p.suffix in (".jinja", ".jinja2"):
        return False
    if p.is_file():
        return "parameters" in load_yaml(p)
    return False


def design_tables(arch: Architecture, ert=None, art=None, *, raw: dict | None = None,
                  sources: dict | None = None) -> EnergyTables:
    """Estimates (``--energy``: Accelergy's method or built-in), overridden entry by entry by the user's tables.

    ``ert``/``art`` (files or dicts, e.g. ``--ert``) win over ``ERT:``/``ART:`` keys of the input files;
    nothing is estimated that the user's tables cover.
    """
    raw, sources = raw or {}, sources or {}
    user = {}
    classes = component_classes(raw, sources)
    for key, given, read in (("ERT", ert, read_ert), ("ART", art, read_art)):
        if given is not None:
            user[key] = read(given, file=None if isinstance(given, dict) else str(given))
        elif raw.get(key):
            user[key] = read({key: raw[key]}, file=sources.get(key))
    names = {lvl.name for lvl in arch.storage} | {arch.arithmetic.name}
    for key, table in user.items():
        extra = sorted(set(table) - names)
        given = ert if key == "ERT" else art
        if extra:                      # Timeloop ignores such tables silently; say so
            file = str(given) if given is not None and not isinstance(given, dict) else sources.get(key, key)
            warn_once(f"{file}: {key}: {', '.join(extra)} match(es) no component of the architecture "
                      f"({', '.join(sorted(names))}); ignored")
    return with_overrides(arch, EnergyTables(ert=user.get("ERT", {}), art=user.get("ART", {}),
                                             source="accelergy") if user else None, classes,
                          sources.get("architecture"))


def component_classes(raw: dict, sources: dict) -> list[tuple[dict, str]]:
    """The compound classes an input set carries (``compound_components:``, or v4's ``components:
    classes:``), as (node, file) for the estimator: they replace the shipped classes of the same name in
    every command, as in ``coopt energy``."""
    out = []
    for key in ("compound_components", "components"):
        node = raw.get(key)
        if node is None:
            continue
        if not isinstance(node, dict) or not isinstance(node.get("classes"), list):
            raise SpecError("must hold a list of classes", file=sources.get(key), key=f"{key}.classes",
                            expected=f"{key}: {{version: 0.4, classes: [...]}}")
        out.append(({"compound_components": node}, sources.get(key) or key))
    return out


def design_from_template(template: Template | SpecTemplate | str, params: dict | None = None,
                         dataflow: str | None = None, ert=None, art=None) -> Design:
    if isinstance(template, SpecTemplate):
        return design_from_spec(template, params, ert, art)
    t = load_template(template) if isinstance(template, str) else template
    values = t.resolve(params)
    option = dataflow or (t.constraint_options[0] if t.constraint_options else None)
    targets = t.constraints(option, values) if option else []
    arch = t.instantiate(values)
    return Design(arch=arch, tables=design_tables(arch, ert, art), targets=targets,
                  arch_yaml=t.instantiate_yaml(values), label=f"{t.name} ({option or 'free'})",
                  template=t.name, params=values, dataflow=option, sparse_targets=t.sparse_targets(values))


def design_from_spec(t: SpecTemplate, params: dict | None = None, ert=None, art=None) -> Design:
    """A search space's spec at ``params`` (its variables and Jinja2 variables), read as ``load_design`` reads
    a spec: inline constraints, component classes and tables of the spec's own files included."""
    values = t.resolve(params)
    raw, sources = t.load(values)
    try:
        return _design_from_raw(raw, sources, t.path, ert, art, label=f"{t.name} (v4 spec)", template=t.name,
                                params=values, spec=t.to_json())
    except SpecError as e:                 # name the user's file, not this process's copy of it
        raise SpecError(e.message, file=t.user_file(e.file), key=e.key, expected=e.expected) from None


def _design_from_raw(raw: dict, sources: dict, file, ert, art, **fields) -> Design:
    """A design from processed input: its architecture, constraint targets and tables (its own classes)."""
    if "architecture" not in raw:
        raise SpecError("no 'architecture:' section", file=str(file), key="architecture")
    arch = arch_from_yaml(raw["architecture"], file=sources["architecture"])
    targets, cfile, _ = collect_targets(raw, sources)
    return Design(arch=arch, tables=design_tables(arch, ert, art, raw=raw, sources=sources), targets=targets,
                  arch_yaml={"architecture": raw["architecture"]}, constraints_file=cfile,
                  sparse_targets=_sparse_targets(raw, sources), **fields)


def load_design(arch_arg: str, *, params: dict | None = None, dataflow: str | None = None,
                constraints: str | None = None, ert=None, art=None, variables: dict | None = None) -> Design:
    if is_template(arch_arg):
        if variables:
            raise SpecError("--var applies to Jinja2 spec files; templates take --set", key="--var")
        if constraints:
            raise SpecError("--constraints applies to architecture files; templates take --dataflow",
                            key="--constraints")
        return design_from_template(arch_arg, params, dataflow, ert, art)
    files = [arch_arg] + ([constraints] if constraints else [])
    # the targets serve every layer; --set on a v4 spec sets its variables:
    raw, sources = load_spec(files, variables, size_one_dims=False, overrides=params)
    return _design_from_raw(raw, sources, arch_arg, ert, art, label=Path(arch_arg).name)


def _sparse_targets(raw: dict, sources: dict) -> list:
    """The files' ``sparse_optimizations: targets`` (a v4 spec's come from its nodes), kept, never dropped."""
    node = raw.get("sparse_optimizations")
    if node in (None, {}):
        return []
    targets = node.get("targets") if isinstance(node, dict) else None
    if not isinstance(targets, list):
        raise SpecError(f"is {node!r}", file=sources.get("sparse_optimizations"), key="sparse_optimizations",
                        expected="{targets: [{name: LEVEL, action_optimization: ..., ...}]}")
    return targets
