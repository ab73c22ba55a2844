"""The ``tpe-local`` sampler: TPE plus steps one neighbouring value away from a front design."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution

from coopt.study.front_neighbours import FrontNeighbourSampler, _step
from coopt.study.samplers import make_sampler
from coopt.study.space import load_space

ROOT = Path(__file__).resolve().parents[1]
EDGE = load_space(ROOT / "search_spaces" / "edge.yaml")
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def test_steps_go_to_the_next_value_and_stop_at_a_bound():
    ints = IntDistribution(4, 16)
    assert (_step(ints, 10, -1), _step(ints, 10, 1), _step(ints, 16, 1), _step(ints, 4, -1)) == (9, 11, None, None)
    assert _step(IntDistribution(6, 24, step=6), 6, 1) == 12
    clock = CategoricalDistribution([200, 400, 800])
    assert (_step(clock, 400, -1), _step(clock, 400, 1), _step(clock, 800, 1)) == (200, 800, None)


def test_the_neighbourhood_is_worked_through_within_the_memory_budget_with_repairs():
    """From 16x13 PEs with a 16384-row buffer (edge.yaml), 14 columns break the 160 KiB on-chip budget;
    the search offers that step only with a repair (e.g. the buffer halved: the fastest frugal design),
    never a design over the budget, never one twice, until the neighbourhood is exhausted."""
    from coopt.study.screening import within_architecture_budgets

    allowed = within_architecture_budgets(EDGE)
    origin = EDGE.to_optuna({"pe_rows": 16, "pe_cols": 13, "glb_depth": 16384, "ifmap_spad_depth": 6,
                             "weights_spad_depth": 64, "psum_spad_depth": 8, "word_bits": 8, "clock_mhz": 800})
    assert allowed(origin) and not allowed({**origin, "pe_cols": 14})
    assert allowed({**origin, "pe_cols": 14, "log2_glb_depth": 13})
    sampler = FrontNeighbourSampler(optuna.samplers.RandomSampler(seed=0), fraction=1.0, warmup=1, seed=0,
                                    allowed=allowed)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    study.enqueue_trial(origin)
    proposed = []
    for i in range(120):
        t = study.ask()
        EDGE.suggest(t)
        t.set_constraint("budget", -1.0)
        study.tell(t, [100.0, 10.0] if i == 0 else [200.0 + i, 1.0])      # the origin stays the front
        if i:
            proposed.append(dict(t.params))
    neighbourhood = sampler._neighbourhood(study.trials[0])
    keys = [json.dumps(p, sort_keys=True) for p in neighbourhood]
    assert len(set(keys)) == len(keys) >= 8         # 7 of the 8 parameters sit at a bound: one step each
    assert {**origin, "pe_cols": 14, "log2_glb_depth": 13} in neighbourhood
    assert {**origin, "pe_cols": 12} in neighbourhood and {**origin, "pe_rows": 15} in neighbourhood
    assert all(allowed(p) for p in neighbourhood)
    first = proposed[:len(neighbourhood)]
    assert sorted(json.dumps(p, sort_keys=True) for p in first) == sorted(keys)      # all of it, once each
    assert all(allowed(p) for p in first)


def _toy(p):
    """A front in a narrow pocket: throughput jumps at 14 PE columns (as ResNet-50's rows do)."""
    energy = 100 + abs(p["pe_cols"] - 14) * 10 + p["word_bits"] + abs(p["pe_rows"] - 16)
    speed = p["pe_rows"] * p["pe_cols"] * p["clock_mhz"] / 800 * (1.0 if p["pe_cols"] in (7, 14) else 0.66)
    return [energy, speed]


def _run(sampler, trials):
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    for _ in range(trials):
        t = study.ask()
        p = EDGE.suggest(t)
        t.set_constraint("budget", -1.0 if p["pe_rows"] * p["pe_cols"] <= 240 else 1.0)
        study.tell(t, _toy(p))
    return study


def _one_step_apart(a: dict, b: dict, dists) -> bool:
    """``a`` differs from ``b`` in one or two parameters, each by one step (or one choice over)."""
    diff = [k for k in a if a[k] != b[k]]
    if not 1 <= len(diff) <= 2:
        return False
    for k in diff:
        d = dists[k]
        gap = abs(a[k] - b[k]) / d.step if isinstance(d, IntDistribution) else \
            abs(d.choices.index(a[k]) - d.choices.index(b[k]))
        if gap != 1:
            return False
    return True


def test_neighbour_trials_are_one_or_two_steps_from_a_front_design_and_new():
    base = optuna.samplers.RandomSampler(seed=3)
    study = optuna.create_study(directions=["minimize", "maximize"],
                                sampler=FrontNeighbourSampler(base, fraction=1.0, warmup=10, seed=3))
    moved = 0
    for i in range(40):
        t = study.ask()
        p = EDGE.suggest(t)
        t.set_constraint("budget", -1.0)
        if i >= 10:
            dists = study.best_trials[0].distributions
            assert any(_one_step_apart(t.params, f.params, dists) for f in study.best_trials), \
                f"trial {i} is no neighbour of the front"
            moved += 1
        study.tell(t, _toy(p))
    keys = [json.dumps(t.params, sort_keys=True) for t in study.trials[10:]]
    assert moved == 30 and len(set(keys)) == len(keys)               # never a design the study holds


def test_seeded_and_at_least_as_good_as_tpe_on_a_pocketed_toy():
    def designs(seed):
        return [t.params for t in _run(make_sampler("tpe-local", EDGE, seed, 60), 60).trials]
    assert designs(7) == designs(7)
    best = {name: np.mean([max(t.values[1] for t in _run(make_sampler(name, EDGE, s, 80), 80).best_trials)
                           for s in range(3)]) for name in ("tpe", "tpe-local")}
    assert best["tpe-local"] >= best["tpe"] * 0.98


def test_fraction_zero_is_the_base_sampler():
    plain = _run(make_sampler("tpe", EDGE, 4, 30), 30)
    wrapped = _run(FrontNeighbourSampler(make_sampler("tpe", EDGE, 4, 30), fraction=0.0, seed=1), 30)
    assert [t.params for t in plain.trials] == [t.params for t in wrapped.trials]


def test_a_fresh_study_takes_the_default_sampler_a_continued_one_keeps_its_own(tmp_path):
    from dataclasses import replace

    import pytest

    from coopt.errors import CooptError
    from coopt.study.runner import StudyConfig, prepare_study_dir
    from coopt.study.samplers import DEFAULT_SAMPLER

    tiny = str(ROOT / "search_spaces" / "tiny.yaml")
    space = load_space(tiny)
    fresh = StudyConfig(space_path=tiny, study="fresh", root=str(tmp_path))
    assert prepare_study_dir(fresh, space)["settings"]["sampler"] == DEFAULT_SAMPLER == "tpe-local"
    other = StudyConfig(space_path=tiny, study="other", sampler="random", root=str(tmp_path))
    prepare_study_dir(other, space)
    assert prepare_study_dir(replace(other, sampler=None), space)["settings"]["sampler"] == "random"
    with pytest.raises(CooptError, match="uses the random sampler"):
        prepare_study_dir(replace(other, sampler="tpe"), space)


class _Stuck(optuna.samplers.BaseSampler):
    """A base sampler that proposes one design forever (as TPE re-proposes designs late in a study)."""

    def __init__(self, design: dict):
        self.design = design
        self.space = optuna.search_space.IntersectionSearchSpace()

    def infer_relative_search_space(self, study, trial):
        return self.space.calculate(study)

    def sample_relative(self, study, trial, search_space):
        return {k: self.design[k] for k in search_space}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.design[param_name]


def test_a_design_the_base_proposes_again_becomes_a_neighbour_step():
    design = EDGE.to_optuna({"pe_rows": 8, "pe_cols": 8, "glb_depth": 4096, "ifmap_spad_depth": 12,
                             "weights_spad_depth": 128, "psum_spad_depth": 16, "word_bits": 8, "clock_mhz": 400})

    def run(fraction):
        sampler = FrontNeighbourSampler(_Stuck(design), fraction=fraction, warmup=1, seed=0)
        study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
        for _ in range(12):
            t = study.ask()
            EDGE.suggest(t)
            t.set_constraint("budget", -1.0)
            study.tell(t, _toy(EDGE.from_optuna(t.params)))
        return [json.dumps(t.params, sort_keys=True) for t in study.trials]

    assert run(0.0) == [json.dumps(design, sort_keys=True)] * 12          # fraction 0: the base sampler as is
    stepped = run(1e-9)                                                     # (no share of planned steps)
    assert stepped[0] == json.dumps(design, sort_keys=True) and len(set(stepped)) == 12
