"""Search spaces with workload densities and templates with sparse optimisations (no Ray needed)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from coopt.arch.template import Template, load_template
from coopt.cli import main
from coopt.errors import SpecError
from coopt.study.space import load_space, space_from_dict

ROOT = Path(__file__).resolve().parents[1]


def _raw(**sparsity) -> dict:
    raw = yaml.safe_load((ROOT / "search_spaces" / "edge_sparse.yaml").read_text())
    raw["sparsity"] = {**raw["sparsity"], **sparsity}
    return raw


def test_edge_sparse_densities_per_layer():
    space = load_space("edge_sparse")
    assert set(space.sparsity) == {layer.name for layer in space.network.layers}
    half = {"distribution": "fixed_structured", "density": 0.5}
    dense = {"distribution": "fixed_structured", "density": 1.0}
    assert space.sparsity["conv1"] == {"Inputs": dense, "Weights": half}
    assert space.sparsity["fc"] == {"Inputs": dense, "Weights": half}
    assert space.sparsity["layer3.1.conv2"] == {"Inputs": half, "Weights": half}


@pytest.mark.parametrize("sparsity, key, message", [
    ({"densities": {"Inputs": 1.5}}, "sparsity.densities.Inputs", "density is 1.5"),
    ({"densities": {"Psums": 0.5}}, "sparsity.densities.Psums", "unknown tensor"),
    ({"layers": {"conv9": {"Inputs": 0.5}}}, "sparsity.layers.conv9", "unknown layer"),
    ({"layers": {"layer1.1.conv1": {"Inputs": 0.3}}}, "sparsity.layers.layer1.1.conv1", "share a shape"),
    ({"distribution": "gaussian"}, "sparsity.distribution", "distribution is 'gaussian'"),
])
def test_bad_sparsity_is_named(sparsity, key, message):
    with pytest.raises(SpecError, match=message) as err:
        space_from_dict(_raw(**sparsity), file="space.yaml")
    assert err.value.key == key and err.value.file == "space.yaml"


def test_bad_sparsity_on_the_command_line_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(_raw(densities={"Weights": -0.1})))
    assert main(["search", "--space", str(f), "--trials", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "s.yaml: sparsity.densities.Weights" in err and "Traceback" not in err


def test_eyeriss_zero_gating_option():
    t = load_template("eyeriss_like")
    assert t.sparse_targets() == []
    assert t.sparse_targets({"ifmap_zero_gating": True}) == [{"name": "weights_spad", "action_optimization": [
        {"type": "gating", "options": [{"target": "Weights", "condition_on": ["Inputs"]}]}]}]


def test_a_template_sparse_entry_needs_a_bool_parameter():
    raw = yaml.safe_load((ROOT / "arch_base" / "eyeriss_like.yaml").read_text())
    raw["sparse_optimizations"][0]["when"] = "pe_rows"
    with pytest.raises(SpecError, match="needs 'when: <a bool parameter>'"):
        Template.from_dict(raw, file="t.yaml")


def test_dense_figures_unchanged_and_not_mixed_with_sparse_ones():
    """The native engine's per-process cache keys the densities too: the same layer on the same design
    gives the dense figures without sparsity, Sparseloop's with it, and the dense ones again after."""
    from coopt.backends.network import map_network
    from coopt.design import design_from_template
    from coopt.mapper.options import MapperOptions
    from coopt.workload.networks import Network, get_network

    net = get_network("resnet50")
    layer = next(layer for layer in net.layers if layer.name == "layer2.1.conv2")
    one = Network("one", (layer,))
    d = design_from_template("eyeriss_like", {"ifmap_zero_gating": True}, "row_stationary")
    opts = MapperOptions(metric=("edp",), budget=100, seed=0)
    sparse = {"densities": {layer.name: {"Inputs": {"distribution": "fixed_structured", "density": 0.5}}},
              "targets": load_template("eyeriss_like").sparse_targets({"ifmap_zero_gating": True})}
    dense1 = map_network(one, d.arch, d.tables, d.targets, opts).layers[0]
    sp = map_network(one, d.arch, d.tables, d.targets, opts, sparse=sparse).layers[0]
    dense2 = map_network(one, d.arch, d.tables, d.targets, opts).layers[0]
    assert dense1.eval.energy_pj == dense2.eval.energy_pj and dense1.eval.levels
    assert sp.eval.energy_pj < dense1.eval.energy_pj and sp.eval.levels == []


def test_network_under_sparsity_and_its_files(tmp_path, capsys):
    """``coopt network --sparsity`` with the template's gating: the files --out writes (arch.yaml with the
    sparse optimisations, each layer's problem with its densities, its mapping) give every layer's figures
    again through ``coopt evaluate``."""
    import json
    sp = tmp_path / "sp.yaml"
    sp.write_text("sparsity:\n  densities: {Inputs: 0.5, Weights: 0.5}\n  layers: {conv1: {Inputs: 1.0}}\n")
    out = tmp_path / "net"
    rc = main(["network", "--network", "resnet18", "--set", "ifmap_zero_gating=true", "--sparsity", str(sp),
               "--budget", "100", "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert "sparse_optimizations" in yaml.safe_load((out / "arch.yaml").read_text())
    checked = 0
    for layer in summary["layers"][:4]:
        stem = layer["name"]
        assert main(["evaluate", str(out / "arch.yaml"), str(out / f"{stem}.problem.yaml"),
                     str(out / f"{stem}.map.yaml"), "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["cycles"] == layer["cycles"] and got["energy_pj"] == pytest.approx(layer["energy_pj"], rel=1e-12)
        dens = yaml.safe_load((out / f"{stem}.problem.yaml").read_text())["problem"]["instance"]["densities"]
        assert dens["Inputs"]["density"] == (1.0 if stem == "conv1" else 0.5)
        checked += 1
    assert checked == 4


def test_a_v4_specs_sparse_optimizations_reach_the_design():
    """``coopt network --arch`` on a v4 spec keeps its nodes' sparse optimisations (never dropped)."""
    from coopt.design import load_design
    case = ROOT / "tests" / "data" / "sparseloop" / "04.2.1-eyeriss-like-gating"
    design = load_design(str(case / "v4" / "arch.yaml"), ert=case / "timeloop-mapper.ERT.yaml",
                         art=case / "timeloop-mapper.ART.yaml")
    ref = yaml.safe_load((case / "parsed-processed-input.yaml").read_text())
    assert design.sparse_targets == ref["sparse_optimizations"]["targets"]


def test_arch_command_shows_the_design_options_sparse_optimisations(capsys):
    assert main(["arch", "eyeriss_like", "--set", "ifmap_zero_gating=true"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["sparse_optimizations"]["targets"][0]["name"] == "weights_spad"
    assert main(["arch", "eyeriss_like"]) == 0
    assert "sparse_optimizations" not in yaml.safe_load(capsys.readouterr().out)
    case = ROOT / "tests" / "data" / "sparseloop" / "02.2.1-spMspM"
    assert main(["arch", str(case / "v4" / "arch.yaml")]) == 0
    ref = yaml.safe_load((case / "parsed-processed-input.yaml").read_text())
    assert yaml.safe_load(capsys.readouterr().out)["sparse_optimizations"] == ref["sparse_optimizations"]
