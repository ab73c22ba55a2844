"""A design to evaluate: architecture, energy/area tables and the mapper's constraints.

``--arch`` may name a template from ``arch_base/`` (with ``--set`` parameters
and a ``--dataflow`` constraint option) or a Timeloop architecture YAML
(whose constraints come from its ``architecture_constraints``/``constraints``
keys or ``--constraints FILE``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coopt.arch.spec import Architecture
from coopt.arch.template import Template, available_templates, load_template
from coopt.arch.yaml_io import arch_from_yaml
from coopt.energy.accelergy_io import read_art, read_ert
from coopt.energy.select import with_overrides
from coopt.energy.tables import EnergyTables
from coopt.errors import SpecError
from coopt.yamlio import load_merged, load_yaml


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


def _is_template(arg: str) -> bool:
    p = Path(arg)
    if not p.suffix:
        return True
    if p.is_file():
        return "parameters" in load_yaml(p)
    return False


def user_tables(arch: Architecture, ert=None, art=None) -> EnergyTables:
    """Estimates (``--energy``: Accelergy's method or built-in), overridden entry by entry by the user's files."""
    user = None
    if ert or art:
        user = EnergyTables(ert=read_ert(ert, file=str(ert)) if ert else {},
                            art=read_art(art, file=str(art)) if art else {}, source="accelergy")
    return with_overrides(arch, user)


def design_from_template(template: Template | str, params: dict | None = None, dataflow: str | None = None,
                         ert=None, art=None) -> Design:
    t = load_template(template) if isinstance(template, str) else template
    values = t.resolve(params)
    option = dataflow or (t.constraint_options[0] if t.constraint_options else None)
    targets = t.constraints(option, values) if option else []
    arch = t.instantiate(values)
    return Design(arch=arch, tables=user_tables(arch, ert, art), targets=targets,
                  arch_yaml=t.instantiate_yaml(values), label=f"{t.name} ({option or 'free'})",
                  template=t.name, params=values, dataflow=option)


def load_design(arch_arg: str, *, params: dict | None = None, dataflow: str | None = None,
                constraints: str | None = None, ert=None, art=None) -> Design:
    if _is_template(arch_arg):
        if constraints:
            raise SpecError("--constraints applies to architecture files; templates take --dataflow",
                            key="--constraints")
        return design_from_template(arch_arg, params, dataflow, ert, art)
    if params:
        raise SpecError(f"--set applies to templates, and {arch_arg} is an architecture file", key="--set",
                        expected=f"a template among {available_templates()}")
    files = [arch_arg] + ([constraints] if constraints else [])
    raw, sources = load_merged(files)
    if "architecture" not in raw:
        raise SpecError("no 'architecture:' section", file=arch_arg, key="architecture")
    arch = arch_from_yaml(raw["architecture"], file=sources["architecture"])
    targets = []
    for key in ("architecture_constraints", "mapspace_constraints", "constraints"):
        node = raw.get(key)
        if isinstance(node, dict):
            node = node.get("targets", [])
        if node is None:
            continue
        if not isinstance(node, list):
            raise SpecError("must be a list of constraint targets", file=sources.get(key), key=key)
        targets.extend(node)
    ert = ert or (raw.get("ERT") and {"ERT": raw["ERT"]})
    art = art or (raw.get("ART") and {"ART": raw["ART"]})
    return Design(arch=arch, tables=user_tables(arch, ert, art), targets=targets,
                  arch_yaml={"architecture": raw["architecture"]}, label=Path(arch_arg).name)
