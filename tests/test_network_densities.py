"""A network's own densities: Timeloop problem files with ``instance.densities`` (coopt issue 18).

References: the real timeloop-model's sparse runs of tests/data/sparse_resnet50 (Timeloop master 4cf6d4c on
ResNet-50 layers with densities, eyeriss_like with ifmap zero gating; test_sparse_resnet50_oracle.py), and the
same densities given the other way, ``--sparsity FILE`` over the dense files (the path the study tests and
those oracles already hold).  The densities a folder's files carry must give the numbers of both.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from coopt.cli import main
from coopt.workload import get_network

ORACLES = Path(__file__).resolve().parent / "data" / "sparse_resnet50" / "gating"
HALF = {"Inputs": {"distribution": "fixed_structured", "density": 0.5},
        "Weights": {"distribution": "fixed_structured", "density": 0.5}}
SHAPES = {"l1": "C: 16, M: 16, R: 3, S: 3, N: 1, P: 8, Q: 8", "l2": "C: 32, M: 16, R: 1, S: 1, N: 1, P: 8, Q: 8"}
RUN = ["network", "--arch", "eyeriss_like", "--set", "ifmap_zero_gating=true", "--budget", "300",
       "--workers", "1", "--json"]


def _folder(path: Path, densities: dict | None) -> Path:
    path.mkdir()
    for name, shape in SHAPES.items():
        doc = {"problem": {"shape": {"name": "CNN-Layer"}, "instance": yaml.safe_load("{" + shape + "}")}}
        if densities:
            doc["problem"]["instance"]["densities"] = densities
        (path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    return path


def _sparsity(path: Path, densities: dict) -> Path:
    path.write_text(yaml.safe_dump({"sparsity": {"densities": densities}}))
    return path


def _layers(capsys, *argv) -> tuple[dict, str]:
    assert main([*RUN, *argv]) == 0
    cap = capsys.readouterr()
    return {l["name"]: (l["energy_pj"], l["cycles"]) for l in json.loads(cap.out)["layers"]}, cap.err


def test_the_files_densities_give_real_timeloops_figures(tmp_path, capsys):
    """The oracles' problem files as one network folder: each layer's densities, as the reader keeps them,
    with the oracle's design and mapping, give the real timeloop-model's cycles and energy."""
    from coopt.workload.yaml_io import problem_to_yaml
    cases = sorted(p.name for p in ORACLES.iterdir() if (p / "oracle.json").is_file())
    folder = tmp_path / "net"
    folder.mkdir()
    for case in cases:
        shutil.copy(ORACLES / case / "prob.yaml", folder / f"{case}.yaml")
    net = get_network(str(folder))
    assert [l.name for l in net.layers] == cases and len(cases) >= 5
    for layer in net.layers:
        c = ORACLES / layer.name
        written = yaml.safe_load((c / "prob.yaml").read_text())["problem"]["instance"]["densities"]
        assert layer.densities == written
        doc = problem_to_yaml(layer.problem)
        doc["problem"]["instance"]["densities"] = layer.densities
        prob = tmp_path / f"{layer.name}.yaml"
        prob.write_text(yaml.safe_dump(doc))
        assert main(["evaluate", str(c / "arch.yaml"), str(prob), str(c / "map.yaml"), "--ert", str(c / "ERT.yaml"),
                     "--art", str(c / "ART.yaml"), "--json"]) == 0
        got, real = json.loads(capsys.readouterr().out), json.loads((c / "oracle.json").read_text())
        assert got["cycles"] == real["cycles"] and got["macs"] == real["macs"], layer.name
        assert got["energy_pj"] == pytest.approx(real["energy_pj"], rel=0.005), layer.name


def test_network_files_densities_equal_the_sparsity_file(tmp_path, capsys):
    sparse, dense = _folder(tmp_path / "sparse", HALF), _folder(tmp_path / "dense", None)
    from_files, err = _layers(capsys, "--network", str(sparse))
    assert not err                                  # one source of densities: nothing to say
    given, _ = _layers(capsys, "--network", str(dense), "--sparsity", str(_sparsity(tmp_path / "h.yaml",
                                                                                    {"Inputs": .5, "Weights": .5})))
    assert from_files == given and set(given) == {"l1", "l2"}
    plain, _ = _layers(capsys, "--network", str(dense))
    assert all(plain[n][1] != given[n][1] for n in given)           # gated MACs: fewer cycles than dense

    # both: --sparsity replaces the files' densities entirely (Inputs is not kept at the files' 0.5)
    weights = _sparsity(tmp_path / "w.yaml", {"Weights": 0.25})
    both, err = _layers(capsys, "--network", str(sparse), "--sparsity", str(weights))
    assert len(err.splitlines()) == 1 and "--sparsity" in err and "replaces" in err and str(sparse) in err
    alone, _ = _layers(capsys, "--network", str(dense), "--sparsity", str(weights))
    merged, _ = _layers(capsys, "--network", str(dense), "--sparsity",
                        str(_sparsity(tmp_path / "m.yaml", {"Inputs": 0.5, "Weights": 0.25})))
    assert both == alone and both != merged


def _edit_l2(folder: Path, edit) -> Path:
    f = folder / "l2.yaml"
    doc = yaml.safe_load(f.read_text())
    edit(doc["problem"]["instance"]["densities"])
    f.write_text(yaml.safe_dump(doc))
    return f


@pytest.mark.parametrize("edit, key, said", [
    (lambda d: d["Inputs"].update(density=1.5), "problem.instance.densities.Inputs.density", "density 1.5"),
    (lambda d: d.update(Input=0.5), "problem.instance.densities.Input", "'Input' is not a tensor"),
    (lambda d: d["Weights"].update(distribution="uniform"), "problem.instance.densities.Weights.distribution",
     "distribution 'uniform'"),
    (lambda d: d["Weights"].update(distribution="banded"), "problem.instance.densities.Weights",
     "not modelled yet: banded"),
])
def test_bad_density_in_a_file_is_one_line(tmp_path, capsys, edit, key, said):
    f = _edit_l2(_folder(tmp_path / "net", HALF), edit)
    assert main([*RUN, "--network", str(f.parent)]) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and str(f) in line and key in line and said in line


GEMM = """problem:
  shape:
    name: gemm_ABZ
    dimensions: [M, N, K, H]
    data_spaces:
    - {name: A, projection: [[[H]], [[M]], [[K]]]}
    - {name: B, projection: [[[H]], [[N]], [[K]]]}
    - {name: Z, projection: [[[H]], [[M]], [[N]]], read_write: true}
  instance: {M: 64, N: 32, K: 16, H: 4, densities: {A: {distribution: DIST, density: 0.5}}}
