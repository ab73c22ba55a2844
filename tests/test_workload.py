"""Networks built from block definitions, and Timeloop problem YAML read/write."""
from __future__ import annotations

import copy
import glob
import os

import pytest
import yaml

from coopt.errors import SpecError
from coopt.workload import (NETWORKS, Problem, conv_problem, get_network, problem_from_yaml,
                            problem_to_yaml, resnet18, resnet50)
from coopt.workload.networks import mobilenet_v2
from coopt.workload.yaml_io import load_problem

from reference import REFERENCE as _REF
REFERENCE = str(_REF)
REF_FILES = sorted(glob.glob(os.path.join(REFERENCE, "*", "*", "input.yaml")))


def layer_of(net, member):
    """The distinct-shape entry that the named network layer belongs to."""
    hits = [layer for layer in net.layers if member in layer.members]
    assert len(hits) == 1, member
    return hits[0]


def b(layer):
    return dict(layer.problem.bounds)


def stride(layer):
    return layer.problem.coefficients["Wstride"], layer.problem.coefficients["Hstride"]


# ----------------------------------------------------------------- ResNet-50
def test_resnet50_counts():
    net = resnet50()
    assert net.total_layers == 54
    assert len(net.layers) == 24
    fc = layer_of(net, "fc")
    assert fc.members == ("fc",) and fc.count == 1
    assert net.total_layers - fc.count == 53
    names = [m for layer in net.layers for m in layer.members]
    assert len(names) == len(set(names)) == 54
    assert sum(len(layer.members) for layer in net.layers) == net.total_layers
    assert sum(1 for n in names if n.endswith("downsample")) == 4


def test_resnet50_macs_and_fc():
    net = resnet50()
    assert net.macs == 4_089_184_256
    fc = layer_of(net, "fc")
    assert b(fc) == dict(R=1, S=1, P=1, Q=1, C=2048, M=1000, N=1)
    assert fc.problem.macs == 2_048_000


def test_resnet50_macs_independent_formula():
    """Same total from torchvision's per-stage arithmetic (k*k*Cin*Cout*H*W), written out here."""
    total = 7 * 7 * 3 * 64 * 112 * 112  # stem
    inplanes = 64
    for n, width, hw in ((3, 64, 56), (4, 128, 28), (6, 256, 14), (3, 512, 7)):
        hw_in = 56 if width == 64 else hw * 2
        for i in range(n):
            cin = inplanes if i == 0 else 4 * width
            total += cin * width * (hw_in if i == 0 else hw) ** 2      # 1x1 reduce (before stride)
            total += 9 * width * width * hw * hw                        # 3x3 (carries the stride)
            total += width * 4 * width * hw * hw                        # 1x1 expand
        total += inplanes * 4 * width * hw * hw                         # projection shortcut
        inplanes = 4 * width
    total += 2048 * 1000
    assert resnet50().macs == total


def test_resnet50_conv1_and_v15_stride():
    net = resnet50()
    c1 = layer_of(net, "conv1")
    assert b(c1) == dict(R=7, S=7, P=112, Q=112, C=3, M=64, N=1)
    assert stride(c1) == (2, 2)
    assert net.layers[0] is c1  # first appearance order
    for stage, out in ((2, 28), (3, 14), (4, 7)):
        pre = f"layer{stage}.0"
        conv1, conv2 = layer_of(net, f"{pre}.conv1"), layer_of(net, f"{pre}.conv2")
        ds = layer_of(net, f"{pre}.downsample")
        assert stride(conv1) == (1, 1) and b(conv1)["P"] == out * 2  # v1: stride would be here
        assert stride(conv2) == (2, 2) and b(conv2)["R"] == 3 and b(conv2)["P"] == out
        assert stride(ds) == (2, 2) and b(ds)["R"] == 1 and b(ds)["P"] == out
    assert stride(layer_of(net, "layer1.0.conv2")) == (1, 1)
    assert b(layer_of(net, "layer1.0.downsample"))["M"] == 256


def test_resnet50_dedupe_merges_identical_shapes():
    net = resnet50()
    # layer1.0's projection shortcut is 1x1 64->256 at 56x56, the same shape as its conv3.
    assert layer_of(net, "layer1.0.downsample") is layer_of(net, "layer1.0.conv3")
    l3 = layer_of(net, "layer3.1.conv2")
    assert l3.count == 5 and l3.members == tuple(f"layer3.{i}.conv2" for i in range(1, 6))
    sigs = [layer.problem.signature() for layer in net.layers]
    assert len(set(sigs)) == len(sigs)
    assert all(layer.count == len(layer.members) for layer in net.layers)


def test_resnet50_batch():
    net = resnet50(batch=4)
    assert net.macs == 4 * 4_089_184_256
    assert all(layer.problem.bounds["N"] == 4 for layer in net.layers)
    assert len(net.layers) == 24


