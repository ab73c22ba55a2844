"""The mapper (Timeloop-mapper's role): constraints, the mapspace, search strategies, options.

Imports are lazy so that the options and the strategy registry (read by the
CLI to build its help) never pay for the model's compiled kernels.
"""
from __future__ import annotations

import importlib

_PUBLIC = {
    "MapperOptions": "coopt.mapper.options", "STRATEGIES": "coopt.mapper.options",
    "MapConstraints": "coopt.mapper.constraints", "parse_constraints": "coopt.mapper.constraints",
    "constraints_from_inputs": "coopt.mapper.constraints", "collect_targets": "coopt.mapper.constraints",
    "search": "coopt.mapper.search", "parse_metric": "coopt.mapper.search", "MapperResult": "coopt.mapper.search",
    "SearchStats": "coopt.mapper.search",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'coopt.mapper' has no attribute {name!r}")
