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
from coopt.design import design_tables
from coopt.energy.tables import EnergyTables
from coopt.errors import SpecError
from coopt.mapper.constraints import check_mapping, collect_targets, parse_constraints
from coopt.model.mapping import Mapping, mapping_from_yaml
from coopt.workload.problem import Problem
from coopt.workload.yaml_io import problem_from_yaml
from coopt.arch.v4_spec import load_spec

__all__ = ["InputSet", "load_inputs"]


@dataclass
class InputSet:
    arch: Architecture
    problem: Problem
    tables: EnergyTables
    raw: dict
    sources: dict = field(default_factory=dict)
    sparse: object = None      # coopt.model.sparse.SparseSpec when densities < 1 or sparse_optimizations are given

    def source(self, key: str) -> str | None:
        return self.sources.get(key)

    def mapping(self) -> Mapping:
        if "mapping" not in self.raw or not self.raw["mapping"]:
            raise SpecError("no mapping given", key="mapping",
                            expected="a 'mapping:' list (Timeloop mapping YAML) in one of the files")
        mapping = mapping_from_yaml(self.raw["mapping"], self.arch, self.problem, file=self.source("mapping"))
        for ds in self.problem.dataspaces:
            if not any(ds.name in level.keep for level in mapping.levels):
                raise SpecError(f"{ds.name} bypasses every storage level", file=self.source("mapping"),
                                key="mapping", expected=f"{ds.name} kept in at least one level (e.g. the outermost)")
        targets, file, key = collect_targets(self.raw, self.sources)
        if targets:           # timeloop-model refuses a mapping that breaks the constraints it is given
            cons = parse_constraints(targets, self.arch, self.problem, file=file, key=key)
            check_mapping(mapping, cons, self.arch, self.problem, file=self.source("mapping"))
        return mapping


def _require(raw: dict, sources: dict, key: str, paths) -> object:
    if key not in raw:
        raise SpecError(f"no '{key}:' section in {', '.join(str(p) for p in paths)}", key=key)
    return raw[key]


def load_inputs(paths, ert: str | Path | None = None, art: str | Path | None = None, *,
                variables: dict | None = None, sparse: bool = False) -> InputSet:
    """Load and check a Timeloop-style input set (or a timeloopfe v4 spec, ``variables`` for its Jinja2
    top file); energies from ERT/ART files or estimated.

    ``sparse=True`` (``coopt evaluate``/``map``) reads densities and ``sparse_optimizations``;
    elsewhere they are refused in one line, as before, rather than ignored.
    """
    paths = [Path(p) for p in paths]
    raw, sources = load_spec(paths, variables)
    arch = arch_from_yaml(_require(raw, sources, "architecture", paths), file=sources.get("architecture"))
    node = _require(raw, sources, "problem", paths)
    spec = None
    if sparse:
        from coopt.model.sparse import is_sparse, sparse_spec_from_yaml, split_problem_node
        node, densities = split_problem_node(node)
        problem = problem_from_yaml(node, file=sources.get("problem"))
        spec = sparse_spec_from_yaml(problem, arch, densities, raw.get("sparse_optimizations"),
                                     arch_node=raw.get("architecture"),
                                     problem_file=sources.get("problem"),
                                     sparse_file=sources.get("sparse_optimizations"))
        spec = spec if is_sparse(spec) else None
    else:
        problem = problem_from_yaml(node, file=sources.get("problem"))
        if raw.get("sparse_optimizations"):
            raise SpecError("sparse optimisations are read by 'coopt evaluate' only",
                            file=sources.get("sparse_optimizations"), key="sparse_optimizations",
                            expected="no sparse_optimizations here (dense tensors)")
    tables = design_tables(arch, ert, art, raw=raw, sources=sources)
    return InputSet(arch=arch, problem=problem, tables=tables, raw=raw, sources=sources, sparse=spec)
