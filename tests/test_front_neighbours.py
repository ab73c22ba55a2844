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


def test_steps_go_to_the_next_value_and_inward_at_a_bound():
    rng = np.random.RandomState(0)
    ints = IntDistribution(4, 16)
    assert {_step(ints, 10, rng) for _ in range(50)} == {9, 11}
    assert {_step(ints, 16, rng) for _ in range(50)} == {15}
    assert {_step(IntDistribution(6, 24, step=6), 6, rng) for _ in range(50)} == {12}
    clock = CategoricalDistribution([200, 400, 800])
    assert {_step(clock, 400, rng) for _ in range(50)} == {200, 800}
    assert {_step(clock, 800, rng) for _ in range(50)} == {400}


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