# ----------------------------------------------------------------- ResNet-18
def test_resnet18_macs_independent():
    conv1 = 7 * 7 * 3 * 64 * 112 * 112
    layer1 = 4 * (3 * 3 * 64 * 64 * 56 * 56)
    later = 0
    for cin, cout, hw in ((64, 128, 28), (128, 256, 14), (256, 512, 7)):
        later += 3 * 3 * cin * cout * hw * hw        # first 3x3, stride 2
        later += 3 * (3 * 3 * cout * cout * hw * hw)  # three 3x3, stride 1
        later += cin * cout * hw * hw                # 1x1 stride-2 shortcut
    fc = 512 * 1000
    expected = conv1 + layer1 + later + fc
    assert expected == 1_814_073_344
    net = resnet18()
    assert net.macs == expected
    assert layer_of(net, "fc").problem.macs == 512_000
    assert net.total_layers == 21
    assert len(net.layers) == 12  # stem, layer1 3x3, 3 per later stage, fc
    assert not any("layer1.0.downsample" in layer.members for layer in net.layers)


# -------------------------------------------------------------- MobileNetV2
def test_mobilenet_v2_depthwise_as_single_channel_convs():
    net = mobilenet_v2()
    names = [m for layer in net.layers for m in layer.members]
    assert len(names) == 53  # 52 convs + classifier, as in torchvision
    dw = layer_of(net, "features.2.depthwise")  # 96 channels, stride 2, 112 -> 56
    assert b(dw) == dict(R=3, S=3, P=56, Q=56, C=1, M=1, N=1) and stride(dw) == (2, 2)
    assert dw.count == 96 * len(dw.members)
    # independent MAC count: expand (1x1), depthwise (9 per output), project (1x1)
    total, cin, hw = 3 * 3 * 3 * 32 * 112 * 112, 32, 112
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            hidden = cin * t
            expand = cin * hidden * hw * hw if t != 1 else 0
            hw = hw // (s if i == 0 else 1)
            total += expand + 9 * hidden * hw * hw + hidden * c * hw * hw
            cin = c
    total += 320 * 1280 * 7 * 7 + 1280 * 1000
    assert net.macs == total


# ------------------------------------------------------------- get_network
def test_get_network():
    assert set(NETWORKS) >= {"resnet50", "resnet18"}
    assert get_network("ResNet50").macs == resnet50().macs
    assert get_network("resnet18", batch=2).macs == 2 * resnet18().macs
    with pytest.raises(SpecError) as ei:
        get_network("vgg16")
    assert ei.value.key == "network" and "resnet50" in str(ei.value) and "resnet18" in str(ei.value)
    with pytest.raises(SpecError) as ei:
        resnet50(batch=0)
    assert ei.value.key == "batch"


# ------------------------------------------------------- reference YAML files
needs_ref = pytest.mark.skipif(not os.path.isdir(REFERENCE), reason="no reference folder")


@needs_ref
@pytest.mark.parametrize("path", REF_FILES, ids=lambda p: "/".join(p.split("/")[-3:-1]))
def test_reference_problem_parses(path):
    with open(path) as fh:
        raw = yaml.safe_load(fh)["problem"]
    p = problem_from_yaml(raw, file=path)
    shape, inst = raw["shape"], raw["instance"]
    assert p.name == shape["name"] and p.dims == tuple(shape["dimensions"])
    assert [ds.name for ds in p.dataspaces] == [ds["name"] for ds in shape["data_spaces"]]
    assert [ds.read_write for ds in p.dataspaces] == [ds["read_write"] for ds in shape["data_spaces"]]
    for k, v in inst.items():
        if k == "densities":
            continue
        assert (p.bounds[k] if k in p.dims else p.coefficients[k]) == v, k
    assert set(p.bounds) == set(shape["dimensions"])
    # round trip, directly and through a YAML text dump
    assert problem_from_yaml(problem_to_yaml(p)["problem"]) == p
    text = yaml.safe_dump(problem_to_yaml(p))
    assert problem_from_yaml(yaml.safe_load(text)["problem"]) == p
    assert load_problem(path) == p


@needs_ref
def test_reference_conv_equals_conv_problem():
    paths = [p for p in REF_FILES if "eyeriss" in p]
    assert paths
    for path in paths:
        with open(path) as fh:
            inst = dict(yaml.safe_load(fh)["problem"]["instance"])
        inst.pop("densities", None)
        assert load_problem(path) == conv_problem("CNN_Layer", **inst)


@needs_ref
def test_reference_conv1d_projection():
    path = os.path.join(REFERENCE, "model", "00-model-conv1d-1level", "input.yaml")
    p = load_problem(path)
    assert p.dataspace("Inputs").projection == (((None, "R"), (None, "P")),)
    assert p.dataspace_size(p.dataspace("Inputs")) == 3 + 16 - 1
    assert p.macs == 48


