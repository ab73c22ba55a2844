"""A study under sparsity, end to end with the real parts (local Ray, sqlite MLflow, files).

search_spaces/edge_sparse.yaml narrowed to two ResNet-50 layers and 5 points of a 2 x 3 grid (Eyeriss's
ifmap zero gating off/on x three global-buffer sizes; the grid sampler's last point would stop the
study from outside an objective, which Optuna refuses): every trial is mapped and costed under Sparseloop's
model with the space's densities, its record keeps the densities (problem files) and the design's
sparse optimisations (arch_yaml), the front answers whether gating pays, and the export carries both
so that coopt's own reader of the exported files gives every layer's recorded numbers again.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from coopt.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["layer2.1.conv2", "layer3.1.conv1"]


def _space(tmp_path) -> Path:
    raw = yaml.safe_load((ROOT / "search_spaces" / "edge_sparse.yaml").read_text())
    raw["workload"] = {"network": "resnet50", "layers": LAYERS}
    raw["parameters"] = {"ifmap_zero_gating": raw["parameters"]["ifmap_zero_gating"],
                         "glb_depth": {"type": "pow2", "low": 2048, "high": 8192}}
    raw["fixed"]["clock_mhz"] = 200          # within the 400 mW budget
    raw["sparsity"]["layers"] = {}              # conv1 and fc are not in this workload
    raw["mapper"]["budget"] = 200
    f = tmp_path / "edge_sparse_small.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f


def test_sparse_study_front_and_export(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", str(_space(tmp_path)), "--trials", "5", "--workers", "2",
                 "--sampler", "grid", "--study", "sp", "--seed", "1", "--json"]) == 0
    from coopt.arch.yaml_io import arch_from_yaml
    from coopt.backends.sparse import evaluate_recorded
    from coopt.energy.select import arch_tables
    from coopt.study.records import read_records
    from coopt.study.runner import study_dir

    recs = read_records(study_dir("sp"))
    assert len(recs) == 5 and all(r.feasible for r in recs)
    by = {(r.params["ifmap_zero_gating"], r.template_params["glb_depth"]): r for r in recs}
    assert len(by) == 5          # 5 of the grid's 6 points: at least two buffer sizes with gating off and on
    for (gating, _), r in by.items():
        assert bool(r.arch_yaml.get("sparse_optimizations")) == gating
        arch = arch_from_yaml(r.arch_yaml["architecture"])
        tables = arch_tables(arch, using=r.energy_method)
        for layer in r.layers:
            assert layer.problem_yaml["problem"]["instance"]["densities"] == {
                "Inputs": {"distribution": "fixed_structured", "density": 0.5},
                "Weights": {"distribution": "fixed_structured", "density": 0.5}}
            _, dense, sparse = evaluate_recorded(layer.problem_yaml, arch, tables, layer.mapping_yaml, r.arch_yaml,
                                                 layer.name)
            assert sparse is not None and sparse.cycles == layer.cycles
            assert sparse.energy_pj == pytest.approx(layer.energy_pj, rel=1e-12)
            if gating:                 # zero inputs gate the weight reads: less energy than dense on that mapping
                assert sparse.macs["random"] * 2 == layer_macs(layer) and sparse.energy_pj < dense.energy_pj
            else:                      # densities without an optimisation change no count (Sparseloop)
                assert sparse.energy_pj == pytest.approx(dense.energy_pj, rel=1e-12)
    # does gating pay?  On each global-buffer size the gated design spends less energy per inference,
    # so the energy end of the front is gated.
    pairs = [g for g in (2048, 4096, 8192) if (False, g) in by and (True, g) in by]
    assert len(pairs) >= 2
    for glb in pairs:
        off, on = by[(False, glb)], by[(True, glb)]
        print(f"glb_depth {glb}: gating off {off.metrics['energy_uj']:.2f} uJ {off.metrics['throughput_ips']:.1f} "
              f"inf/s; on {on.metrics['energy_uj']:.2f} uJ {on.metrics['throughput_ips']:.1f} inf/s")
        assert on.metrics["energy_uj"] < off.metrics["energy_uj"]
    from coopt.study.front import pareto_front
    front = pareto_front(recs, [("energy_uj", "minimize"), ("throughput_ips", "maximize")])
    assert min(front, key=lambda r: r.metrics["energy_uj"]).params["ifmap_zero_gating"] is True
    # the export carries densities and sparse optimisations: coopt's reader gives the recorded numbers
    gated = by[(True, pairs[-1])]
    capsys.readouterr()
    assert main(["export", "--study", "sp", "--trial", str(gated.number), "--out", "exp"]) == 0
    folder = tmp_path / "exp" / f"trial-{gated.number}"
    assert "sparse_optimizations" in yaml.safe_load((folder / "arch.yaml").read_text())
    from coopt.backends.sparse import evaluate_sparse_inputs
    from coopt.export.design import safe_name
    from coopt.inputs import load_inputs
    for layer in gated.layers:
        stem = safe_name(layer.name)
        inp = load_inputs([folder / "arch.yaml", folder / "prob" / f"{stem}.yaml", folder / "map" / f"{stem}.yaml"],
                          ert=folder / "ERT.yaml", art=folder / "ART.yaml", sparse=True)
        got = evaluate_sparse_inputs(inp)
        assert got.cycles == layer.cycles
        assert got.energy_pj == pytest.approx(layer.energy_pj, rel=1e-9)
    assert any("evaluated under sparsity" in n for n in json.loads((folder / "summary.json").read_text())["notes"])
    script = (folder / "run_timeloop.sh").read_text()
    assert "(Actual )?Computes =" in script          # Sparseloop's stats print actual computes
    # verify's engines do not model sparsity: refused in one line, never compared with dense figures
    capsys.readouterr()
    assert main(["verify", "--study", "sp", "--trials", str(gated.number), "--no-mapper"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "evaluated under sparsity" in err


def layer_macs(layer) -> int:
    from coopt.workload.yaml_io import problem_from_yaml
    node = {**layer.problem_yaml["problem"]}
    node["instance"] = {k: v for k, v in node["instance"].items() if k != "densities"}
    return problem_from_yaml(node).macs
