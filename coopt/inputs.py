"""Timeloop-style input sets: several YAML files whose top-level keys are merged.

``coopt evaluate`` and ``coopt map`` read what ``timeloop-model`` and
``timeloop-mapper`` read: ``architecture``, ``problem``, ``mapping``,
``constraints``/``architecture_constraints``/``mapspace``, ``mapper`` and
component classes, possibly spread over several files, plus optional
Accelergy ``ERT``/``ART`` tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coopt.arch.spec import Architecture
from coopt.arch.yaml_io import arch_from_yaml
from coopt.energy.accelergy_io import read_art, read_ert
from coopt.energy.select import with_overrides
from coopt.energy.tables import EnergyTables
from coopt.errors import SpecError
from coopt.model.mapping import Mapping, mapping_from_yaml
from coopt.workload.problem import Problem
from coopt.workload.yaml_io import problem_from_yaml
from coopt.yamlio import load_merged


@dataclass
class InputSet:
    arch: Architecture
    problem: Problem
    tables: EnergyTables
    raw: dict
    sources: dict = field(default_factory=dict)

    def source(self, key: str) -> str | None:
        return self.sources.get(key)

    def mapping(self) -> Mapping:
        if "mapping" not in self.raw or not self.raw["mapping"]:
            raise SpecError("no mapping given", key="mapping",
                            expected="a 'mapping:' list (Timeloop mapping YAML) in one of the files")
        return mapping_from_yaml(self.raw["mapping"], self.arch, self.problem, file=self.source("mapping"))


def _require(raw: dict, sources: dict, key: str, paths) -> object:
    if key not in raw:
        raise SpecError(f"no '{key}:' section in {', '.join(str(p) for p in paths)}", key=key)
    return raw[key]


def load_inputs(paths, ert: str | Path | None = None, art: str | Path | None = None) -> InputSet:
    """Load and check a Timeloop-style input set; energies from ERT/ART files or estimated."""
    paths = [Path(p) for p in paths]
    raw, sources = load_merged(paths)
    arch = arch_from_yaml(_require(raw, sources, "architecture", paths), file=sources.get("architecture"))
    problem = problem_from_yaml(_require(raw, sources, "problem", paths), file=sources.get("problem"))
    ert_node = ert if ert is not None else raw.get("ERT") and {"ERT": raw["ERT"]}
    art_node = art if art is not None else raw.get("ART") and {"ART": raw["ART"]}
    user = EnergyTables(
        ert=read_ert(ert_node, file=str(ert) if ert else sources.get("ERT")) if ert_node else {},
        art=read_art(art_node, file=str(art) if art else sources.get("ART")) if art_node else {},
        source="accelergy")
    tables = with_overrides(arch, user)
    return InputSet(arch=arch, problem=problem, tables=tables, raw=raw, sources=sources)
