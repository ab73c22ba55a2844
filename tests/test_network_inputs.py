"""A user's own network: folders and lists of Timeloop problem files, ONNX models, transformer layers.

Reference figures: the built-in networks (themselves checked against torchvision's arithmetic in
test_workload.py), MACs counted by hand or from the files' own numbers, and the native model on
the einsum form of a GEMM (the model equals Timeloop on general shapes: test_fidelity.py's 1-D cases).
"""
from __future__ import annotations

import re
import shutil
from math import prod
from pathlib import Path

import pytest

from coopt.cli import main
from coopt.errors import SpecError
from coopt.workload import get_network, mobilenet_v2, resnet18

DATA = Path(__file__).parent / "data" / "layer_shapes"


def same_layers(a, b) -> bool:
    """Same distinct shapes (rank names, projections, bounds, coefficients) with the same counts, in order."""
    return [(l.problem.signature(), l.count) for l in a.layers] == [(l.problem.signature(), l.count) for l in b.layers]


def file_macs(folder: Path) -> int:
    """MACs from the files' instance lines alone (unset ranks are 1, as in problem_base.yaml)."""
    total = 0
    for f in sorted(folder.glob("*.yaml")):
        inst = dict(re.findall(r"(\w+): (\d+)", re.search(r"instance: \{(.*)\}", f.read_text()).group(1)))
        total += prod(int(inst.get(d, 1)) for d in "CMPQRSNG")
    return total


# ------------------------------------------------------------------ Timeloop problem folders
def test_exercises_resnet18_folder_is_the_builtin_resnet18():
    net = get_network(str(DATA / "resnet18"))
    assert same_layers(net, resnet18())
    assert (net.total_layers, len(net.layers), net.macs) == (21, 12, 1_814_073_344) == \
        (resnet18().total_layers, len(resnet18().layers), resnet18().macs)
    assert net.layers[0].members == ("00",) and net.layers[1].members == ("01", "02", "03", "04")
    # HStride: 2 in the file is the stride (its rank is spelt Hstride)
    assert net.layers[0].problem.coefficients["Hstride"] == 2
    assert same_layers(get_network(str(DATA / "resnet18"), batch=3), resnet18(batch=3))


@pytest.mark.parametrize("name, files, unique", [("gpt2", 145, 7), ("vision_transformer", 98, 7)])
def test_exercises_transformer_folders(name, files, unique):
    net = get_network(str(DATA / name))
    assert net.total_layers == files and len(net.layers) == unique
    assert net.macs == file_macs(DATA / name)


def test_list_file_with_counts_and_names(tmp_path):
    shutil.copytree(DATA / "resnet18", tmp_path / "r18")
    shutil.copy(DATA / "problem_base.yaml", tmp_path)
    (tmp_path / "r18" / "net.yaml").write_text(
        "name: two_layers\nlayers:\n  - 00.yaml\n  - {file: 01.yaml, count: 4, name: layer1}\n")
    net = get_network(str(tmp_path / "r18" / "net.yaml"))
    assert net.name == "two_layers" and [(l.members, l.count) for l in net.layers] == [(("00",), 1), (("layer1",), 4)]
    assert net.macs == sum(l.macs for l in resnet18().layers[:2])
    folder = get_network(str(tmp_path / "r18"))            # a folder with a list file follows the list
    assert same_layers(folder, net)


def test_v04_problem_file_and_grouped_rank(tmp_path):
    """A full v0.4 shape with a groups rank G: G independent convolutions, counted."""
    base = (DATA / "problem_base.yaml").read_text()
    (tmp_path / "problem_base.yaml").write_text(base)
    (tmp_path / "dw.yaml").write_text("{{include_text('problem_base.yaml')}}\nproblem:\n  <<<: *problem_base\n"
                                      "  instance: {C: 1, M: 1, P: 56, Q: 56, R: 3, S: 3, G: 144}\n")
    net = get_network(str(tmp_path / "dw.yaml"))
    dw = [l for l in mobilenet_v2().layers if l.problem.bounds["P"] == 56 and l.problem.bounds["R"] == 3
          and l.problem.bounds["C"] == 1 and l.problem.coefficients["Wstride"] == 1]
    assert dw[0].members == ("features.3.depthwise",) and dw[0].count == 144
    assert net.layers[0].count == 144 and net.layers[0].problem.signature() == dw[0].problem.signature()


def _one_line_exit_2(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_unknown_rank_in_a_problem_file(tmp_path, capsys):
    (tmp_path / "problem_base.yaml").write_text((DATA / "problem_base.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text("{{include_text('problem_base.yaml')}}\nproblem:\n  <<<: *problem_base\n  instance: {C: 8, Z: 4}\n")
    _one_line_exit_2(capsys, ["network", "--network", str(bad)], str(bad), "problem.instance.Z", "unknown rank")
    bad.write_text("problem:\n  instance: {C: 8}\n  shape: {name: cnn-layer}\n{% for x in y %}\n")
    _one_line_exit_2(capsys, ["network", "--network", str(bad)], str(bad), "Jinja")


def test_unknown_network_name_lists_the_builtin_ones(capsys):
    _one_line_exit_2(capsys, ["network", "--network", "vgg16"], "resnet50", ".onnx")
    with pytest.raises(SpecError):
        get_network("no/such/folder")
