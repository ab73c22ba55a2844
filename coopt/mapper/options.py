"""How hard and by what the mapper searches: the options every engine's mapper takes.

Why a module of its own: engines, studies and the CLI all pass these
options; they belong to the mapper (the layer below the engines), so that
no module under ``coopt/mapper`` needs to know which engine runs.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MapperOptions", "STRATEGIES"]

# The mapper's search strategies by name (the CLI's --strategy choices and help come from here).
STRATEGIES: dict[str, str] = {
    "hybrid": "random sampling, then local search from the best (default; small mapspaces exhaustively)",
    "random": "random sampling only",
    "exhaustive": "every mapping of the mapspace, up to the budget",
}


@dataclass(frozen=True)
class MapperOptions:
    """How hard and by what to search: metric, evaluation budget, seed, strategy."""

    metric: tuple = ("edp",)
    budget: int = 6000
    seed: int = 0
    strategy: str = "hybrid"

    def key(self) -> tuple:
        return (tuple(self.metric), self.budget, self.seed, self.strategy)
