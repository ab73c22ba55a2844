"""The timeloop engine: reading real Timeloop outputs, and driving the binaries.

The real binaries are not installable here, so command building and output
parsing run against tests/fake_timeloop/, stand-ins that check and log their
arguments and write a RECORDED stats file from tests/reference_data.  A test
with the real binary runs only where timeloop-model is on PATH.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from coopt.backends.timeloop import TimeloopBackend, eval_from_stats
from coopt.backends.timeloop_stats import level_energy_pj, parse_stats, total_energy_pj
from coopt.cli import main
from coopt.errors import BinaryNotFound, CooptError
from coopt.inputs import load_inputs
from coopt.mapper.constraints import constraints_from_inputs
from coopt.model.evaluate import evaluate
from coopt.model.mapping import mapping_from_yaml
from coopt.yamlio import load_yaml
from reference import cases, stats_file

FAKE = Path(__file__).resolve().parent / "fake_timeloop"
ALL = cases("model") + cases("mapper")


def _inputs_and_mapping(case):
    inp = load_inputs([case / "input.yaml"], ert=case / "ERT.yaml", art=case / "ART.yaml")
    if (case / "timeloop-mapper.map.yaml").exists():
        return inp, mapping_from_yaml(load_yaml(case / "timeloop-mapper.map.yaml")["mapping"], inp.arch, inp.problem)
    return inp, inp.mapping()


@pytest.mark.parametrize("case", ALL, ids=lambda p: p.name)
def test_every_reference_stats_file_reads_into_a_result(case):
    stats = parse_stats(stats_file(case))
    inp, mapping = _inputs_and_mapping(case)
    got = eval_from_stats(stats, inp.problem, inp.arch)
    assert got.cycles == stats["cycles"] and got.macs == stats["computes"]
    assert got.energy_pj == pytest.approx(total_energy_pj(stats))
    assert got.utilization == pytest.approx(stats["utilization"])
    # and it is what the native engine computes for the same mapping
    native = evaluate(inp.problem, inp.arch, inp.tables, mapping)
    assert got.cycles == native.cycles
    assert got.energy_pj == pytest.approx(native.energy_pj, rel=1e-4)
    for lvl_native, lvl_tl in zip(native.levels, got.levels):
        if lvl_tl.name in stats["levels"]:
            for ds, counts in lvl_tl.dataspaces.items():
                if counts["reads"] or counts["fills"] or counts["updates"]:
                    for k in ("reads", "fills", "updates"):
                        assert counts[k] == lvl_native.dataspaces[ds][k], (lvl_tl.name, ds, k)
            assert lvl_tl.energy_pj == pytest.approx(level_energy_pj(stats, lvl_tl.name))


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_TIMELOOP_LOG", str(log))
    return log


def _calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_model_command_and_parsing_with_stand_in(fake, monkeypatch):
    case = [c for c in cases("model") if c.name.startswith("06-")][0]
    monkeypatch.setenv("FAKE_TIMELOOP_CASE", str(case))
    inp, mapping = _inputs_and_mapping(case)
    be = TimeloopBackend(bin_dir=str(FAKE))
    got = be.evaluate(inp.problem, inp.arch, inp.tables, mapping)
    assert got.cycles == 5505024
    assert got.energy_pj == pytest.approx(total_energy_pj(parse_stats(stats_file(case))))
    (call,) = _calls(fake)
    assert call["prog"] == "timeloop-model"
    keys = {Path(f).name: k for f, k in call["keys"].items()}
    assert keys == {"arch.yaml": ["architecture"], "components.yaml": ["compound_components"],
                    "problem.yaml": ["problem"], "ERT.yaml": ["ERT"], "ART.yaml": ["ART"], "map.yaml": ["mapping"]}
    assert not Path(call["cwd"]).exists()                  # private working folder, cleaned up
    # a second call gets its own folder (Timeloop cannot share one)
    be.evaluate(inp.problem, inp.arch, inp.tables, mapping)
    a, b = _calls(fake)
    assert a["cwd"] != b["cwd"]


def test_mapper_command_and_parsing_with_stand_in(fake, monkeypatch):
    case = [c for c in cases("mapper") if c.name.startswith("resnet50")][0]
    monkeypatch.setenv("FAKE_TIMELOOP_CASE", str(case))
    inp = load_inputs([case / "input.yaml"], ert=case / "ERT.yaml", art=case / "ART.yaml")
    cons = constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources)
    from coopt.backends.base import MapperOptions
    mapping, ev, seconds = TimeloopBackend(bin_dir=str(FAKE), threads=4).search(
        inp.problem, inp.arch, inp.tables, cons.source, MapperOptions(metric=("delay", "energy"), budget=3000))
    expected = mapping_from_yaml(load_yaml(case / "timeloop-mapper.map.yaml")["mapping"], inp.arch, inp.problem)
    assert mapping.key() == expected.key()
    assert ev.cycles == 688128
    (call,) = _calls(fake)
    mapper_file = [f for f in call["argv"] if f.endswith("mapper.yaml")]
    assert call["keys"][mapper_file[0]] == ["constraints", "mapper"]


def test_failures_are_one_line_errors(fake, monkeypatch, tmp_path, capsys):
    case = [c for c in cases("model") if c.name.startswith("00-")][0]
    monkeypatch.setenv("FAKE_TIMELOOP_CASE", str(case))
    monkeypatch.setenv("FAKE_TIMELOOP_EXIT", "3")
    inp, mapping = _inputs_and_mapping(case)
    with pytest.raises(CooptError, match="exit code 3"):
        TimeloopBackend(bin_dir=str(FAKE)).evaluate(inp.problem, inp.arch, inp.tables, mapping)
    with pytest.raises(BinaryNotFound, match="timeloop-model is not in"):
        TimeloopBackend(bin_dir=str(tmp_path)).evaluate(inp.problem, inp.arch, inp.tables, mapping)
    rc = main(["evaluate", str(case / "input.yaml"), "--engine", "timeloop", "--timeloop-bin", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "Docker" in err and len(err.strip().splitlines()) == 1


def test_cli_evaluate_with_timeloop_engine(fake, monkeypatch, capsys):
    case = [c for c in cases("model") if c.name.startswith("02-model-conv1d+oc-2level_tiling")][0]
    monkeypatch.setenv("FAKE_TIMELOOP_CASE", str(case))
    assert main(["evaluate", str(case / "input.yaml"), "--engine", "timeloop", "--timeloop-bin", str(FAKE),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cycles"] == parse_stats(stats_file(case))["cycles"]


@pytest.mark.skipif(shutil.which("timeloop-model") is None, reason="timeloop-model is not installed here")
def test_real_timeloop_agrees_with_native():
    case = [c for c in cases("model") if c.name.startswith("06-")][0]
    inp, mapping = _inputs_and_mapping(case)
    got = TimeloopBackend().evaluate(inp.problem, inp.arch, inp.tables, mapping)
    native = evaluate(inp.problem, inp.arch, inp.tables, mapping)
    assert got.cycles == native.cycles
    assert got.energy_pj == pytest.approx(native.energy_pj, rel=5e-3)


def test_verify_logs_ratios_against_the_reference(fake, monkeypatch, tmp_path, capsys):
    """coopt verify on a one-layer study whose design and layer are the reference run's."""
    monkeypatch.chdir(tmp_path)
    case = [c for c in cases("mapper") if c.name.startswith("resnet50")][0]
    monkeypatch.setenv("FAKE_TIMELOOP_CASE", str(case))
    from coopt.backends.base import MapperOptions
    from coopt.study.records import write_record
    from coopt.study.runner import study_dir
    from coopt.study.trial import evaluate_design
    from coopt.tracking import StudyTracker
    from coopt.workload.networks import Network, resnet50
    net = Network("conv2x", tuple(l for l in resnet50().layers if l.name == "layer1.0.conv2"))
    objectives = [("energy_uj", "minimize"), ("throughput_ips", "maximize")]
    rec = evaluate_design(0, {"pe_rows": 12}, "eyeriss_like", {"pe_rows": 12}, None, net,
                          MapperOptions(budget=500), {}, objectives)
    sdir = study_dir("v")
    sdir.mkdir(parents=True)
    settings = {"study": "v", "objectives": objectives, "mapper": {"metric": ["edp"], "budget": 500}}
    (sdir / "study.json").write_text(json.dumps({"settings": settings}))
    write_record(sdir, rec)
    tracker = StudyTracker(None, "v", settings, objectives, [1e6, 0])
    tracker.start()
    tracker.log_trial(rec)
    tracker.finish()
    # no Optuna study here: the read side falls back to the record files
    rc = main(["verify", "--study", "v", "--trials", "0", "--engine", "timeloop", "--timeloop-bin", str(FAKE),
               "--no-mapper", "--json"])
    out = json.loads(capsys.readouterr().out)
    ref = parse_stats(case / "timeloop-mapper.stats.txt")
    ratio = total_energy_pj(ref) / rec.layers[0].energy_pj
    assert out[0]["model_energy_ratio"] == pytest.approx(ratio)
    assert out[0]["flagged"] == (abs(ratio - 1) > 0.05 or ref["cycles"] != rec.layers[0].cycles)
    assert rc == (1 if out[0]["flagged"] else 0)
    import mlflow
    run = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
           if r.data.tags.get("coopt.trial") == "0"][0]
    assert run.data.metrics["verify_timeloop_model_energy_ratio"] == pytest.approx(ratio)
    assert run.data.tags["verified_timeloop"] in ("ok", "flagged")
