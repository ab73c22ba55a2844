"""Search-space files: the shipped ones load, bad ones fail in one line naming the key (exit 2)."""
from __future__ import annotations

import pytest
import yaml

from coopt.cli import main
from coopt.study.space import load_space

SPACES = ["search_spaces/edge.yaml", "search_spaces/tiny.yaml"]


def _root():
    from pathlib import Path
    return Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("rel", SPACES)
def test_shipped_spaces_load(rel):
    s = load_space(_root() / rel)
    assert s.objectives[:2] == [("energy_uj", "minimize"), ("throughput_ips", "maximize")]
    assert len(s.reference) == len(s.objectives)
    assert s.template.name == "eyeriss_like" and s.dataflow == "row_stationary"
    assert s.budgets and s.reference[1] == 0.0


def test_tiny_is_enumerable_and_edge_is_eyeriss_scale():
    tiny = load_space(_root() / "search_spaces/tiny.yaml")
    assert tiny.size() == 4 * 4 * 4 * 2
    assert len(tiny.network.layers) == 2
    edge = load_space(_root() / "search_spaces/edge.yaml")
    rows = {p.name: p for p in edge.params}
    assert rows["pe_rows"].high * rows["pe_cols"].high <= 256          # around Eyeriss' 168 PEs
    assert edge.budgets["onchip_kib"] <= 160 and edge.budgets["area_mm2"] <= 5
    assert edge.network.name == "resnet50"
    # pow2 domains are powers of two within the bounds
    assert rows["glb_depth"].values() == [1024, 2048, 4096, 8192, 16384]


def _tiny_dict():
    return yaml.safe_load((_root() / "search_spaces/tiny.yaml").read_text())


BAD = {
    "unknown parameter": (lambda d: d["parameters"].__setitem__("pe_depth", {"type": "int", "low": 1, "high": 2}),
                          "parameters.pe_depth"),
    "empty int domain": (lambda d: d["parameters"].__setitem__("pe_rows", {"type": "int", "low": 9, "high": 3}),
                         "empty domain"),
    "empty pow2 domain": (lambda d: d["parameters"].__setitem__("glb_depth", {"type": "pow2", "low": 1100,
                                                                              "high": 2000}), "power of two"),
    "empty choices": (lambda d: d["parameters"].__setitem__("word_bits", {"type": "categorical", "choices": []}),
                      "parameters.word_bits.choices"),
    "value outside template range": (lambda d: d["parameters"].__setitem__("pe_rows", {"type": "int", "low": 4,
                                                                                      "high": 400}), "256"),
    "budget with wrong unit": (lambda d: d["budgets"].__setitem__("area_um2", 3000000), "budgets.area_um2"),
    "budget not a number": (lambda d: d["budgets"].__setitem__("power_mw", "350 mW"), "budgets.power_mw"),
    "unknown objective": (lambda d: d.__setitem__("objectives", [{"metric": "speed", "direction": "maximize"}]),
                          "objectives[0].metric"),
    "bad direction": (lambda d: d.__setitem__("objectives", [{"metric": "energy_uj", "direction": "down"}]),
                      "objectives[0].direction"),
    "unknown template": (lambda d: d.__setitem__("template", "tpu_v9"), "template"),
    "unknown dataflow": (lambda d: d.__setitem__("dataflow", "output_stationary"), "dataflow"),
    "unknown layer": (lambda d: d["workload"].__setitem__("layers", ["layer9.conv"]), "workload.layers"),
    "unknown top key": (lambda d: d.__setitem__("budget", {}), "budget"),
    "mapper budget": (lambda d: d["mapper"].__setitem__("budget", 0), "mapper.budget"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_space_one_line_exit_2(name, tmp_path, capsys):
    d = _tiny_dict()
    mutate, must = BAD[name]
    mutate(d)
    f = tmp_path / "space.yaml"
    f.write_text(yaml.safe_dump(d))
    rc = main(["search", "--space", str(f), "--trials", "1", "--study", "never-started"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert must in err and "space.yaml" in err
    assert not (tmp_path / "mlruns").exists()


def test_unknown_sampler_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["search", "--space", str(_root() / "search_spaces/tiny.yaml"), "--trials", "1", "--sampler", "cmaes"])
    err = capsys.readouterr().err
    assert rc == 2 and "cmaes" in err and "nsga2" in err


def test_gp_sampler_without_torch_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import importlib.util
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here")
    monkeypatch.chdir(tmp_path)
    rc = main(["search", "--space", str(_root() / "search_spaces/tiny.yaml"), "--trials", "1", "--sampler", "gp"])
    err = capsys.readouterr().err
    assert rc == 2 and "PyTorch" in err