# ------------------------------------------------------------- v0.3 forms
@pytest.mark.parametrize("shape", ["cnn-layer", "CNN-Layer", "CNN_Layer", {"name": "CNN-Layer"}])
def test_named_conv_shape(shape):
    node = {"shape": shape, "instance": {"R": 3, "S": 3, "P": 14, "Q": 14, "C": 8, "M": 16,
                                         "Wstride": 2, "Hdilation": 2}}
    p = problem_from_yaml(node)
    assert p == conv_problem(p.name, R=3, S=3, P=14, Q=14, C=8, M=16, Wstride=2, Hdilation=2)
    assert p.bounds["N"] == 1 and p.coefficients["Hstride"] == 1  # defaults
    assert p.name == (shape if isinstance(shape, str) else shape["name"])


def test_legacy_forms_without_instance_or_shape():
    # Timeloop's backwards-compatible form (bounds beside the shape), and no shape at all.
    p = problem_from_yaml({"shape": "cnn-layer", "C": 4, "M": 2})
    assert p.bounds["C"] == 4 and p.bounds["M"] == 2 and p.macs == 8
    q = problem_from_yaml({"instance": {"C": 4, "M": 2}}, name="x")
    assert q == conv_problem("x", C=4, M=2)


def test_array_projection_and_coefficient_override():
    node = {"shape": {"name": "Strided1D", "dimensions": ["R", "P"],
                      "coefficients": [{"name": "S", "default": 1}],
                      "data_spaces": [
                          {"name": "W", "projection": ["R"]},
                          {"name": "I", "projection": [[["R"], ["P", "S"]]]},
                          {"name": "O", "projection": ["P"], "read_write": True}]},
            "instance": {"R": 3, "P": 5, "S": 2}}
    p = problem_from_yaml(node)
    assert p.coefficients == {"S": 2} and p.dataspace("W").projection == (((None, "R"),),)
    assert p.dataspace_size(p.dataspace("I")) == (3 - 1) + 2 * (5 - 1) + 1
    assert p.dataspace("O").read_write and not p.dataspace("W").read_write
    assert problem_from_yaml(problem_to_yaml(p)["problem"]) == p
    del node["instance"]["S"]
    assert problem_from_yaml(node).coefficients == {"S": 1}


# -------------------------------------------------------------- writing
def test_conv_round_trip_and_form():
    p = conv_problem("layer2.0.conv2", R=3, S=3, P=28, Q=28, C=128, M=128, N=2,
                     Wstride=2, Hstride=2, Wdilation=1, Hdilation=3)
    out = problem_to_yaml(p)
    prob = out["problem"]
    assert set(out) == {"problem"} and prob["shape"]["name"] == "CNN_Layer"
    assert prob["shape"]["dimensions"] == ["C", "M", "R", "S", "N", "P", "Q"]
    assert prob["instance"] == {"C": 128, "M": 128, "R": 3, "S": 3, "N": 2, "P": 28, "Q": 28,
                                "Wstride": 2, "Hstride": 2, "Wdilation": 1, "Hdilation": 3}
    inputs = prob["shape"]["data_spaces"][1]
    assert inputs["projection"][2] == [["R", "Wdilation"], ["P", "Wstride"]]
    # Timeloop files carry no layer name: it is given back explicitly.
    assert problem_from_yaml(prob, name=p.name) == p
    q = conv_problem("CNN_Layer", R=5, S=1, P=9, Q=1, C=3, M=7, Wstride=3)
    assert problem_from_yaml(problem_to_yaml(q)["problem"]) == q
    for layer in resnet50().layers:
        assert problem_from_yaml(problem_to_yaml(layer.problem)["problem"],
                                 name=layer.problem.name) == layer.problem


def test_to_yaml_rejects_long_dimension_names():
    p = Problem("x", ("AB",), (), {"AB": 2})
    with pytest.raises(SpecError) as ei:
        problem_to_yaml(p)
    assert ei.value.key == "problem.shape.dimensions"


# ------------------------------------------------------------- bad inputs
def conv1d():
    return copy.deepcopy({
        "version": "0.4",
        "shape": {"name": "Conv1D", "dimensions": ["R", "P"],
                  "data_spaces": [
                      {"name": "Weights", "projection": [[["R"]]], "read_write": False},
                      {"name": "Inputs", "projection": [[["R"], ["P"]]], "read_write": False},
                      {"name": "Outputs", "projection": [[["P"]]], "read_write": True}],
                  "coefficients": []},
        "instance": {"R": 3, "P": 16, "densities": {}}})


def mutate(fn):
    node = conv1d()
    fn(node)
    return node


