"""The native model (Timeloop-model's role): mappings, nest analysis, costs, one evaluation.

Imports are lazy: the compiled kernels load only when a mapping is evaluated.
"""
from __future__ import annotations

import importlib

_PUBLIC = {
    "Mapping": "coopt.model.mapping", "LevelMapping": "coopt.model.mapping",
    "mapping_from_yaml": "coopt.model.mapping", "mapping_to_yaml": "coopt.model.mapping",
    "evaluate": "coopt.model.evaluate", "MappingEval": "coopt.model.evaluate", "LevelEval": "coopt.model.evaluate",
    "arch_area": "coopt.model.cost",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'coopt.model' has no attribute {name!r}")
