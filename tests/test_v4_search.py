"""Searching a user's own timeloopfe v4 spec (issue 16, item 4).

A search space names a spec (``spec:``) instead of a built-in template; its
parameters are the spec's ``variables:`` and the top file's Jinja2 variables.
The spec travels to workers as data, the whole service runs on the shipped
``simba_v4`` space, and each exported design is a v4 spec that coopt's own v4
reader evaluates to the trial's numbers.  The real tools (timeloop-model,
timeloopfe) are run only where they are on PATH.
"""
from __future__ import annotations

import json
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from coopt.cli import main

ROOT = Path(__file__).resolve().parents[1]
SIMBA = ROOT / "search_spaces" / "simba_v4.yaml"

SPEC = """\
architecture:
  version: 0.4
  nodes:
  - !Container {name: system, attributes: {technology: tech, global_cycle_seconds: 1e-9, datawidth: 8}}
  - !Component {name: DRAM, class: DRAM, attributes: {type: "LPDDR4", width: 64, datawidth: 8}}
  - !Component
    name: glb
    class: smartbuffer_SRAM
    attributes: {depth: glb_depth, width: 64, datawidth: 8}
    constraints: {dataspace: {keep: [Inputs, Outputs, Weights]}}
  - !Container
    name: PE
    spatial: {meshX: pes}
    constraints: {spatial: {factors: [R=1, S=1, P=1, Q=1, N=1, C=1]}}
  - !Component {name: reg, class: regfile, attributes: {depth: 64, width: 8, datawidth: 8}}
  - !Component {name: mac, class: intmac, attributes: {multiplier_width: 8, adder_width: 16}}
"""
TOP = """\
{% set glb_rows = glb_rows | default(1024) %}
variables:
  version: 0.4
  pes: 4                 # PEs
  tech: "45nm"
  glb_depth: {{glb_rows}}
architecture: {{include('arch.yaml', 'architecture')}}
mapper: {optimization_metrics: [delay, energy]}
"""
SPACE = """\
spec: {spec}
workload: {{network: resnet18, layers: [layer4.0.conv2]}}
parameters:
  pes: {{type: pow2, low: 4, high: 16}}
  glb_rows: {{type: int, low: 512, high: 2048, step: 512}}
  tech: {{type: categorical, choices: ["45nm", "32nm"]}}
mapper: {{budget: 50}}
reference_point: {{energy_uj: 1e9}}
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every study of these tests lives in the test's own folder (never the checkout's mlruns/)."""
    monkeypatch.chdir(tmp_path)


def _spec(tmp_path: Path) -> Path:
    d = tmp_path / "my_design"
    d.mkdir()
    (d / "arch.yaml").write_text(SPEC)
    (d / "top.yaml.jinja2").write_text(TOP)
    return d


def _space(tmp_path, spec="my_design/top.yaml.jinja2", extra="") -> Path:
    f = tmp_path / "space.yaml"
    f.write_text(SPACE.format(spec=spec) + extra)
    return f


def test_parameters_bind_to_the_specs_variables_and_jinja_variables(tmp_path):
    from coopt.design import design_from_template
    from coopt.study.space import load_space

    _spec(tmp_path)
    space = load_space(_space(tmp_path))
    t = space.template
    assert t.variables == ("pes", "tech", "glb_depth") and t.jinja_names == ("glb_rows",)
    assert space.mapper.metric == ("delay", "energy")          # the spec's own mapper metric, as coopt map
    f = tmp_path / "space.yaml"
    f.write_text(f.read_text().replace("mapper: {budget: 50}", "mapper: {budget: 50, metric: energy}"))
    assert load_space(f).mapper.metric == ("energy",)             # ... unless the space names one
    d = design_from_template(t, space.template_params({"pes": 16, "glb_rows": 1536, "tech": "32nm"}))
    glb = next(s for s in d.arch.storage if s.name == "glb")
    assert d.arch.arithmetic.instances == 16 and glb.depth == 1536
    assert d.arch_yaml["architecture"]["subtree"][0]["attributes"]["technology"] == "32nm"
    # the inline constraints hold in the trial: the PE fan-out's spatial factors
    assert any(tg.get("type") == "spatial" and "C=1" in str(tg.get("factors")) for tg in d.targets)
    d4 = design_from_template(t, {"pes": 4, "glb_rows": 512, "tech": "45nm"})
    assert d4.arch.arithmetic.instances == 4 and next(s for s in d4.arch.storage if s.name == "glb").depth == 512