"""


def test_a_gemms_densities_follow_its_tensors_and_hypergeometric_copies_are_refused(tmp_path, capsys):
    """An einsum GEMM is mapped as the CNN layer with A in the Inputs' place (workload.problem.gemm_problem),
    so A's density is the Inputs'.  Its heads rank makes 4 independent copies: a hypergeometric density
    counts nonzeros in the whole tensor, which no copy holds, so it is refused rather than approximated."""
    f = tmp_path / "mm.yaml"
    f.write_text(GEMM.replace("DIST", "fixed_structured"))
    (layer,) = get_network(str(f)).layers
    assert layer.count == 4 and layer.densities == {"Inputs": {"distribution": "fixed_structured", "density": 0.5}}
    f.write_text(GEMM.replace("DIST", "hypergeometric"))
    assert main([*RUN, "--network", str(f)]) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and str(f) in line and "problem.instance.densities.A" in line
    assert "4 independent copies" in line


def test_one_shape_under_other_densities_is_another_layer(tmp_path):
    """Merged layers share one mapping, so only layers with the same densities merge."""
    folder = _folder(tmp_path / "net", HALF)
    shutil.copy(folder / "l1.yaml", folder / "l3.yaml")
    net = get_network(str(folder))
    assert [(l.name, l.count, l.members) for l in net.layers] == [("l1", 2, ("l1", "l3")), ("l2", 1, ("l2",))]
    doc = yaml.safe_load((folder / "l3.yaml").read_text())
    doc["problem"]["instance"]["densities"]["Inputs"]["density"] = 1.0
    (folder / "l3.yaml").write_text(yaml.safe_dump(doc))
    net = get_network(str(folder))
    assert [(l.name, l.count) for l in net.layers] == [("l1", 1), ("l2", 1), ("l3", 1)]
    assert net.densities["l3"]["Inputs"]["density"] == 1.0 and net.densities["l1"] == HALF
    assert get_network(str(_folder(tmp_path / "dense", None))).densities is None


SPACE = """name: netdens
template: eyeriss_like
dataflow: row_stationary
workload: {network: net}
parameters:
  pe_rows: {type: categorical, choices: [4, 8]}
fixed: {ifmap_zero_gating: true}
mapper: {metric: edp, budget: 150}
objectives:
  - {metric: energy_uj, direction: minimize}
  - {metric: throughput_ips, direction: maximize}
reference_point: {energy_uj: 1.0e+6, throughput_ips: 0}
"""


def test_a_search_space_over_the_folder_takes_its_densities(tmp_path, capsys):
    from coopt.study.space import load_space
    _folder(tmp_path / "net", HALF)
    (tmp_path / "space.yaml").write_text(SPACE)
    space = load_space(tmp_path / "space.yaml")
    assert space.sparsity == {"l1": HALF, "l2": HALF}
    assert not capsys.readouterr().err
    # a sparsity: section replaces them, and says so
    (tmp_path / "own.yaml").write_text(SPACE + "sparsity: {densities: {Weights: 0.25}}\n")
    own = load_space(tmp_path / "own.yaml")
    assert own.sparsity == {n: {"Weights": {"distribution": "fixed_structured", "density": 0.25}} for n in SHAPES}
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "sparsity: replaces the densities" in err


@pytest.mark.ray
@pytest.mark.slow
def test_a_two_trial_search_records_the_files_densities(tmp_path, monkeypatch, capsys):
    _folder(tmp_path / "net", HALF)
    (tmp_path / "space.yaml").write_text(SPACE)
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", "space.yaml", "--trials", "2", "--workers", "1", "--study", "nd",
                 "--sampler", "random", "--seed", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    from coopt.study.records import read_records
    recs = read_records(Path(summary["study_dir"]))
    assert len(recs) == 2 and all(r.feasible for r in recs)
    for r in recs:
        assert [l.problem_yaml["problem"]["instance"]["densities"] for l in r.layers] == [HALF, HALF]
        assert r.arch_yaml.get("sparse_optimizations")
