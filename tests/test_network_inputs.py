"""A user's own network: folders and lists of Timeloop problem files, ONNX models, transformer layers.

Reference figures: the built-in networks (themselves checked against torchvision's arithmetic in
test_workload.py), MACs counted by hand or from the files' own numbers, and the native model on
the einsum form of a GEMM (the model equals Timeloop on general shapes: test_fidelity.py's 1-D cases).
"""
from __future__ import annotations

import re
import shutil
import time
from math import prod
from pathlib import Path

import pytest

from coopt.cli import main
from coopt.errors import SpecError
from coopt.workload import get_network, mobilenet_v2, resnet18, resnet50

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


# ------------------------------------------------------------------ transformer layers map
def _design(name="systolic_ws"):
    from coopt.design import load_design
    return load_design(name)


def _map(problem, design, budget=300):
    from coopt.backends.network import map_layer
    from coopt.mapper.options import MapperOptions
    from coopt.workload.networks import NetworkLayer
    r = map_layer(NetworkLayer(problem.name, problem, 1, (problem.name,)), design.arch, design.tables,
                  design.targets, MapperOptions(metric=("edp",), budget=budget, seed=0))
    assert r.found, r.reason
    return r


def _rename(mapping, keep_dims: list[int], names: dict):
    """The mapping on a problem of fewer ranks (those kept, in that order) and renamed data spaces."""
    from coopt.model.mapping import LevelMapping, Mapping
    pos = {d: i for i, d in enumerate(keep_dims)}
    levels = []
    for lv in mapping.levels:
        for d in range(len(lv.temporal)):
            assert d in pos or (lv.temporal[d] == 1 and lv.spatial[d] == 1)
        xs = [d for d in lv.spatial_permutation[:lv.split] if d in pos]
        levels.append(LevelMapping(lv.target, tuple(lv.temporal[d] for d in keep_dims),
                                   tuple(pos[d] for d in lv.permutation if d in pos),
                                   tuple(lv.spatial[d] for d in keep_dims),
                                   tuple(pos[d] for d in lv.spatial_permutation if d in pos), len(xs),
                                   frozenset(names[k] for k in lv.keep)))
    return Mapping(tuple(levels), tuple(names.get(d, d) for d in [mapping.dims[d] for d in keep_dims]))


def _same_eval(a, b, names: dict):
    assert a.valid and b.valid
    assert a.cycles == b.cycles and a.macs == b.macs
    assert a.energy_pj == pytest.approx(b.energy_pj, rel=1e-12)
    for la, lb in zip(a.levels, b.levels):
        for ds, counts in la.dataspaces.items():
            assert counts == lb.dataspaces[names[ds]], (la.name, ds)


def test_gemm_as_cnn_layer_equals_the_einsum_form():
    """Z[m,n] = A[m,k] B[k,n] written as the CNN layer (C=k, M=n, P=m) gives, for the same loop nest,
    exactly the figures of the einsum form (ranks M, N, K; tensors A, B, Z)."""
    from coopt.backends.native import NativeBackend
    from coopt.workload.problem import DataSpace, Problem, conv_problem
    design = _design()
    conv = conv_problem("qk", C=64, M=128, P=128)
    r = _map(conv, design)
    einsum = Problem("qk", ("K", "N", "M"),
                     (DataSpace("A", (((None, "M"),), ((None, "K"),))),
                      DataSpace("B", (((None, "K"),), ((None, "N"),))),
                      DataSpace("Z", (((None, "M"),), ((None, "N"),)), read_write=True)),
                     {"K": 64, "N": 128, "M": 128}, {}, "einsum")
    names = {"Weights": "B", "Inputs": "A", "Outputs": "Z", "C": "K", "M": "N", "P": "M"}
    cdims = list(conv.dims)
    mapping = _rename(r.mapping, [cdims.index("C"), cdims.index("M"), cdims.index("P")], names)
    native = NativeBackend()
    _same_eval(native.evaluate(conv, design.arch, design.tables, r.mapping),
               native.evaluate(einsum, design.arch, design.tables, mapping), names)


