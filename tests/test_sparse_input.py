"""Bad sparse input is one line naming file and key, exit 2; dense input stays dense."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from coopt.cli import main
from coopt.inputs import load_inputs

CASE = Path(__file__).resolve().parent / "data" / "sparseloop" / "01.2.2-SUDU-dot-product"


def _write(tmp_path, edit) -> Path:
    raw = yaml.safe_load((CASE / "parsed-processed-input.yaml").read_text())
    raw.pop("mapping", None)
    edit(raw)
    f = tmp_path / "input.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f


def _evaluate(f, capsys) -> tuple[int, str]:
    rc = main(["evaluate", str(f), str(CASE / "timeloop-mapper.map.yaml"), "--ert",
               str(CASE / "timeloop-mapper.ERT.yaml"), "--art", str(CASE / "timeloop-mapper.ART.yaml"), "--json"])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def _density(value):
    def edit(raw):
        raw["problem"]["instance"]["densities"]["A"]["density"] = value
    return edit


def _leader(raw):
    raw["sparse_optimizations"]["targets"][0]["action_optimization"][0]["options"][0]["condition_on"] = ["Q"]


def _target_level(raw):
    raw["sparse_optimizations"]["targets"][0]["name"] = "GLB"


def _rank(raw):
    raw["sparse_optimizations"]["targets"][0]["representation_format"] = {
        "data_spaces": [{"name": "A", "ranks": [{"format": "CP", "flattened_rankIDs": [["X"]]}]}]}


def _compressed_above_uncompressed(raw):
    raw["sparse_optimizations"]["targets"][0]["representation_format"] = {
        "data_spaces": [{"name": "A", "ranks": [{"format": "CP"}, {"format": "UOP"}]}]}


@pytest.mark.parametrize("edit, key, said", [
    (_density(1.5), "problem.instance.densities.A.density", "a number from 0 to 1"),
    (_density(-0.1), "problem.instance.densities.A.density", "a number from 0 to 1"),
    (_leader, "condition_on[0]", "'Q' is not a tensor of the problem"),
    (_target_level, "sparse_optimizations.targets[0].name", "unknown level 'GLB'"),
    (_rank, "flattened_rankIDs", "rank 'X' does not exist"),
    (_compressed_above_uncompressed, "representation_format.data_spaces[0].ranks",
     "a compressed rank above an uncompressed one"),
])
def test_bad_sparse_input_is_one_line(tmp_path, capsys, edit, key, said):
    f = _write(tmp_path, edit)
    rc, out = _evaluate(f, capsys)
    assert rc == 2
    line = out.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert str(f) in line and key in line and said in line


def test_other_commands_refuse_sparse_input(tmp_path):
    """Commands that do not model sparsity refuse it instead of dropping it."""
    f = _write(tmp_path, _density(0.25))
    with pytest.raises(Exception) as e:
        load_inputs([f, CASE / "timeloop-mapper.map.yaml"])
    assert "density 0.25 is not supported" in str(e.value)
    g = _write(tmp_path, lambda raw: raw["problem"]["instance"].pop("densities"))
    with pytest.raises(Exception) as e:
        load_inputs([g, CASE / "timeloop-mapper.map.yaml"])
    assert "sparse_optimizations" in str(e.value)


def test_dense_input_takes_the_dense_path(tmp_path, capsys):
    """Density 1 and no optimisation: the dense engine's own output, nothing sparse added."""
    def dense(raw):
        raw["problem"]["instance"]["densities"] = {"A": {"distribution": "fixed_structured", "density": 1}}
        raw.pop("sparse_optimizations")
    rc, out = _evaluate(_write(tmp_path, dense), capsys)
    assert rc == 0 and '"reads": 16' in out and "random_read" not in out


def test_sparse_map_writes_a_mapping_evaluate_reproduces(tmp_path, capsys):
    """``coopt map --out`` on a sparse input writes its mapping; ``coopt evaluate`` of it gives the same figures."""
    import json

    f = _write(tmp_path, lambda raw: None)
    ert, art = str(CASE / "timeloop-mapper.ERT.yaml"), str(CASE / "timeloop-mapper.ART.yaml")
    out = tmp_path / "out"
    assert main(["map", str(f), "--ert", ert, "--art", art, "--budget", "50", "--out", str(out)]) == 0
    mapped = json.loads(capsys.readouterr().out)
    assert mapped["macs"] == {"random": 4, "gated": 0, "skipped": 0}
    assert main(["evaluate", str(f), str(out / "coopt-mapper.map.yaml"), "--ert", ert, "--art", art]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["energy_pj"], again["cycles"]) == (mapped["energy_pj"], mapped["cycles"])
    assert json.loads((out / "coopt-mapper.stats.json").read_text())["energy_pj"] == mapped["energy_pj"]
