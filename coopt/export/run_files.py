"""The files ``coopt map --out`` and ``coopt network --out`` write, in Timeloop's forms.

Checked before anything is written (an existing folder only with ``force``,
never through a link), and every write error is one line naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

from coopt.model.mapping import mapping_to_yaml
from coopt.outputs import output_dir, write_text
from coopt.yamlio import dumps_yaml

__all__ = ["MAP_FILES", "write_map_files", "write_network_files"]

MAP_FILES = ("coopt-mapper.map.yaml", "coopt-mapper.stats.json", "coopt-mapper.stats.txt")


def write_map_files(out: str | Path, mapping_doc: dict, summary: dict, stats_text: str, *,
                    force: bool = False) -> Path:
    """``coopt-mapper.map.yaml`` (feed it to ``coopt evaluate`` or ``timeloop-model``) and the stats."""
    d = output_dir(out, force=force)
    write_text(d / MAP_FILES[0], dumps_yaml(mapping_doc))
    write_text(d / MAP_FILES[1], json.dumps(summary, indent=2))
    write_text(d / MAP_FILES[2], stats_text + "\n")
    return d / MAP_FILES[0]


def write_network_files(out: str | Path, design, result, *, force: bool = False, sparse: dict | None = None) -> Path:
    """``arch.yaml``, ``<layer>.map.yaml`` for every mapped layer and ``summary.json``; under sparsity
    (``sparse``, as ``map_network`` took it) ``arch.yaml`` carries the ``sparse_optimizations`` and
    every layer gets ``<layer>.problem.yaml`` with its ``densities``, so Timeloop reads what coopt costed."""
    from coopt.export.design import _stems     # a model's node names (/layer1/conv/Conv) as file names
    from coopt.workload.yaml_io import problem_to_yaml

    d = output_dir(out, force=force)
    arch_doc = dict(design.arch_yaml)
    if sparse and sparse.get("targets"):
        arch_doc["sparse_optimizations"] = {"targets": sparse["targets"]}
    write_text(d / "arch.yaml", dumps_yaml(arch_doc))
    for layer, stem in zip(result.layers, _stems(result.layers)):
        if sparse:
            doc = problem_to_yaml(layer.problem)
            dens = sparse["densities"].get(layer.name)
            if dens:
                doc["problem"]["instance"]["densities"] = dens
            write_text(d / f"{stem}.problem.yaml", dumps_yaml(doc))
        if layer.found:
            write_text(d / f"{stem}.map.yaml", dumps_yaml(mapping_to_yaml(layer.mapping, design.arch,
                                                                                layer.problem)))
    write_text(d / "summary.json", json.dumps(result.to_dict(), indent=2))
    return d