def test_compact_form_equals_the_cnn_layer():
    """Dropping coordinates that only unit ranks index (used for 50,257-column GEMMs) changes no figure."""
    from coopt.backends.native import NativeBackend
    from coopt.workload.problem import compact, conv_problem, move_code_fits
    design = _design()
    conv = conv_problem("fc", C=256, M=512, P=64, N=2)
    assert move_code_fits(conv) and compact(conv) is conv
    r = _map(conv, design)
    small = compact(conv, always=True)
    assert [len(ds.projection) for ds in small.dataspaces] == [2, 3, 3] and small.dims == conv.dims
    same = {k: k for k in ("Weights", "Inputs", "Outputs")}
    native = NativeBackend()
    _same_eval(native.evaluate(conv, design.arch, design.tables, r.mapping),
               native.evaluate(small, design.arch, design.tables, r.mapping), same)
    big = get_network(str(DATA / "gpt2")).layers[-1]                 # the 50,257-word output projection
    assert big.problem.bounds["M"] == 50_257 and not move_code_fits(conv_problem("x", C=1024, M=50_257, P=256))


@pytest.mark.parametrize("name, arch", [("gpt2", "systolic_ws"), ("vision_transformer", "systolic_ws"),
                                        ("gpt2", "eyeriss_like")])
