"""Multi-fidelity screening: map a design with a small mapper budget first, in full only if it could
enter the front.

Why: most designs a sampler proposes are far from the front, and a cheap mapping (a few hundred
mappings per layer) already shows that; mapping only the promising ones with the full budget cuts a
study's cost about threefold at the same front (benchmarks/search_efficiency.py, README).  A design
screened out keeps its cheap result: a real, valid mapping of every layer, only possibly not the best.

The test is conservative: the cheap objectives are made ``slack`` better in every objective (the full
budget finds better mappings) and the design is screened out only if a point of the full-budget front
still dominates them, so a screened-out design can never belong to the final front (fronts only grow
better).  Designs with unmapped layers or over a budget the mapping cannot change (area, on-chip
memory) are not mapped again.
"""
from __future__ import annotations

DEFAULT_SLACK = 0.05
MAPPING_INDEPENDENT_BUDGETS = ("area_mm2", "onchip_kib")
ARCHITECTURE_ONLY_BUDGETS = ("onchip_kib",)          # known from the architecture alone, no estimator


def within_architecture_budgets(space):
    """``allowed(optuna_params) -> bool``: whether a design keeps the budgets its architecture alone
    decides (on-chip memory), in microseconds and without an energy estimator, so that a sampler can
    avoid proposing designs that are over budget whatever their mappings."""
    limits = {k: v for k, v in space.budgets.items() if k in ARCHITECTURE_ONLY_BUDGETS}
    known: dict[tuple, bool] = {}

    def allowed(optuna_params: dict) -> bool:
        if not limits:
            return True
        key = tuple(sorted(optuna_params.items()))
        if key not in known:
            t = space.template
            arch = t.instantiate(t.resolve(space.template_params(space.from_optuna(optuna_params))))
            known[key] = arch.onchip_kib <= limits["onchip_kib"]
        return known[key]
    return allowed


def could_enter_front(objectives: list[float], violations: dict[str, float], front: list[list[float]],
                      directions: list[str], slack: float = DEFAULT_SLACK) -> bool:
    """Whether a cheaply mapped design, given its objectives and budget violations, is worth the
    full mapper budget against ``front`` (objective vectors of full-budget feasible designs)."""
    import numpy as np

    if violations.get("unmapped_layers", 0) > 0:
        return False
    if any(violations.get(k, 0) > 0 for k in MAPPING_INDEPENDENT_BUDGETS):
        return False
    if not front:
        return True
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    loss = np.asarray(objectives, dtype=np.float64) * sign
    best_case = loss - np.abs(loss) * slack                       # every objective `slack` better
    ref = np.asarray(front, dtype=np.float64) * sign
    dominated = np.all(ref <= best_case, axis=1) & np.any(ref < best_case, axis=1)
    return not bool(dominated.any())


def screen_settings(budget: int | None, slack: float, records, objectives: list[tuple[str, str]]) -> dict | None:
    """What a study task carries for screening: the cheap budget, the slack and the current front of the
    full-budget records (the driver's view when the design is sent; it only grows better later)."""
    if not budget:
        return None
    from coopt.study.front import pareto_front

    full = [r for r in records if not r.screened]
    return {"budget": int(budget), "slack": float(slack),
            "front": [list(r.objectives) for r in pareto_front(full, objectives)]}
