"""Studies: search spaces, samplers, trial evaluation, records, fronts, the Ray-actor runner.

Imports are lazy so that reading a search space never imports Optuna or Ray.
"""
from __future__ import annotations

import importlib

_PUBLIC = {
    "SearchSpace": "coopt.study.space", "load_space": "coopt.study.space", "space_path": "coopt.study.space",
    "SAMPLERS": "coopt.study.samplers", "register_sampler": "coopt.study.samplers",
    "make_sampler": "coopt.study.samplers",
    "TrialRecord": "coopt.study.records", "read_records": "coopt.study.records",
    "evaluate_design": "coopt.study.trial",
    "pareto_front": "coopt.study.front", "distinct_designs": "coopt.study.front",
    "StudyConfig": "coopt.study.runner", "run_study": "coopt.study.runner",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'coopt.study' has no attribute {name!r}")
