"""Multi-fidelity screening (``coopt search --screen-budget``): the rule, and a real study with it.

The rule's promise: a design is screened out only when the full-budget front
dominates its cheap result even after making that result ``slack`` better in
every objective, so a screened-out design never belongs to the front.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coopt.cli import main
from coopt.study.screening import could_enter_front

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "search_spaces" / "tiny.yaml")
MIN_MAX = ["minimize", "maximize"]


def test_a_design_dominated_even_with_slack_is_screened_out():
    front = [[100.0, 50.0], [200.0, 80.0]]
    # 10 % more energy and 20 % slower than (100, 50): 5 % better in both is still dominated
    assert not could_enter_front([110.0, 40.0], {}, front, MIN_MAX, slack=0.05)
    # 10 % more energy at the same throughput: 5 % faster would leave (100, 50) behind -> mapped in full
    assert could_enter_front([110.0, 50.0], {}, front, MIN_MAX, slack=0.05)
    assert could_enter_front([104.0, 45.0], {}, front, MIN_MAX, slack=0.05)
    assert not could_enter_front([120.0, 40.0], {}, front, MIN_MAX, slack=0.05)
    # no slack: exactly what the front does not dominate (an equal point is not dominated)
    assert not could_enter_front([101.0, 50.0], {}, front, MIN_MAX, slack=0.0)
    assert could_enter_front([100.0, 50.0], {}, front, MIN_MAX, slack=0.0)
    assert could_enter_front([150.0, 79.0], {}, front, MIN_MAX, slack=0.0)


def test_no_front_yet_unmapped_and_mapping_independent_budgets():
    assert could_enter_front([1e9, 0.1], {}, [], MIN_MAX)
    assert not could_enter_front([1.0, 1e9], {"unmapped_layers": 1.0}, [], MIN_MAX)
    assert not could_enter_front([1.0, 1e9], {"area_mm2": 0.3}, [], MIN_MAX)       # mapping cannot shrink area
    assert could_enter_front([1.0, 1e9], {"power_mw": 20.0}, [], MIN_MAX)          # a better mapping may


@pytest.mark.ray
@pytest.mark.slow
def test_screened_study_maps_in_full_only_what_could_enter_the_front(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    space_file = tmp_path / "tiny1500.yaml"          # the tiny space with a full budget worth screening
    space_file.write_text(Path(TINY).read_text().replace("budget: 300", "budget: 1500"))
    assert main(["search", "--space", str(space_file), "--trials", "16", "--workers", "1", "--sampler", "random",
                 "--study", "mf", "--seed", "1", "--screen-budget", "300", "--energy", "builtin", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    from coopt.study.front import losses, pareto_front
    from coopt.study.records import read_records
    from coopt.study.runner import study_dir
    from coopt.study.space import load_space

    space = load_space(space_file)
    directions = [d for _, d in space.objectives]
    recs = read_records(study_dir("mf"))
    assert len(recs) == 16
    screened = [r for r in recs if r.screened]
    full = [r for r in recs if not r.screened]
    assert screened and full and summary["screened"] == len(screened)
    assert {r.mapper_budget for r in screened} == {300}
    assert {r.mapper_budget for r in full} == {1500}
    cheap_work = max(layer.mappings_evaluated for r in screened for layer in r.layers)
    assert cheap_work < min(layer.mappings_evaluated for r in full for layer in r.layers)
    front = pareto_front(recs, space.objectives)
    assert front and not any(r.screened for r in front)
    assert set(summary["front"]) == {r.number for r in front}
    # the promise: every screened design's best case is dominated by the final front
    ref = losses([r.objectives for r in front], directions)
    for r in screened:
        if r.violations.get("unmapped_layers", 0) or r.violations.get("area_mm2", 0) > 0:
            continue
        best = losses([r.objectives], directions)[0]
        best = best - np.abs(best) * 0.05
        assert (np.all(ref <= best, axis=1) & np.any(ref < best, axis=1)).any(), r.number
    # MLflow says which trials were screened
    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string="tags.screened = 'true'")
    assert sorted(int(r.data.tags["coopt.trial"]) for r in runs) == sorted(r.number for r in screened)
    assert {r.data.params["mapper_budget"] for r in runs} == {"300"}


@pytest.mark.parametrize("flag,value", [("--screen-budget", "300"), ("--screen-budget", "-5"),
                                        ("--screen-slack", "1.5")])
def test_bad_screening_settings_exit_2_with_one_line(tmp_path, monkeypatch, capsys, flag, value):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", TINY, "--trials", "2", "--study", "bad", flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]
    assert not (tmp_path / "mlruns" / "studies" / "bad").exists()


def test_a_design_over_a_fixed_budget_is_not_mapped_one_within_is():
    """Area and on-chip memory are known before mapping: a design over either is recorded infeasible
    with no mapper work (every layer says why); the same design within budget is mapped in full."""
    from coopt.backends.network import arch_area
    from coopt.design import design_from_template
    from coopt.mapper.options import MapperOptions
    from coopt.study.trial import evaluate_design
    from coopt.workload.networks import Network, resnet18

    net = Network("head", resnet18().layers[:2])
    params = {"pe_rows": 16, "pe_cols": 16, "glb_depth": 16384}
    design = design_from_template("eyeriss_like", params)
    onchip, area = design.arch.onchip_kib, arch_area(design.arch, design.tables) / 1e6
    objectives = [("energy_uj", "minimize"), ("throughput_ips", "maximize")]
    for budgets in ({"onchip_kib": onchip * 0.9, "power_mw": 1e6}, {"area_mm2": area * 0.9}):
        rec = evaluate_design(0, params, "eyeriss_like", params, None, net, MapperOptions(budget=200, seed=0),
                              budgets, objectives)
        key = next(iter(budgets))
        assert not rec.feasible and rec.violations[key] == pytest.approx(0.1 / 0.9 * budgets[key])
        assert rec.reasons[0] == "not mapped: over a budget no mapping changes"
        assert any(r.startswith(f"{key} ") and "exceeds the budget" in r for r in rec.reasons)
        assert [(l.found, l.mappings_evaluated) for l in rec.layers] == [(False, 0)] * 2
        assert all(l.reason.startswith(f"not mapped: {key} ") for l in rec.layers)
        assert rec.metrics["onchip_kib"] == pytest.approx(onchip) and rec.metrics["area_mm2"] == pytest.approx(area)
    rec = evaluate_design(0, params, "eyeriss_like", params, None, net, MapperOptions(budget=200, seed=0),
                          {"onchip_kib": onchip, "area_mm2": area * 1.01}, objectives)
    assert rec.feasible and all(l.found and l.mappings_evaluated > 0 for l in rec.layers)
