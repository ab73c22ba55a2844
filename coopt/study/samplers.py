"""Optuna samplers by name, seeded; constraints come from ``trial.set_constraint`` (Optuna 5)."""
from __future__ import annotations

import importlib.util

from coopt.errors import CooptError
from coopt.study.space import SearchSpace

SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random", "grid")


def make_sampler(name: str, space: SearchSpace, seed: int | None, trials: int):
    import optuna

    opts = dict((space.sampler_options or {}).get(name) or {})
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=opts.get("n_startup_trials", min(10, max(4, trials // 4))))
    if name in ("nsga2", "nsga3"):
        # Small studies (tens to hundreds of trials) want small populations and more mutation
        # than Optuna's 1/n_params default: benchmarks/search_quality.py measures the effect.
        pop = opts.get("population_size", max(10, min(50, trials // 4)))
        mut = opts.get("mutation_prob", 0.5)
        cls = optuna.samplers.NSGAIISampler if name == "nsga2" else optuna.samplers.NSGAIIISampler
        return cls(population_size=pop, mutation_prob=mut, seed=seed)
    if name == "gp":
        if importlib.util.find_spec("torch") is None:
            raise CooptError("the gp sampler needs PyTorch, which is not installed", key="--sampler",
                             expected="pip install torch (CPU build is enough), or another sampler: "
                                      "tpe, nsga2, nsga3, random, grid")
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        size = space.size()
        if size is None or size > 100_000:
            raise CooptError(f"the grid sampler needs a finite space of at most 100000 points, this one has "
                             f"{size if size else 'infinitely many'}", key="--sampler", expected="tpe or nsga2")
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    raise CooptError(f"unknown sampler {name!r}", key="--sampler", expected=f"one of {list(SAMPLERS)}")
