"""Optuna samplers by name, seeded; constraints come from ``trial.set_constraint`` (Optuna 5).

A registry: each entry builds a sampler for a search space, a seed and the
number of trials.  The CLI's ``--sampler`` choices and help come from it; to
add a sampler, write a builder and one :func:`register_sampler` line.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from coopt.errors import CooptError

if TYPE_CHECKING:                       # the registry stays cheap to import (the CLI's --help reads it)
    from coopt.study.space import SearchSpace

__all__ = ["SAMPLERS", "SamplerInfo", "register_sampler", "sampler_names", "sampler_help", "make_sampler", "DEFAULT_SAMPLER"]


@dataclass(frozen=True)
class SamplerInfo:
    name: str
    build: Callable            # (space, seed, trials, options) -> optuna sampler
    help: str


SAMPLERS: dict[str, SamplerInfo] = {}


def register_sampler(name: str, build: Callable, help: str) -> None:
    """Make ``--sampler name`` (and ``sampler_options: {name: ...}`` in a space) available."""
    SAMPLERS[name] = SamplerInfo(name, build, help)


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def sampler_help() -> str:
    return "; ".join(f"{s.name}: {s.help}" for s in SAMPLERS.values())


def _startup_trials(trials, opts) -> int:
    """Random trials before TPE models (and tpe-local steps from) the front: 10, fewer in short studies."""
    return opts.get("n_startup_trials", min(10, max(4, trials // 4)))


def _tpe(space, seed, trials, opts):
    import optuna
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=_startup_trials(trials, opts))


def _tpe_local(space, seed, trials, opts):
    from coopt.study.front_neighbours import FrontNeighbourSampler
    from coopt.study.screening import within_architecture_budgets
    base = _tpe(space, seed, trials, opts)
    return FrontNeighbourSampler(base, fraction=opts.get("local_fraction", 0.5),
                                 warmup=_startup_trials(trials, opts),
                                 seed=None if seed is None else seed + 1,
                                 allowed=within_architecture_budgets(space))


def _nsga(cls_name):
    def build(space, seed, trials, opts):
        import optuna
        # Small studies (tens to hundreds of trials) want small populations and more mutation
        # than Optuna's 1/n_params default: benchmarks/search_quality.py measures the effect.
        pop = opts.get("population_size", max(10, min(50, trials // 4)))
        mut = opts.get("mutation_prob", 0.5)
        return getattr(optuna.samplers, cls_name)(population_size=pop, mutation_prob=mut, seed=seed)
    return build


def _gp(space, seed, trials, opts):
    import optuna
    if importlib.util.find_spec("torch") is None:
        raise CooptError("the gp sampler needs PyTorch, which is not installed", key="--sampler",
                         expected="pip install torch (CPU build is enough), or another sampler: "
                                  + ", ".join(n for n in SAMPLERS if n != "gp"))
    return optuna.samplers.GPSampler(seed=seed)


def _random(space, seed, trials, opts):
    import optuna
    return optuna.samplers.RandomSampler(seed=seed)


def _grid(space, seed, trials, opts):
    import optuna
    size = space.size()
    if size is None or size > 100_000:
        raise CooptError(f"the grid sampler needs a finite space of at most 100000 points, this one has "
                         f"{size if size else 'infinitely many'}", key="--sampler", expected="tpe or nsga2")
    return optuna.samplers.GridSampler(space.grid(), seed=seed)


register_sampler("tpe", _tpe, "multivariate TPE with constant liar")
register_sampler("tpe-local", _tpe_local, "tpe, with 1 in 2 trials (and its repeats) a local-search "
                                          "step from a front design (best measured on edge.yaml)")
register_sampler("nsga2", _nsga("NSGAIISampler"), "NSGA-II")
register_sampler("nsga3", _nsga("NSGAIIISampler"), "NSGA-III")
register_sampler("gp", _gp, "Gaussian process (needs PyTorch)")
register_sampler("random", _random, "uniform random")
register_sampler("grid", _grid, "every point of a finite space")

# benchmarks/search_efficiency.py (2026-11-30, reference front of 4,369 designs): on edge.yaml tpe-local
# reached 0.71 / 0.85 / 1.00 of the reference hypervolume in 50 / 100 / 200 trials (seeds 0-9; 0.96 at 200 with
# local_fraction 0.3), tpe 0.56 / 0.71 / 0.81, nsga2 and random 0.57 at 200 (seeds 0-4); on tiny.yaml
# (benchmarks/search_quality.py) tpe 0.98, nsga2 0.87.
DEFAULT_SAMPLER = "tpe-local"


def make_sampler(name: str, space: SearchSpace, seed: int | None, trials: int):
    """The sampler registered as ``name``, seeded, with the space's ``sampler_options`` for it."""
    info = SAMPLERS.get(name)
    if info is None:
        raise CooptError(f"unknown sampler {name!r}", key="--sampler", expected=f"one of {sampler_names()}")
    for sampler, node in (space.sampler_options or {}).items():      # every sampler's, not only this one's
        if sampler not in SAMPLERS:
            raise CooptError(f"unknown sampler {sampler!r}", file=space.path, key="sampler_options",
                             expected=f"samplers among {sampler_names()}")
        if not isinstance(node, dict):
            raise CooptError(f"is {node!r}", file=space.path, key=f"sampler_options.{sampler}",
                             expected="a mapping of option: value")
        for key, value in node.items():
            _check_option(space.path, sampler, key, value)
    opts = dict((space.sampler_options or {}).get(name) or {})
    return info.build(space, seed, trials, opts)


# The options a space may set per sampler: (kind, low, high).  Anything else is refused in one line,
# never passed on to Optuna to fail (or be ignored) minutes later.
OPTIONS = {"n_startup_trials": (int, 0, 100_000), "local_fraction": (float, 0.0, 1.0),
           "population_size": (int, 2, 100_000), "mutation_prob": (float, 0.0, 1.0)}


def _check_option(file, sampler: str, key, value) -> None:
    import math

    rule = OPTIONS.get(key)
    if rule is None:
        raise CooptError(f"unknown option {key!r}", file=file, key=f"sampler_options.{sampler}",
                         expected=f"options among {sorted(OPTIONS)}")
    kind, low, high = rule
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or (kind is int and not isinstance(value, int)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise CooptError(f"is {value!r}", file=file, key=f"sampler_options.{sampler}.{key}",
                         expected=f"{'an integer' if kind is int else 'a number'} from {low} to {high}")