def test_the_spec_travels_as_data(tmp_path):
    """A worker that cannot read the driver's disk: the spec's folder is gone, the pickled template still
    builds the same design."""
    from coopt.arch import spec_template
    from coopt.design import design_from_template
    from coopt.study.space import load_space

    folder = _spec(tmp_path)
    space = load_space(_space(tmp_path))
    values = {"pes": 8, "glb_rows": 1024, "tech": "45nm"}
    before = design_from_template(space.template, values)
    sent = pickle.dumps(space.template)
    shutil.rmtree(folder)
    spec_template._RESTORED.clear()          # a fresh worker process: nothing restored yet
    after = design_from_template(pickle.loads(sent), values)
    assert after.arch_yaml == before.arch_yaml and after.targets == before.targets
    # as a trial record keeps it (JSON), for export and verify
    from coopt.arch.spec_template import SpecTemplate
    kept = SpecTemplate.from_json(json.loads(json.dumps(before.spec)))
    assert design_from_template(kept, values).arch_yaml == before.arch_yaml


@pytest.mark.parametrize("edit, key, message", [
    ("  nope: {type: int, low: 1, high: 2}\n", "parameters.nope", "no variable 'nope' in the spec"),
    ("dataflow: row_stationary\n", "dataflow", "a v4 spec's dataflow is its inline constraints"),
    ("template: eyeriss_like\n", "spec", "both 'template' and 'spec' given"),
    ("fixed: {pes: 3}\n", None, "pes"),
])
def test_bad_spaces_are_one_line(tmp_path, capsys, edit, key, message):
    _spec(tmp_path)
    text = SPACE.format(spec="my_design/top.yaml.jinja2")
    if edit.startswith("  nope"):
        text = text.replace("parameters:\n", "parameters:\n" + edit)
        text_space = tmp_path / "space.yaml"
        text_space.write_text(text)
    elif edit.startswith("fixed"):
        text_space = _space(tmp_path, extra=edit.replace("pes", "tech").replace("3", '"3nm"'))
        text_space.write_text(text_space.read_text().replace('  tech: {type: categorical, choices: ["45nm", "32nm"]}\n',
                                                             ""))
    else:
        text_space = _space(tmp_path, extra=edit)
    rc = main(["search", "--space", str(text_space), "--trials", "1", "--study", "bad"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    if key:
        assert str(text_space) in err and key in err and message in err, err
    else:                                    # a value the estimators refuse: found before any trial
        assert str(text_space) in err and "3 nm is outside" in err and "trials keep failing" not in err, err


def test_missing_spec_file_is_one_line(tmp_path, capsys):
    rc = main(["search", "--space", str(_space(tmp_path, spec="nowhere/top.yaml.jinja2")), "--trials", "1",
               "--study", "bad"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "no such spec file" in err and "spec" in err, err


def test_written_spec_sets_variables_in_place_and_jinja_at_the_top(tmp_path):
    from coopt.arch.v4_spec import load_spec
    from coopt.export.v4 import written_spec
    from coopt.study.space import load_space

    _spec(tmp_path)
    t = load_space(_space(tmp_path)).template
    files = written_spec(t, {"pes": 16, "glb_rows": 2048, "tech": "32nm"})
    top = files["top.yaml.jinja2"]
    assert "  pes: 16                 # PEs\n" in top and '  tech: "32nm"\n' in top
    assert top.splitlines()[1] == "{% set glb_rows = 2048 %}"
    out = tmp_path / "written"
    for rel, text in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    raw, _ = load_spec([out / "top.yaml.jinja2"], size_one_dims=False)      # as is: no --var, no --set
    expected, _ = t.load({"pes": 16, "glb_rows": 2048, "tech": "32nm"})
    assert raw == expected


def _layer_numbers(folder: Path, rec):
    """Per layer: (cycles, energy) from the exported v4 spec read back by coopt's v4 reader, and from the
    processed file."""
    from coopt.arch.spec_template import SpecTemplate
    from coopt.export.design import safe_name
    from coopt.export.v4 import layer_inputs
    from coopt.inputs import load_inputs
    from coopt.model.evaluate import evaluate

    t = SpecTemplate.from_json(rec.spec)
    out = []
    for layer in rec.layers:
        stem = safe_name(layer.name)
        files, jinja = layer_inputs(t, stem)
        inp = load_inputs([folder / "v4" / f for f in files], variables=jinja)
        spec_eval = evaluate(inp.problem, inp.arch, inp.tables, inp.mapping())
        proc = load_inputs([folder / "v4" / "processed" / f"{stem}.yaml"])
        proc_eval = evaluate(proc.problem, proc.arch, proc.tables, proc.mapping())
        out.append((layer, spec_eval, proc_eval))
    return out


@pytest.mark.ray
@pytest.mark.slow
def test_the_whole_service_on_the_shipped_v4_space(tmp_path, monkeypatch, capsys):
    """Ray workers, MLflow runs and the front, export: 4 trials of search_spaces/simba_v4.yaml."""
    import csv

    import mlflow

    from coopt.study.records import read_record
    from coopt.study.runner import study_dir

    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", str(SIMBA), "--trials", "4", "--workers", "2", "--sampler", "random",
                 "--study", "v4", "--seed", "2", "--json"]) == 0
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    trials = [r for r in runs if r.data.tags.get("coopt.role") == "trial"]
    parent = [r for r in runs if r.data.tags.get("coopt.role") == "parent"]
    assert len(trials) == 4 and len(parent) == 1 and parent[0].info.status == "FINISHED"
    for r in trials:
        assert {"n_pes", "vector_width", "glb_kib", "pe_weight_depth", "word_bits"} <= set(r.data.params)
        assert r.data.params["template"] == "simba_v4"
    front_csv = mlflow.artifacts.download_artifacts(run_id=parent[0].info.run_id, artifact_path="pareto/front.csv",
                                                    dst_path=str(tmp_path / "dl"))
    with open(front_csv) as f:
        front = sorted(int(row["trial"]) for row in csv.DictReader(f))
    assert front, "no feasible design in 4 trials"
    # the front page coopt ui serves: the same front, each point linked to its trial run
    from coopt.tracking.front_page import front_page, read_front
    data = read_front(mlflow.MlflowClient(), "v4", parent[0].info.experiment_id)
    assert sorted(p.number for p in data.front) == front
    page = front_page(data, "http://mlflow")
    assert all(f"/runs/{r.info.run_id}" in page for r in trials if int(r.data.tags["coopt.trial"]) in front)
    capsys.readouterr()
    assert main(["export", "--study", "v4", "--pareto", "--out", "exp"]) == 0
    for n in front:
        rec = read_record(study_dir("v4"), n)
        assert rec.spec and rec.template_params == {**rec.params}
        folder = tmp_path / "exp" / f"trial-{n}"
        arch = (folder / "v4" / "spec" / "arch.yaml").read_text()
        for k, v in rec.params.items():          # the chosen values are written in, as is
            assert f"\n  {k}: {v}" in arch, (k, v)
        for layer, spec_eval, proc_eval in _layer_numbers(folder, rec):
            assert layer.found
            assert spec_eval.cycles == proc_eval.cycles == layer.cycles
            assert spec_eval.energy_pj == pytest.approx(layer.energy_pj, rel=1e-9)
            assert proc_eval.energy_pj == pytest.approx(layer.energy_pj, rel=1e-9)
        if shutil.which("timeloop-model") is None:        # the real tools are not here: the script says so
            res = subprocess.run([str(folder / "v4" / "run_v4.sh")], capture_output=True, text=True,
                                 env={"PATH": "/usr/bin:/bin"})
            assert res.returncode == 2 and "timeloop-model not found" in res.stderr


@pytest.mark.skipif(not (shutil.which("timeloop-model") and shutil.which("accelergy")),
                    reason="needs the real timeloop-model and accelergy on PATH (not installed in CI)")
def test_real_timeloop_accepts_the_exported_v4_spec(tmp_path):
    """timeloop-model on every processed file, and timeloopfe on the spec itself, give coopt's cycles."""
    from coopt.backends.base import MapperOptions
    from coopt.export import export_trials
    from coopt.study.records import write_record
    from coopt.study.space import load_space
    from coopt.study.trial import evaluate_design

    space = load_space(SIMBA)
    params = {"n_pes": 16, "vector_width": 4, "glb_kib": 64, "pe_weight_depth": 256, "word_bits": 8}
    rec = evaluate_design(0, params, space.template, params, None, space.network, MapperOptions(budget=100), {},
                          space.objectives)
    write_record(tmp_path / "study", rec)
    folder = export_trials(tmp_path / "study", [0], tmp_path / "out")[0]
    res = subprocess.run([str(folder / "v4" / "run_v4.sh")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    # the Timeloop-style files too: real Accelergy on arch.yaml + components.yaml gives the export's ERT
    from coopt.energy.accelergy_io import read_ert
    res = subprocess.run(["accelergy", "arch.yaml", "components.yaml", "-o", "acc"], cwd=folder, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0 and (folder / "acc" / "ERT.yaml").is_file(), res.stdout[-2000:] + res.stderr[-2000:]
    real, ours = read_ert(folder / "acc" / "ERT.yaml"), read_ert(folder / "ERT.yaml")
    shared = [n for n in ours if n in real]          # Accelergy leaves the zero-cost fan-out levels out
    assert len(shared) >= 6 and all(ours[n][a] == 0 for n in ours if n not in real for a in ours[n])
    for name in shared:
        for action, pj in ours[name].items():
            if action in real[name]:
                assert real[name][action] == pytest.approx(pj, rel=1e-4), (name, action)
    try:
        import pytimeloop  # noqa: F401
    except ImportError:
        return
    res = subprocess.run([str(folder / "v4" / "run_v4.sh"), "--fe"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_space_over_the_exercises_top_file(tmp_path):
    """The Timeloop exercises' own top file, its Jinja2 variable ``architecture`` searched: the spec sent to
    workers holds the files both designs read (and no others), and each value gives its own design."""
    from coopt.design import design_from_template
    from coopt.study.space import load_space

    top = ROOT / "tests" / "data" / "exercises" / "top.yaml.jinja2"
    f = tmp_path / "space.yaml"
    f.write_text(f"spec: {top}\nworkload: {{network: resnet18, layers: [layer4.0.conv2]}}\n"
                 "parameters:\n  architecture: {type: categorical, choices: [simple_weight_stationary, "
                 "simple_output_stationary]}\nreference_point: {energy_uj: 1e9}\n")
    t = load_space(f).template
    assert t.jinja_names == ("architecture", "problem")
    assert sorted(t.files) == ["_components/intmac.yaml", "_components/regfile.yaml",
                               "_components/regfile_metadata.yaml", "_components/smartbuffer_RF.yaml",
                               "_components/smartbuffer_SRAM.yaml", "_components/smartbuffer_metadata.yaml",
                               "_include/default_problem.yaml", "_include/mapper.yaml",
                               "simple_output_stationary/arch.yaml", "simple_weight_stationary/arch.yaml",
                               "top.yaml.jinja2"]
    ws = design_from_template(t, {"architecture": "simple_weight_stationary"})
    os_ = design_from_template(t, {"architecture": "simple_output_stationary"})
    assert ws.targets != os_.targets


def test_the_v4_mapping_names_containers_as_timeloopfe_reads_it():
    """A fan-out's spatial factors go on its !Container (timeloopfe attaches directives by node name); read
    back, they land on the container's inter_<name>_spatial level, which keeps nothing."""
    from coopt.arch.v4_mapping import attach_container_directives, to_v4_mapping

    coopt_form = [{"target": "inter_PE_spatial", "type": "temporal", "factors": "C1 M1", "permutation": "CM"},
                  {"target": "inter_PE_spatial", "type": "spatial", "factors": "C4 M2", "permutation": "MC",
                   "split": 2},
                  {"target": "inter_PE_spatial", "type": "datatype", "keep": [], "bypass": ["Inputs"]},
                  {"target": "buf", "type": "datatype", "keep": ["Inputs"], "bypass": []}]
    v4 = to_v4_mapping(coopt_form)
    assert v4 == [{"target": "PE", "type": "spatial", "factors": "C=4 M=2", "permutation": "MC", "split": 2},
                  {"target": "buf", "type": "dataspace", "keep": ["Inputs"], "bypass": []}]
    back = attach_container_directives(v4, ["DRAM", "inter_PE_spatial", "buf"], ["Inputs", "Weights"])
    assert back[0]["target"] == "inter_PE_spatial" and back[-1] == {
        "target": "inter_PE_spatial", "type": "bypass", "keep": [], "bypass": ["Inputs", "Weights"]}
    with pytest.raises(ValueError, match="temporal loops"):
        to_v4_mapping([{"target": "inter_PE_spatial", "type": "temporal", "factors": "C2 M1"}])


def _timeloopfe():
    try:
        import pytimeloop.timeloopfe.v4 as tl
        from pytimeloop.timeloopfe.common.backend_calls import _specification_to_yaml_string
    except ImportError:
        return None
    return tl, _specification_to_yaml_string


@pytest.mark.skipif(_timeloopfe() is None, reason="needs timeloopfe (pytimeloop.timeloopfe; not installed in CI)")
def test_timeloopfe_reads_the_exported_v4_spec(tmp_path):
    """timeloopfe's own front end (pure Python: no Timeloop binary) reads each exported layer as is, and the
    processed form it writes (what call_model hands timeloop-model) evaluates in coopt to the trial's numbers."""
    from coopt.arch.spec_template import SpecTemplate
    from coopt.backends.base import MapperOptions
    from coopt.export import export_trials
    from coopt.export.design import safe_name
    from coopt.export.v4 import layer_inputs
    from coopt.inputs import load_inputs
    from coopt.model.evaluate import evaluate
    from coopt.study.records import write_record
    from coopt.study.space import load_space
    from coopt.study.trial import evaluate_design

    tl, processed = _timeloopfe()
    space = load_space(SIMBA)
    params = {"n_pes": 32, "vector_width": 4, "glb_kib": 128, "pe_weight_depth": 256, "word_bits": 16}
    rec = evaluate_design(0, params, space.template, params, None, space.network, MapperOptions(budget=100), {},
                          space.objectives)
    write_record(tmp_path / "study", rec)
    folder = export_trials(tmp_path / "study", [0], tmp_path / "out")[0] / "v4"
    t = SpecTemplate.from_json(rec.spec)
    for layer in rec.layers:
        files, jinja = layer_inputs(t, safe_name(layer.name))
        spec = tl.Specification.from_yaml_files(*[str(folder / f) for f in files], jinja_parse_data=jinja)
        out = tmp_path / f"{safe_name(layer.name)}.parsed-processed-input.yaml"
        out.write_text(processed(spec, for_model=True))
        inp = load_inputs([out])
        r = evaluate(inp.problem, inp.arch, inp.tables, inp.mapping())
        assert r.cycles == layer.cycles and r.energy_pj == pytest.approx(layer.energy_pj, rel=1e-9)


def test_a_space_over_an_architecture_file_and_its_component_files(tmp_path, capsys):
    """spec: as a list (the architecture file with its variables:, then its component classes) gives the same
    design as the top file that includes them; vars: without a Jinja2 file is refused in one line."""
    from coopt.design import design_from_template
    from coopt.study.space import load_space

    spec_dir = ROOT / "arch_base" / "simba_v4"
    f = tmp_path / "space.yaml"
    base = ("workload: {network: resnet18, layers: [layer4.0.conv2]}\nparameters:\n"
            "  n_pes: {type: pow2, low: 4, high: 32}\nreference_point: {energy_uj: 1e9}\n")
    f.write_text(f"spec: [{spec_dir / 'arch.yaml'}, {spec_dir / 'components' / 'classes.yaml'}]\n" + base)
    files = load_space(f).template
    top = load_space(SIMBA).template
    assert files.entry == ("arch.yaml", "components/classes.yaml") and files.jinja_names == ()
    a, b = design_from_template(files, {"n_pes": 8}), design_from_template(top, {"n_pes": 8})
    assert a.arch_yaml == b.arch_yaml and a.targets == b.targets and a.arch.arithmetic.instances == 8 * 4
    f.write_text(f"spec: {spec_dir / 'arch.yaml'}\nvars: {{problem: x.yaml}}\n" + base)
    assert main(["search", "--space", str(f), "--trials", "1", "--study", "bad"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(f) in err and "vars" in err and "not a Jinja2 template" in err


def test_a_study_refuses_to_continue_over_an_edited_spec(tmp_path, monkeypatch, capsys):
    """The space file is unchanged but the spec it names was edited: the trials so far were made with the
    old spec, so continuing is refused in one line (as for an edited space)."""
    monkeypatch.chdir(tmp_path)
    d = _spec(tmp_path)
    space = _space(tmp_path)
    args = ["search", "--space", str(space), "--study", "s", "--sampler", "random", "--workers", "1"]
    assert main([*args, "--trials", "1"]) in (0, 1)
    capsys.readouterr()
    (d / "arch.yaml").write_text(SPEC.replace("depth: 64", "depth: 32"))
    assert main([*args, "--trials", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other contents of its spec" in err and "top.yaml.jinja2" in err, err


def test_the_export_of_a_spec_trial_carries_the_specs_own_classes_and_tables(tmp_path):
    """A spec-backed trial's Timeloop export (ERT/ART, components.yaml) is estimated with the spec's own
    component classes, as the trial was -- not with coopt's shipped classes of the same names."""
    from coopt.backends.base import MapperOptions
    from coopt.design import design_from_template
    from coopt.energy.accelergy_io import read_ert
    from coopt.export import export_trials
    from coopt.study.records import write_record
    from coopt.study.space import load_space
    from coopt.study.trial import evaluate_design

    top = ROOT / "tests" / "data" / "exercises" / "top.yaml.jinja2"
    f = tmp_path / "space.yaml"
    f.write_text(f"spec: {top}\nworkload: {{network: resnet18, layers: [layer4.0.conv2]}}\n"
                 "parameters:\n  architecture: {type: categorical, choices: [simple_output_stationary]}\n"
                 "reference_point: {energy_uj: 1e9}\n")
    space = load_space(f)
    params = {"architecture": "simple_output_stationary"}
    rec = evaluate_design(0, params, space.template, params, None, space.network, MapperOptions(budget=50), {},
                          space.objectives)
    write_record(tmp_path / "study", rec)
    folder = export_trials(tmp_path / "study", [0], tmp_path / "out")[0]
    used = design_from_template(space.template, params).tables
    ert = read_ert(folder / "ERT.yaml")
    for name, actions in used.ert.items():
        for action, pj in actions.items():
            assert ert[name][action] == pytest.approx(pj, rel=1e-9), (name, action)
    classes = yaml.safe_load((folder / "components.yaml").read_text())["compound_components"]["classes"]
    spec_sram = yaml.safe_load((top.parent / "_components" / "smartbuffer_SRAM.yaml").read_text())
    ours = next(c for c in classes if c["name"] == "smartbuffer_SRAM")
    theirs = next(c for c in spec_sram["compound_components"]["classes"] if c["name"] == "smartbuffer_SRAM")
    assert ours["attributes"] == theirs["attributes"] and ours["subcomponents"] == theirs["subcomponents"]
    # Accelergy compares arch.yaml's version with components.yaml's: both numbers (the spec says '0.4')
    arch_doc = yaml.safe_load((folder / "arch.yaml").read_text())
    assert isinstance(arch_doc["architecture"]["version"], float)
