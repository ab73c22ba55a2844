"""A sampler that spends a share of its trials one step away from the current Pareto front.

Why: in accelerator spaces the best designs sit in narrow pockets next to good
ones: on edge.yaml the fastest frugal designs need 16 PE rows and 14 or 15
columns (they divide ResNet-50's 56/28/14/7 output rows) where 16 columns give a
third less throughput and 10 to 13 give all the same, so TPE settles on that
plateau in some seeds and never looks one step aside.  The neighbour trials are
a Pareto local search (Paquete, Chiarandini & Stützle, 2004): from a front
design, each parameter stepped to its neighbouring value (the next integer,
power of two or choice), and where that step breaks a budget the architecture
alone decides (on-chip memory: 16x13 PEs with 128 KiB of buffer fit, 16x14 do
not) the step together with one repairing step of another parameter.  Every
front design's neighbourhood is worked through without repeats, the front's
distinct objective vectors taking turns (a plateau of equal designs counts
once).  The other trials stay with the base sampler (TPE), which also learns
from the probes, except where it proposes a design the study already holds
(TPE does so for about one trial in ten late in a study): that trial steps too.
Built on Optuna's public sampler interface; seeded.
"""
from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from coopt.study.records import design_key


class FrontNeighbourSampler(optuna.samplers.BaseSampler):
    """``base`` for most trials; after ``warmup`` complete trials, a ``fraction`` of them are neighbours
    of a feasible front design (never a design the study already holds).  ``allowed(params)`` says
    whether a design (Optuna's parameters) keeps the budgets known before mapping."""

    def __init__(self, base: optuna.samplers.BaseSampler, fraction: float = 0.3, warmup: int = 10,
                 seed: int | None = None, allowed=None):
        self._base = base
        self._fraction = fraction
        self._warmup = warmup
        self._allowed = allowed or (lambda params: True)
        self._rng = np.random.RandomState(seed)
        self._plans: dict[int, dict] = {}

    # -- Optuna's sampler interface -------------------------------------------------------------
    def reseed_rng(self) -> None:
        self._base.reseed_rng()
        self._rng.seed()

    def infer_relative_search_space(self, study, trial):
        return self._base.infer_relative_search_space(study, trial)

    def before_trial(self, study, trial) -> None:
        self._base.before_trial(study, trial)
        if self._rng.rand() < self._fraction:          # drawn every trial: the stream does not depend on state
            plan = self._neighbour(study)
            if plan is not None:
                self._plans[trial.number] = plan

    def sample_relative(self, study, trial, search_space):
        plan = self._plans.get(trial.number)
        if plan is None:
            proposal = self._base.sample_relative(study, trial, search_space)
            if not proposal or not self._fraction:
                return proposal
            held = self._held(study)
            if design_key(proposal) not in held:
                return proposal
            plan = self._neighbour(study, held)  # the base repeats a design (a wasted trial): step instead
            if plan is None:
                return proposal
            self._plans[trial.number] = plan
        return {name: plan[name] for name in search_space if name in plan}

    def sample_independent(self, study, trial, param_name, param_distribution):
        plan = self._plans.get(trial.number)
        if plan is not None and param_name in plan:
            return plan[param_name]
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._plans.pop(trial.number, None)
        self._base.after_trial(study, trial, state, values)

    # -- the neighbour move ---------------------------------------------------------------------
    def _held(self, study) -> set[str]:
        """The designs the study holds, and those planned for trials not yet told."""
        held = {design_key(t.params) for t in study.get_trials(deepcopy=False) if t.params}
        return held | {design_key(p) for p in self._plans.values()}

    def _neighbour(self, study, held: set[str] | None = None) -> dict | None:
        if sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) < self._warmup:
            return None
        held = self._held(study) if held is None else held
        groups: dict[tuple, dict[str, optuna.trial.FrozenTrial]] = {}
        for t in study.best_trials:                                   # feasible, non-dominated
            if t.distributions:
                groups.setdefault(tuple(t.values), {}).setdefault(design_key(t.params), t)
        keys = sorted(groups)
        for g in self._rng.permutation(len(keys)):                    # distinct objective vectors take turns
            origins = [groups[keys[g]][k] for k in sorted(groups[keys[g]])]
            for o in self._rng.permutation(len(origins)):
                fresh = [c for c in self._neighbourhood(origins[o]) if design_key(c) not in held]
                if fresh:
                    return fresh[self._rng.randint(len(fresh))]
        return None

    def _neighbourhood(self, origin) -> list[dict]:
        """Every one-step neighbour of ``origin`` within the architecture budgets; a step that breaks
        them, combined with each one-step repair of another parameter that restores them."""
        dists, out = origin.distributions, []
        names = sorted(dists)
        for name in names:
            for direction in (-1, 1):
                value = _step(dists[name], origin.params[name], direction)
                if value is None:
                    continue
                moved = {**origin.params, name: value}
                if self._allowed(moved):
                    out.append(moved)
                    continue
                for other in names:
                    for d2 in (-1, 1):
                        v2 = None if other == name else _step(dists[other], moved[other], d2)
                        if v2 is not None and self._allowed({**moved, other: v2}):
                            out.append({**moved, other: v2})
        return out


def _step(dist, value, direction: int):
    """The value one step up (+1) or down (-1); None past a bound.  Categorical choices in their
    listed order; floats by a twentieth of their range."""
    if isinstance(dist, IntDistribution):
        out = value + direction * (dist.step if not dist.log else 1)
        return int(out) if dist.low <= out <= dist.high else None
    if isinstance(dist, CategoricalDistribution):
        i = dist.choices.index(value) + direction
        return dist.choices[i] if 0 <= i < len(dist.choices) else None
    if isinstance(dist, FloatDistribution):
        out = value + direction * (dist.step or (dist.high - dist.low) * 0.05)
        return float(out) if dist.low <= out <= dist.high else None
    return None