BAD = [
    ("not-a-mapping", lambda: ["R", 3], "problem"),
    ("unknown-shape-name", lambda: {"shape": "fancy-layer", "instance": {}}, "problem.shape"),
    ("unknown-shape-name-dict", lambda: {"shape": {"name": "LSTM"}, "instance": {}}, "problem.shape.name"),
    ("zero-bound", lambda: {"shape": "cnn-layer", "instance": {"C": 0}}, "problem.instance.C"),
    ("negative-bound", lambda: mutate(lambda n: n["instance"].update(P=-4)), "problem.instance.P"),
    ("float-bound", lambda: mutate(lambda n: n["instance"].update(R=2.5)), "problem.instance.R"),
    ("string-bound", lambda: {"shape": "cnn-layer", "instance": {"M": "64"}}, "problem.instance.M"),
    ("bool-bound", lambda: mutate(lambda n: n["instance"].update(R=True)), "problem.instance.R"),
    ("unknown-instance-key", lambda: mutate(lambda n: n["instance"].update(K=3)), "problem.instance.K"),
    ("unknown-conv-instance-key", lambda: {"shape": "cnn-layer", "instance": {"K": 3}},
     "problem.instance.K"),
    ("bad-stride", lambda: {"shape": "cnn-layer", "instance": {"Wstride": 0}}, "problem.instance.Wstride"),
    ("projection-unknown-dim",
     lambda: mutate(lambda n: n["shape"]["data_spaces"][1].update(projection=[[["R"], ["Q"]]])),
     "problem.shape.data_spaces[1].projection[0][1]"),
    ("projection-unknown-coef",
     lambda: mutate(lambda n: n["shape"]["data_spaces"][1].update(projection=[[["R"], ["P", "Wstride"]]])),
     "problem.shape.data_spaces[1].projection[0][1]"),
    ("projection-long-term",
     lambda: mutate(lambda n: n["shape"]["data_spaces"][0].update(projection=[[["R", "a", "b"]]])),
     "problem.shape.data_spaces[0].projection[0][0]"),
    ("projection-not-list",
     lambda: mutate(lambda n: n["shape"]["data_spaces"][2].update(projection="P")),
     "problem.shape.data_spaces[2].projection"),
    ("dimensions-missing", lambda: mutate(lambda n: n["shape"].pop("dimensions")), "problem.shape.dimensions"),
    ("duplicate-dimension", lambda: mutate(lambda n: n["shape"].update(dimensions=["R", "P", "R"])),
     "problem.shape.dimensions"),
    ("duplicate-dataspace",
     lambda: mutate(lambda n: n["shape"]["data_spaces"][1].update(name="Weights")),
     "problem.shape.data_spaces[1].name"),
    ("bad-read-write", lambda: mutate(lambda n: n["shape"]["data_spaces"][2].update(read_write="maybe")),
     "problem.shape.data_spaces[2].read_write"),
    ("coefficient-without-default",
     lambda: mutate(lambda n: n["shape"].update(coefficients=[{"name": "Wstride"}])),
     "problem.shape.coefficients[0].default"),
    ("unknown-shape-key", lambda: mutate(lambda n: n["shape"].update(flatten=[])), "problem.shape.flatten"),
    ("unknown-problem-key", lambda: mutate(lambda n: n.update(instances={})), "problem.instances"),
    ("instance-not-mapping", lambda: mutate(lambda n: n.update(instance=[3, 16])), "problem.instance"),
    ("sparse-density", lambda: mutate(lambda n: n["instance"].update(densities={"Weights": 0.5})),
     "problem.instance.densities.Weights"),
]


@pytest.mark.parametrize("case,make,key", BAD, ids=[c[0] for c in BAD])
def test_bad_problem_names_key(case, make, key):
    with pytest.raises(SpecError) as ei:
        problem_from_yaml(make(), file="layer.yaml")
    err = ei.value
    assert err.key == key, (case, err.key)
    assert err.file == "layer.yaml" and err.expected
    assert str(err).startswith(f"layer.yaml: {key}: ")


def test_dense_densities_accepted():
    node = mutate(lambda n: n["instance"].update(densities={"Weights": 1.0, "Inputs": {"density": 1}}))
    assert problem_from_yaml(node).bounds == {"R": 3, "P": 16}


def test_load_problem_errors(tmp_path):
    f = tmp_path / "arch.yaml"
    f.write_text("architecture: {}\n")
    with pytest.raises(SpecError) as ei:
        load_problem(str(f))
    assert ei.value.file == str(f) and ei.value.key == "problem"
    g = tmp_path / "bad.yaml"
    g.write_text("problem:\n  shape: cnn-layer\n  instance: {C: -1}\n")
    with pytest.raises(SpecError) as ei:
        load_problem(str(g))
    assert ei.value.file == str(g) and ei.value.key == "problem.instance.C"
