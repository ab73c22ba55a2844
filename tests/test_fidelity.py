"""The native engine against real Timeloop + Accelergy runs (../shared/reference).

Every model case goes through the real command line (``coopt evaluate --json``)
with the run's own ERT/ART, and must reproduce Timeloop's cycles and
per-level access counts exactly, energies within 0.5 % and utilisation to two
decimals.  The mapper cases' best mappings are checked the same way.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from coopt.backends.timeloop_stats import level_energy_pj, parse_stats, total_energy_pj
from coopt.cli import main
from coopt.inputs import load_inputs
from coopt.model.batch import MappingBatch
from coopt.model.evaluate import walk_stats
from coopt.model.mapping import mapping_from_yaml
from coopt.model.nest import ProblemArrays, nest_stats
from coopt.yamlio import load_yaml
from reference import cases, stats_file

MODEL_CASES = cases("model")
MAPPER_CASES = cases("mapper")
ALL = MODEL_CASES + MAPPER_CASES


def _mapping_file(case, tmp_path):
    """Model cases carry their mapping; mapper cases' best mapping is in the .map.yaml."""
    if case in MODEL_CASES:
        return []
    return [str(case / "timeloop-mapper.map.yaml")]


def _run_cli(case, tmp_path, capsys):
    args = ["evaluate", str(case / "input.yaml"), *_mapping_file(case, tmp_path),
            "--ert", str(case / "ERT.yaml"), "--art", str(case / "ART.yaml"), "--json"]
    if case in MAPPER_CASES:
        # the mapper input has an empty 'mapping: []'; put the best mapping first so it wins
        raw = load_yaml(case / "input.yaml")
        raw.pop("mapping", None)
        import yaml
        f = tmp_path / "input.yaml"
        f.write_text(yaml.safe_dump(raw))
        args[1] = str(f)
    rc = main(args)
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(out)


@pytest.mark.skipif(not ALL, reason="reference runs not found")
@pytest.mark.parametrize("case", ALL, ids=lambda p: p.name)
def test_matches_timeloop(case, tmp_path, capsys):
    got = _run_cli(case, tmp_path, capsys)
    ref = parse_stats(stats_file(case))
    assert got["cycles"] == ref["cycles"]
    assert got["macs"] == ref["computes"]
    assert round(got["utilization"], 4) == round(ref["utilization"], 4)
    checked = 0
    for name, lvl in ref["levels"].items():
        for ds, counts in lvl["dataspaces"].items():
            mine = got["levels"][name][ds]
            for key in ("reads", "fills", "updates"):
                assert mine[key] == counts[key], f"{name}.{ds}.{key}"
                checked += 1
    assert checked >= 9
    e_ref = total_energy_pj(ref)
    assert abs(got["energy_pj"] - e_ref) <= 0.005 * e_ref
    for name in ref["levels"]:
        e = level_energy_pj(ref, name)
        assert abs(got["levels"][name]["energy_pj"] - e) <= 0.005 * max(e, 1e-9) + 0.01 * ref["computes"] / 1000
    mac = level_energy_pj(ref, ref["mac"]["name"])
    assert abs(got["mac_energy_pj"] - mac) <= 0.005 * mac


@pytest.mark.skipif(not ALL, reason="reference runs not found")
@pytest.mark.parametrize("case", ALL, ids=lambda p: p.name)
def test_closed_form_equals_walk_on_references(case):
    """The vectorised nest analysis gives the literal walk's numbers on every reference mapping."""
    inputs = load_inputs([case / "input.yaml"])
    if case in MAPPER_CASES:
        mapping = mapping_from_yaml(load_yaml(case / "timeloop-mapper.map.yaml")["mapping"], inputs.arch,
                                    inputs.problem)
    else:
        mapping = inputs.mapping()
    walk = walk_stats(inputs.problem, inputs.arch, mapping)
    names = [d.name for d in inputs.problem.dataspaces]
    fast = nest_stats(ProblemArrays(inputs.problem), inputs.arch, MappingBatch.from_mappings([mapping], names))
    for field in ("size", "total", "weighted", "link", "msize", "fanout", "repl", "compute", "compute_repl"):
        np.testing.assert_allclose(getattr(fast, field), getattr(walk, field), err_msg=field)


def test_reference_figures_in_readme_hold():
    """The headline numbers of the reference README: 2,982 fJ/MAC and 5,505,024 cycles."""
    case = [c for c in MODEL_CASES if c.name.startswith("06-")]
    if not case:
        pytest.skip("reference runs not found")
    ref = parse_stats(stats_file(case[0]))
    assert ref["cycles"] == 5505024
    assert round(ref["fj_per_compute"]["Total"]) == 2982