def test_transformer_folders_map_on_the_templates(name, arch, capsys):
    assert main(["network", "--arch", arch, "--network", str(DATA / name), "--budget", "150",
                 "--workers", "1", "--json"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    assert out["feasible"] and out["macs"] == file_macs(DATA / name)
    assert all(layer["energy_pj"] > 0 for layer in out["layers"])


SPACE = """name: {name}
template: systolic_ws
workload: {{network: layer_shapes/{name}}}
parameters:
  pe_rows: {{type: pow2, low: 8, high: 32}}
  pe_cols: {{type: pow2, low: 8, high: 32}}
  glb_kib: {{type: categorical, choices: [64, 256]}}
mapper: {{metric: edp, budget: 60}}
reference_point: {{energy_uj: 1.0e+7, throughput_ips: 0}}
"""


@pytest.mark.parametrize("name", ["gpt2", "vision_transformer"])
def test_transformer_folders_in_a_4_trial_search(name, tmp_path, monkeypatch, capsys):
    """A search space's workload: a folder path beside the space file; the network travels to the Ray
    workers with the task (the workers read no file of the driver's)."""
    import json
    shutil.copytree(DATA, tmp_path / "layer_shapes")
    (tmp_path / "space.yaml").write_text(SPACE.format(name=name))
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", "space.yaml", "--trials", "4", "--workers", "1", "--study", name,
                 "--sampler", "random", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"] == 4 and summary["feasible"] >= 1
    from coopt.study.records import read_records
    records = read_records(Path(summary["study_dir"]))
    assert len(records) == 4 and all(r.metrics["macs"] == file_macs(DATA / name) for r in records)
    assert all(r.network == name and len(r.layers) == 7 for r in records)


# ------------------------------------------------------------------ ONNX models
@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    import onnx_models as om
    d = tmp_path_factory.mktemp("onnx")
    return {"resnet50": om.save(om.resnet50(), d / "resnet50.onnx"),
            "mobilenet_v2": om.save(om.mobilenet_v2(), d / "mobilenet_v2.onnx"),
            "block": om.save(om.transformer_block(), d / "block.onnx")}


def _energies(net, design):
    from coopt.backends.network import map_network
    from coopt.mapper.options import MapperOptions
    r = map_network(net, design.arch, design.tables, design.targets,
                    MapperOptions(metric=("edp",), budget=60, seed=0), workers=1)
    return [(l.count, l.eval.energy_pj, l.eval.cycles) for l in r.layers]


def test_onnx_resnet50_is_the_builtin_resnet50(onnx_files):
    t0 = time.perf_counter()
    net = get_network(onnx_files["resnet50"])
    parse_s = time.perf_counter() - t0
    assert parse_s <= 1.0, parse_s
    assert (net.total_layers, len(net.layers), net.macs) == (54, 24, 4_089_184_256)
    assert same_layers(net, resnet50())
    assert net.layers[0].members == ("conv1",) and "fc" in net.layers[-1].members
    ops = {n.op: (n.count, n.elements) for n in net.not_mapped}
    assert ops["BatchNormalization"][0] == 53 and ops["Add"][0] == 16 and ops["Relu"][0] == 49
    assert ops["MaxPool"] == (1, 64 * 56 * 56 * 9) and ops["GlobalAveragePool"] == (1, 2048 * 7 * 7)
    design = _design()
    assert _energies(net, design) == _energies(resnet50(), design)
    assert same_layers(get_network(onnx_files["resnet50"], batch=2), resnet50(batch=2))


def test_onnx_mobilenet_v2_is_the_builtin_mobilenet_v2(onnx_files):
    net = get_network(onnx_files["mobilenet_v2"])
    ref = mobilenet_v2()
    assert same_layers(net, ref) and net.macs == ref.macs == 300_774_272
    assert net.total_layers == ref.total_layers
    assert _energies(net, _design()) == _energies(ref, _design())


def test_onnx_transformer_block_hand_count(onnx_files, capsys):
    s, d, h, ff = 128, 256, 4, 1024
    projections = 4 * s * d * d                   # Q, K, V and the output projection
    attention = 2 * h * s * s * (d // h)          # QK^T (an Einsum) and AV (a batched MatMul), per head
    mlp = 2 * s * d * ff
    net = get_network(onnx_files["block"], input_shapes={"x": (1, s, d)})
    assert net.macs == projections + attention + mlp == 109_051_904
    assert [(l.name, l.count) for l in net.layers] == [("q_proj", 4), ("scores", h), ("attention_v", h),
                                                       ("mlp_up", 1), ("mlp_down", 1)]
    assert net.layers[1].problem.bounds == dict(C=d // h, M=s, P=s, R=1, S=1, Q=1, N=1)
    ops = {n.op: (n.count, n.elements) for n in net.not_mapped}
    assert ops["Softmax"] == (1, h * s * s) and ops["LayerNormalization"] == (2, 2 * s * d)
    assert main(["network", "--arch", "systolic_ws", "--network", onnx_files["block"], "--input-shape",
                 f"x=1x{s}x{d}", "--budget", "100", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{projections + attention + mlp:,} MACs" in out
    assert "not mapped (outside the totals): 14 nodes" in out and "Softmax" in out
    # --batch sizes a dynamic batch like --input-shape does
    assert get_network(onnx_files["block"], batch=2, input_shapes={"x": (2, s, d)}).macs == 2 * net.macs


def _model(tmp_path, name, build):
    import onnx_models as om
    g = om.Graph(name, {"x": [1, 8, 20, 20]})
    return om.save(g.model(build(g)), tmp_path / f"{name}.onnx")


def test_onnx_conv_kinds_and_what_is_not_mapped(tmp_path):
    f = _model(tmp_path, "kinds", lambda g: g.op("ConvTranspose", [g.op(
        "Conv", ["x", g.weight("w", [16, 2, 3, 3])], "grouped", kernel_shape=[3, 3], group=4, strides=[2, 2],
        dilations=[2, 2], pads=[2, 2, 2, 2]), g.weight("wt", [16, 4, 4, 4])], "up", kernel_shape=[4, 4],
        strides=[2, 2], pads=[1, 1, 1, 1]))
    net = get_network(f)
    grouped, up = net.layers
    assert grouped.count == 4 and grouped.problem.bounds == dict(R=3, S=3, P=10, Q=10, C=2, M=4, N=1)
    assert grouped.problem.coefficients == dict(Wstride=2, Hstride=2, Wdilation=2, Hdilation=2)
    assert up.problem.macs == 16 * 4 * 10 * 10 * 4 * 4 and up.problem.dataspaces[2].projection[2] == \
        (("Wdilation", "R"), ("Wstride", "P"))
    assert _map(up.problem, _design(), budget=100).eval.macs == up.problem.macs   # the template holds it
    f = _model(tmp_path, "einsum", lambda g: g.op("Einsum", [g.op("Conv", ["x", g.weight("w", [8, 8, 1, 1])],
                                                                   "c", kernel_shape=[1, 1]),
                                                            g.weight("v", [1, 8])],
                                                   "pool_dot", equation="nchw,nc->n"))
    net = get_network(f)
    assert [(n.op, n.count) for n in net.not_mapped] == [("Einsum", 1)]
    assert net.not_mapped[0].reason.startswith("pool_dot: ") and "summed within one operand" in \
        net.not_mapped[0].reason


def test_weights_are_skipped_not_loaded(tmp_path):
    """Inline weights are skipped (their bytes never parsed): the same network as with external data."""
    import onnx_models as om
    inline = om.save(om.transformer_block(batch=1, weights_inline=True), tmp_path / "inline.onnx")
    external = om.save(om.transformer_block(batch=1), tmp_path / "external.onnx")
    assert Path(inline).stat().st_size > 2_000_000
    assert same_layers(get_network(inline), get_network(external))
    from coopt.workload.onnx_read import read_model_shapes_only
    model, weights = read_model_shapes_only(inline)
    assert {"Wq", "W1", "W2"} <= weights and not any(t.raw_data for t in model.graph.initializer
                                                    if t.name in weights)


def test_bad_onnx_inputs_are_one_line(tmp_path, capsys, onnx_files):
    import onnx_models as om
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    _one_line_exit_2(capsys, ["network", "--network", str(text)], str(text), "not an ONNX model")
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(bytes(range(256)) * 4)
    _one_line_exit_2(capsys, ["network", "--network", str(noise)], str(noise), "not an ONNX model")
    future = om.save(om.resnet50(opset=99), tmp_path / "future.onnx")
    _one_line_exit_2(capsys, ["network", "--network", future], future, "opset_import", "opset 99")
    _one_line_exit_2(capsys, ["network", "--network", onnx_files["block"]], onnx_files["block"],
                     "--input-shape", "input 'x' has a dynamic shape (batchx128x256)")
    _one_line_exit_2(capsys, ["network", "--network", onnx_files["block"], "--input-shape", "y=1x2"],
                     "no input named 'y'")
    _one_line_exit_2(capsys, ["network", "--network", onnx_files["block"], "--input-shape", "x=1xax2"],
                     "--input-shape")
    _one_line_exit_2(capsys, ["network", "--network", "resnet50", "--input-shape", "x=1x3"], "--input-shape")


# ------------------------------------------------------------------ what was modelled, everywhere
def test_trial_record_mlflow_run_and_export_name_what_was_not_mapped(onnx_files, tmp_path, monkeypatch):
    """A study's trial on an ONNX model: its record, its MLflow run (real sqlite store) and its export
    summary say which operations the totals leave out."""
    import json

    from mlflow.tracking import MlflowClient

    from coopt.export import export_trials
    from coopt.mapper.options import MapperOptions
    from coopt.study.records import read_records, write_record
    from coopt.study.trial import evaluate_design
    from coopt.tracking import StudyTracker, default_tracking_uri
    monkeypatch.chdir(tmp_path)
    net = get_network(onnx_files["block"], input_shapes={"x": (1, 128, 256)})
    objectives = [("energy_uj", "minimize"), ("throughput_ips", "maximize")]
    rec = evaluate_design(0, {"pe_rows": 16}, "systolic_ws", {"pe_rows": 16}, None, net,
                          MapperOptions(budget=60), {}, objectives)
    assert rec.feasible and rec.metrics["macs"] == 109_051_904
    assert rec.metrics["ops_not_mapped"] == 14 and rec.metrics["elements_not_mapped"] == 589_824
    assert {n["op"]: n["count"] for n in rec.not_mapped}["Softmax"] == 1
    study = tmp_path / "study"
    write_record(study, rec)
    assert read_records(study)[0].not_mapped == rec.not_mapped                 # survives the record file
    (study / "study.json").write_text(json.dumps({"settings": {"budgets": {}, "objectives": objectives}}))
    tracker = StudyTracker(None, "byon", {"study": "byon", "objectives": objectives}, objectives, [1e6, 0.0])
    tracker.start()
    tracker.log_trial(rec)
    tracker.finish()
    c = MlflowClient(default_tracking_uri())
    run = c.search_runs([c.get_experiment_by_name("coopt/byon").experiment_id], "tags.`coopt.role` = 'trial'")[0]
    assert "Not mapped (outside the totals): LayerNormalization x2 (65,536 element ops)" in \
        run.data.tags["mlflow.note.content"]
    assert run.data.metrics["ops_not_mapped"] == 14 and run.data.metrics["macs"] == 109_051_904
    folder = export_trials(study, [0], tmp_path / "export")[0]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["not_mapped"] == rec.not_mapped and summary["metrics"]["ops_not_mapped"] == 14
    assert "Not mapped (outside the totals): LayerNormalization x2" in (folder / "summary.md").read_text()


def test_search_space_workload_takes_models_and_refuses_bad_ones(onnx_files, tmp_path, capsys):
    from coopt.study.space import load_space
    shutil.copy(onnx_files["block"], tmp_path / "block.onnx")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(name="x").replace("layer_shapes/x", "block.onnx, input_shape: {x: 1x128x256}"))
    net = load_space(str(space)).network
    assert net.macs == 109_051_904 and net.source == str(tmp_path / "block.onnx")
    space.write_text(SPACE.format(name="x").replace("layer_shapes/x", "block.onnx"))
    _one_line_exit_2(capsys, ["search", "--space", str(space), "--trials", "1"], str(tmp_path / "block.onnx"),
                     "dynamic shape")
    space.write_text(SPACE.format(name="x").replace("layer_shapes/x", "missing.onnx"))
    _one_line_exit_2(capsys, ["search", "--space", str(space), "--trials", "1"], str(tmp_path / "missing.onnx"),
                     "no such file")


GEMM_ABZ = """problem:
  version: 0.4
  instance: {K: 512, M: 1024, N: 256, H: 4}
  shape:
    name: gemm_ABZ
    dimensions: [M, N, K, H]
    data_spaces:
    - {name: A, projection: [[[H]], [[M]], [[K]]]}
    - {name: B, projection: [[[H]], [[N]], [[K]]]}
    - {name: Z, projection: [[[H]], [[M]], [[N]]], read_write: true}
"""


def test_einsum_style_problem_file_is_a_gemm(tmp_path, capsys, monkeypatch):
    """The exercises' MM/ form (dense here), with a heads rank H: four M x K x N products."""
    from coopt.workload.problem import gemm_problem
    (tmp_path / "mm.yaml").write_text(GEMM_ABZ)
    net = get_network(str(tmp_path / "mm.yaml"))
    assert [(l.problem.signature(), l.count) for l in net.layers] == [(gemm_problem("x", 1024, 512, 256).signature(), 4)]
    assert net.macs == 4 * 1024 * 512 * 256
    # N summed within A alone: no plain contraction, so no CNN layer; the template's constraints say so
    (tmp_path / "odd.yaml").write_text(GEMM_ABZ.replace("[[[H]], [[M]], [[N]]]", "[[[H]], [[M]]]")
                                       .replace("[[[H]], [[N]], [[K]]]", "[[[H]], [[K]]]")
                                       .replace("{name: A, projection: [[[H]], [[M]], [[K]]]}",
                                                "{name: A, projection: [[[H]], [[M]], [[K]], [[N]]]}"))
    (tmp_path / "list.yaml").write_text("layers: [mm.yaml, odd.yaml]\n")
    _one_line_exit_2(capsys, ["network", "--arch", "systolic_ws", "--network", str(tmp_path / "list.yaml")],
                     "layer odd", "cannot be held by this design's constraints", "unknown dimension")
    # a search space over that network is refused when it is read, before a study exists (was: every trial failed)
    space = tmp_path / "space.yaml"
    space.write_text(f"template: systolic_ws\nworkload: {{network: {tmp_path / 'list.yaml'}}}\n"
                     "parameters: {glb_kib: {type: pow2, low: 64, high: 256}}\n"
                     "reference_point: {energy_uj: 1.0e+9}\n")
    monkeypatch.chdir(tmp_path)
    err = _one_line_exit_2(capsys, ["search", "--space", str(space), "--study", "odd", "--trials", "1"],
                           str(space), "workload.network", "layer odd", "cannot be held", "unknown dimension")
    assert not (tmp_path / "mlruns").exists() and not list(tmp_path.glob("studies*")), err
    # the same space over the mm layer alone is accepted (the check names only what cannot be held)
    from coopt.study.space import load_space
    space.write_text(space.read_text().replace(str(tmp_path / "list.yaml"), str(tmp_path / "mm.yaml")))
    assert load_space(str(space)).network.layers[0].count == 4


def test_node_names_with_slashes_write_plain_files(tmp_path, capsys):
    """torch.onnx names nodes like /layer1/conv/Conv: --out writes them as plain file names, in the folder."""
    f = _model(tmp_path, "slash", lambda g: g.op("Conv", ["x", g.weight("w", [16, 8, 3, 3])], "/layer1/conv/Conv",
                                                 kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    assert get_network(f).layers[0].members == ("/layer1/conv/Conv",)
    out = tmp_path / "out"
    assert main(["network", "--arch", "systolic_ws", "--network", f, "--budget", "60", "--workers", "1",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["_layer1_conv_Conv.map.yaml", "arch.yaml", "summary.json"]
