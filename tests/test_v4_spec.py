"""timeloopfe v4 specifications read as shipped: the four dense Timeloop + Accelergy exercises.

tests/data/exercises/ holds the exercises' own files (MIT; see its README):
the Jinja2 top file, each design's arch.yaml, the shared _components/ and
_include/, and from ref_outputs/default_problem/ what real timeloopfe +
timeloop-mapper + Accelergy produced.  Each design runs exactly as a
Timeloop user runs it (``top.yaml.jinja2 --var architecture=NAME``).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from coopt.arch.v4_spec import TIMELOOPFE_DEFAULTS, load_spec
from coopt.backends.timeloop_stats import level_energy_pj, parse_stats, total_energy_pj
from coopt.cli import main
from coopt.errors import SpecError
from coopt.yamlio import load_yaml, loads_yaml

DATA = Path(__file__).parent / "data" / "exercises"
TOP = DATA / "top.yaml.jinja2"
DESIGNS = ["eyeriss_like", "simba_like", "simple_output_stationary", "simple_weight_stationary"]
# The DRAM tile's input halo: coopt and Timeloop master 4cf6d4c count the rows shared by consecutive DRAM tiles
# once (156,600 / 152,550 input reads); the reference run, a 2024 v4-era timeloop-mapper, counts 157,296.
# Master's figures: timeloop-model built by benchmarks/build_real_tools.sh, run on these processed inputs with the
# reference mapping and ERT/ART (tests/data/timeloop_master_4cf6d4c.json says how).
HALO = {"eyeriss_like": (156_600, 157_296), "simple_output_stationary": (152_550, 157_296)}
MASTER = json.loads((Path(__file__).parent / "data" / "timeloop_master_4cf6d4c.json").read_text())["cases"]


def _ref(design: str) -> Path:
    return DATA / design / "ref_outputs" / "default_problem"


def _run(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().out


def _canonical(targets: list) -> list:
    out = []
    for t in targets:
        t = dict(t)
        for k in ("keep", "bypass"):
            if k in t:
                t[k] = sorted(t[k])
        if "factors" in t:
            t["factors"] = sorted(str(t["factors"]).replace(" ", ",").split(","))
        out.append(json.dumps(t, sort_keys=True))
    return sorted(out)


@pytest.mark.parametrize("design", DESIGNS)
def test_processed_form_is_timeloopfes(design):
    """Architecture, inline constraints and classes as timeloopfe's own parsed-processed-input.yaml."""
    raw, _ = load_spec([TOP], {"architecture": design})
    ref = load_yaml(_ref(design) / "parsed-processed-input.yaml")
    assert _canonical(raw["architecture_constraints"]["targets"]) == _canonical(ref["architecture_constraints"]["targets"])
    mine, theirs = raw["architecture"]["subtree"][0], ref["architecture"]["subtree"][0]
    assert mine["name"] == theirs["name"]
    assert [(c["name"], c["class"], c.get("subclass")) for c in mine["local"]] == \
           [(c["name"], c["class"], c.get("subclass")) for c in theirs["local"]]
    for a, b in zip(mine["local"], theirs["local"]):
        for k, v in b["attributes"].items():
            if k in ("has_power_gating", "power_gated_at") or (k in TIMELOOPFE_DEFAULTS and k not in a["attributes"]):
                assert k not in TIMELOOPFE_DEFAULTS or v == TIMELOOPFE_DEFAULTS[k]     # Timeloop's defaults
                continue
            if design == "eyeriss_like" and k == "technology" and v != -1:
                # the reference outputs predate the exercises' commit 2d55108 that moved eyeriss to 65 nm
                assert (a["attributes"][k], v) == ("65nm", "32nm")
                continue
            assert a["attributes"].get(k) == v, (a["name"], k)
    assert sorted(c["name"] for c in raw["compound_components"]["classes"]) == \
           sorted(c["name"] for c in ref["compound_components"]["classes"])      # glob order differs
    assert raw["problem"]["instance"] == {k: v for k, v in ref["problem"]["instance"].items() if k != "densities"}


@pytest.mark.parametrize("design", DESIGNS)
def test_as_shipped_with_reference_mapping_and_tables(design, capsys):
    """Cycles, utilisation, every access count and the energies of timeloop-mapper's best mapping."""
    r = _ref(design)
    rc, out = _run(capsys, "evaluate", TOP, r / "timeloop-mapper.map.yaml", "--var", f"architecture={design}",
                   "--ert", r / "timeloop-mapper.ERT.yaml", "--art", r / "timeloop-mapper.ART.yaml", "--json")
    assert rc == 0, out
    got, ref = json.loads(out), parse_stats(r / "timeloop-mapper.stats.txt")
    assert got["cycles"] == ref["cycles"]
    assert got["macs"] == ref["computes"]
    assert round(got["utilization"], 4) == round(ref["utilization"], 4)
    halo = HALO.get(design)
    checked = 0
    for name, lvl in ref["levels"].items():
        for ds, counts in lvl["dataspaces"].items():
            for key in ("reads", "fills", "updates"):
                mine = got["levels"][name][ds][key]
                if halo and ds == "Inputs" and (name, key) in (("DRAM", "reads"), ("shared_glb", "fills")):
                    assert (mine, counts[key]) == halo, f"{name}.{ds}.{key}"
                    assert mine == MASTER[f"exercises/{design}"][f"{name}.{ds}.{key}"], f"master {name}.{ds}.{key}"
                else:
                    assert mine == counts[key], f"{name}.{ds}.{key}"
                checked += 1
    assert checked >= 12
    # energies: the halo's extra accesses priced at coopt's own per-access energy, everything else as is
    extra = 0.0
    for name in ref["levels"]:
        e = level_energy_pj(ref, name)
        if halo and name in ("DRAM", "shared_glb"):
            mine = got["levels"][name]["Inputs"]
            key = "reads" if name == "DRAM" else "fills"
            per_access = mine[f"{key[:-1]}_energy_pj"] / mine[key]
            missing = (ref["levels"][name]["dataspaces"]["Inputs"][key] - mine[key]) * per_access
            assert mine["energy_pj"] + missing == pytest.approx(ref["levels"][name]["dataspaces"]["Inputs"]["energy_pj"],
                                                                rel=1e-3)
            extra += missing
            e -= missing
        assert got["levels"][name]["energy_pj"] == pytest.approx(e, rel=1e-3, abs=1e-6), name
    assert got["energy_pj"] + extra == pytest.approx(total_energy_pj(ref), rel=1e-3)
    if halo:   # what the halo alone is worth: 0.08 % of eyeriss_like's energy, 0.54 % of the output-stationary's
        assert 5e-4 < extra / total_energy_pj(ref) < 6e-3
        master = MASTER[f"exercises/{design}"]
        assert (got["cycles"], got["energy_pj"]) == (master["cycles"], pytest.approx(master["energy_pj"], rel=1e-5))


def test_energy_command_uses_the_specs_component_classes(capsys):
    """coopt energy on the top file estimates every component with the spec's own _components classes.

    simba_like (45 nm in both the spec and the reference run): the buffers built from the exercises'
    smartbuffer_SRAM / smartbuffer_RF classes read and write within 1 % of the reference Accelergy.  The
    entries that differ more are listed with their causes in docs/v4_exercises.md.
    """
    rc, out = _run(capsys, "energy", TOP, "--var", "architecture=simba_like", "--json")
    assert rc == 0, out
    got = json.loads(out)
    ert = load_yaml(_ref("simba_like") / "timeloop-mapper.ERT.yaml")["ERT"]["tables"]
    ref = {re.sub(r"\[.*?\]", "", e["name"]).split(".")[-1]: {a["name"]: a["energy"] for a in e["actions"]}
           for e in ert}
    assert set(ref) <= set(got["ert"])
    for comp in ("GlobalBuffer", "PEInputBuffer", "PEWeightBuffer", "PEAccuBuffer"):
        for action in ("read", "write"):
            assert got["ert"][comp][action] == pytest.approx(ref[comp][action], rel=0.01), (comp, action)


def test_network_takes_the_spec_and_its_inline_constraints(capsys):
    from coopt.design import load_design

    d = load_design(str(TOP), variables={"architecture": "simple_weight_stationary"})
    kinds = {(t["target"], t["type"]) for t in d.targets}
    assert ("inter_PE_spatial", "spatial") in kinds and ("weight_reg", "bypass") in kinds
    # per-layer targets: the default problem's size-1 dimensions are not pinned into permutations
    assert not any(t["target"] == "DRAM" for t in d.targets)
    rc, out = _run(capsys, "network", "--arch", TOP, "--var", "architecture=simple_weight_stationary",
                   "--network", "resnet18", "--budget", "60", "--workers", "1", "--json")
    assert rc in (0, 1), out
    assert json.loads(out)["layers"]


@pytest.mark.parametrize("text, where", [
    ("architecture:\n  nodes:\n  - !Compnent {name: x, class: DRAM}\n", "line 3"),
    ("architecture:\n  nodes:\n  - !Parallel\n    nodes:\n    - !Container {name: c, constraints: {dataspace: "
     "{keep: ['*']}}}\n", "inside a !Parallel"),
    ("architecture:\n  nodes:\n  - !Component {name: d, class: DRAM, attributes: {width: 2 * wdth}}\n",
     "undefined wdth"),
    ("architecture: {{ include('nowhere.yaml', 'architecture') }}\n", "line 1"),
    ("globals: {}\narchitecture: {{ 1 + }}\n", "line 2"),
])
def test_errors_name_file_and_place(tmp_path, capsys, text, where):
    f = tmp_path / "spec.yaml.jinja2"
    f.write_text(text)
    rc = main(["energy", str(f)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "spec.yaml.jinja2" in err and where in err, err


def test_missing_jinja_variable_says_how_to_set_it(capsys):
    rc = main(["energy", str(TOP)])
    err = capsys.readouterr().err
    assert rc == 2 and "line " in err and "--var architecture=VALUE" in err


def test_processed_input_mapping_placeholder_gives_way(tmp_path, capsys):
    """timeloopfe's processed input carries 'mapping: []'; a mapping file beside it is the one used."""
    r = _ref("simba_like")
    rc, out = _run(capsys, "evaluate", r / "parsed-processed-input.yaml", r / "timeloop-mapper.map.yaml",
                   "--ert", r / "timeloop-mapper.ERT.yaml", "--art", r / "timeloop-mapper.ART.yaml", "--json")
    assert rc == 0, out
    assert json.loads(out)["cycles"] == parse_stats(r / "timeloop-mapper.stats.txt")["cycles"]


def test_reading_a_spec_costs_little_over_parsing_its_yaml():
    files = [DATA / "eyeriss_like" / "arch.yaml", DATA / "_include" / "default_problem.yaml",
             DATA / "_include" / "mapper.yaml", *sorted((DATA / "_components").glob("*.yaml"))]
    texts = [f.read_text() for f in files]

    def best(fn):
        fn()
        out = []
        for _ in range(3):                   # CPU time: the machine is shared, wall time is not ours
            t = time.process_time()
            fn()
            out.append(time.process_time() - t)
        return min(out)

    spec = best(lambda: load_spec([TOP], {"architecture": "eyeriss_like"}))
    plain = best(lambda: [loads_yaml(t) for t in texts])
    assert spec - plain < 0.05, (spec, plain)


def test_var_without_a_template_is_refused():
    with pytest.raises(SpecError, match="no input file is a Jinja2 template"):
        load_spec([DATA / "eyeriss_like" / "arch.yaml"], {"architecture": "x"})


_PROBLEM = """
problem:
  version: 0.4
  shape: {name: CNN_Layer, dimensions: [C, M, R, S, N, P, Q],
          data_spaces: [{name: Weights, projection: [[[C]], [[M]], [[R]], [[S]]]},
                        {name: Inputs, projection: [[[N]], [[C]], [[R], [P]], [[S], [Q]]]},
                        {name: Outputs, projection: [[[N]], [[M]], [[Q]], [[P]]], read_write: true}]}
  instance: {C: 2 * chans, M: 8, R: 3, S: 3, N: 1, P: 8, Q: 8, H: 10, W: 10}
variables: {version: 0.4, chans: 4, kib: 8}
"""


def _spec(tmp_path, nodes: str, extra: str = "") -> dict:
    f = tmp_path / "spec.yaml"
    f.write_text(_PROBLEM + "architecture:\n  version: 0.4\n  nodes:\n" + nodes + extra)
    raw, _ = load_spec([f])
    return raw


def _targets(raw) -> dict:
    return {(t["target"], t["type"]): {k: v for k, v in t.items() if k not in ("target", "type")}
            for t in raw["architecture_constraints"]["targets"]}


def test_every_constraint_form_timeloopfe_accepts(tmp_path):
    raw = _spec(tmp_path, """
  - !Container {name: sys, attributes: {technology: "45nm"}}
  - !Component {name: DRAM, class: DRAM, attributes: {width: 64, datawidth: 8},
                constraints: {temporal: {factors: "C=1 M=2", permutation: "MC"}}}
  - !Component
    name: buf
    class: storage
    subclass: smartbuffer_SRAM
    attributes: {depth: kib * 1024 // 8, width: 64, datawidth: 8}
    constraints:
      dataspace: {keep_only: [Inputs]}
      temporal: {factors_only: [P=8], no_reuse: [Inputs]}
  - !Container
    name: PE
    spatial: {meshX: chans}
    constraints: {spatial: {factors: {R: 1, S: 1}, no_iteration_over_dataspaces: [Outputs], split: 1}}
  - !Parallel
    nodes:
    - !Component {name: wreg, class: regfile, attributes: {depth: 1, width: 8, datawidth: 8},
                  constraints: {dataspace: {keep: [Weights]}}}
    - !Nothing {constraints: {dataspace: {keep: [Inputs, Outputs]}}}
  - !Component {name: mac, class: intmac, attributes: {multiplier_width: 8, adder_width: 16}}
""")
    t = _targets(raw)
    assert t[("DRAM", "temporal")] == {"factors": "C=1,M=2", "permutation": "NMC"}
    assert t[("buf", "bypass")] == {"keep": ["Inputs"], "bypass": ["Weights", "Outputs"]}
    assert t[("buf", "temporal")]["factors"] == "P=8,C=1,M=1,R=1,S=1,N=1,Q=1"
    assert t[("buf", "temporal")]["no_reuse"] == ["Inputs"]
    sp = t[("inter_PE_spatial", "spatial")]
    assert sp["split"] == 1 and set(sp["factors"].split(",")) == {"R=1", "S=1", "N=1", "M=1", "Q=1", "P=1"}
    # the !Nothing branch keeps Inputs and Outputs, so the register branch bypasses them
    assert t[("wreg", "bypass")] == {"keep": ["Weights"], "bypass": ["Inputs", "Outputs"]}
    local = {c["name"]: c for c in raw["architecture"]["subtree"][0]["local"]}
    assert local["buf[1..1]"]["attributes"]["depth"] == 1024 and local["buf[1..1]"]["subclass"] == "smartbuffer_SRAM"
    assert "wreg[1..4]" in local and local["mac[1..4]"]["attributes"]["technology"] == "45nm"
    assert raw["problem"]["instance"]["C"] == 8


def test_top_level_constraint_targets_join_the_nodes(tmp_path):
    raw = _spec(tmp_path, """
  - !Component {name: DRAM, class: DRAM, attributes: {width: 64, datawidth: 8}}
  - !Component {name: buf, class: SRAM, attributes: {depth: 64, width: 64, datawidth: 8},
                constraints: {temporal: {factors: [C=1]}}}
  - !Component {name: mac, class: intmac}
""", "constraints:\n  targets:\n  - {target: buf, type: temporal, factors: M=2, permutation: [M]}\n")
    assert _targets(raw)[("buf", "temporal")] == {"factors": "C=1,M=2", "permutation": "NCM"}


@pytest.mark.parametrize("nodes, message", [
    ("  - !Parallel\n    nodes:\n    - !Component {name: a, class: SRAM, constraints: {dataspace: {keep: [Weights]}}}\n"
     "    - !Component {name: b, class: SRAM, constraints: {dataspace: {keep: [Weights, Inputs, Outputs]}}}\n",
     "kept in two branches"),
    ("  - !Parallel\n    nodes:\n    - !Component {name: a, class: SRAM, constraints: {dataspace: {keep: [Weights]}}}\n",
     "no branch keeps ['Inputs', 'Outputs']"),
    ("  - !Parallel\n    nodes:\n    - !Component {name: a, class: SRAM, spatial: {meshX: 2},\n"
     "                  constraints: {dataspace: {keep: ['*']}}}\n", "inside a !Parallel"),
    ("  - !Container {name: c, constraints: {temporal: {factors: [C=1]}}}\n", "would be ignored by timeloopfe"),
    ("  - !Component {name: a, class: SRAM, constraints: {temporal: {maximize_dims: [[C]]}}}\n",
     "unknown key 'maximize_dims'"),
    ("  - !Component {name: a, class: SRAM, constraints: {temporal: {factors: [C=1, C=2]}}}\n", "conflicting factors"),
    ("  - !Component {name: a, class: SRAM, attributes: {technology: 45nm}}\n", "not a Python expression"),
    ("  - !Component {name: a, class: SRAM, area_scale: 0.5}\n", "'area_scale' on an architecture node"),
    ("  - !Component {name: a, class: SRAM, sparse_optimizations: {targets: []}, attributes: {x: 1}}\n"
     "  - !Component {name: b, class: SRAM, sparse_optimizations: {action_optimization: [1]}}\n", "sparse"),
])
def test_unsupported_or_wrong_forms_are_refused(tmp_path, nodes, message):
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        _spec(tmp_path, nodes)
    assert "spec.yaml" in str(err.value)


def test_an_error_in_an_included_file_names_that_file(tmp_path, capsys):
    import shutil
    shutil.copytree(DATA, tmp_path / "ex", ignore=shutil.ignore_patterns("ref_outputs"))
    arch = tmp_path / "ex" / "eyeriss_like" / "arch.yaml"
    arch.write_text(arch.read_text().replace("depth: 16384", "depth: glb_words"))
    rc = main(["energy", str(tmp_path / "ex" / "top.yaml.jinja2"), "--var", "architecture=eyeriss_like"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "eyeriss_like/arch.yaml: architecture.nodes[3].attributes.depth" in err and "undefined glb_words" in err


def test_arch_command_prints_the_processed_spec(capsys):
    rc, out = _run(capsys, "arch", TOP, "--var", "architecture=simple_weight_stationary")
    assert rc == 0
    doc = loads_yaml(out)
    ref = load_yaml(_ref("simple_weight_stationary") / "parsed-processed-input.yaml")
    assert _canonical(doc["architecture_constraints"]["targets"]) == _canonical(ref["architecture_constraints"]["targets"])
    assert [c["name"] for c in doc["architecture"]["subtree"][0]["local"]] == \
           [c["name"] for c in ref["architecture"]["subtree"][0]["local"]]


@pytest.mark.parametrize("argv, message", [
    (["--var", "architecture"], "KEY=VALUE"),
    (["--var", "architecture=a", "--var", "architecture=b"], "given twice"),
])
def test_bad_var_is_one_line(capsys, argv, message):
    rc = main(["energy", str(TOP), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_an_architecture_file_alone_keeps_its_constraints():
    """Without a problem (coopt network --arch arch.yaml) the targets are built on Timeloop's CNN layer shape."""
    from coopt.design import load_design

    d = load_design(str(DATA / "simple_output_stationary" / "arch.yaml"))
    spatial = next(t for t in d.targets if t["target"] == "inter_PE_spatial" and t["type"] == "spatial")
    assert spatial["split"] == 1 and spatial["factors"] == "R=1,S=1,P=1,Q=1"
    assert {t["target"] for t in d.targets} >= {"pe_spad", "weight_reg", "input_activation_reg"}


def test_a_designs_mapping_file_joins_as_extra_constraints(tmp_path):
    """The top file adds `extra_mapping_constraints` when a design folder has mapping.yaml (timeloopfe
    reads any key containing 'constraints' as constraint targets)."""
    import shutil
    shutil.copytree(DATA, tmp_path / "ex", ignore=shutil.ignore_patterns("ref_outputs"))
    (tmp_path / "ex" / "simba_like" / "mapping.yaml").write_text(
        "mapping:\n- {target: GlobalBuffer, type: temporal, factors: [N=1], permutation: [N, C]}\n")
    raw, _ = load_spec([tmp_path / "ex" / "top.yaml.jinja2"], {"architecture": "simba_like"})
    t = [t for t in raw["architecture_constraints"]["targets"] if t["target"] == "GlobalBuffer"]
    assert {"type": "temporal", "target": "GlobalBuffer", "factors": "N=1", "permutation": "NC"} in t


@pytest.mark.parametrize("files, message", [
    ({"top.yaml.jinja2": "a: {{ include('top.yaml.jinja2', 'a') }}\n"}, "includes itself"),
    ({"top.yaml.jinja2": "a: {{ ''.__class__.__mro__ }}\n"}, "line 1: Jinja2"),
    ({"top.yaml.jinja2": "a: {{ setenv('X', '1') }}\n"}, "setenv() is not supported"),
    ({"top.yaml.jinja2": "{% for i in range(99999) %}{% for j in range(999) %}xxxxxxxxxxxxxxxx{% endfor %}"
                         "{% endfor %}\n"}, "renders to more than 16 MiB"),
    ({"top.yaml.jinja2": "{{ add_to_path(cwd()) }}\nproblem: {{ include('p.yaml', 'problem') }}\n"
                         "architecture: {{ include('a.yaml', 'architecture') }}\n",
      "p.yaml": "problem: {shape: cnn-layer, instance: {C: 2}}\n",
      "a.yaml": "architecture:\n  nodes:\n  - !Component {name: d, class: DRAM, attributes: "
                "{width: __import__('os').getcwd()}}\n"},
     "attribute access is not allowed"),
    ({"top.yaml.jinja2": "globals: {expression_custom_functions: [f.py]}\narchitecture: {nodes: []}\n"},
     "expression_custom_functions"),
])
def test_hostile_specs_are_refused(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec([tmp_path / "top.yaml.jinja2"])


def test_set_binds_the_specs_variables(tmp_path):
    """--set NAME=VALUE on a v4 spec replaces a value of its variables: before the expressions over it."""
    from coopt.design import load_design

    f = tmp_path / "spec.yaml"
    f.write_text("variables: {pes: 4, glb_kib: 16}\narchitecture:\n  nodes:\n"
                 "  - !Component {name: DRAM, class: DRAM, attributes: {width: 64, datawidth: 8}}\n"
                 "  - !Component {name: glb, class: SRAM, attributes: {depth: glb_kib * 128, width: 64, datawidth: 8}}\n"
                 "  - !Container {name: PE, spatial: {meshX: pes}}\n"
                 "  - !Component {name: mac, class: intmac}\n")
    d = load_design(str(f), params={"pes": "16"})
    assert d.arch.arithmetic.instances == 16 and d.arch.storage[-2].depth == 16 * 128
    with pytest.raises(SpecError, match="no variable 'pe'"):
        load_design(str(f), params={"pe": "16"})
    with pytest.raises(SpecError, match="not a v4 spec"):
        load_design(str(DATA / "simba_like" / "ref_outputs" / "default_problem" / "parsed-processed-input.yaml"),
                    params={"x": "1"})


def test_arch_problem_and_component_files_read_like_the_top_file(capsys):
    """The same design given as its files (arch.yaml, the problem, every _components file) instead of the top
    file: component class files extend one another, as timeloopfe and Accelergy read them."""
    r = _ref("simba_like")
    tables = ["--ert", r / "timeloop-mapper.ERT.yaml", "--art", r / "timeloop-mapper.ART.yaml", "--json"]
    rc, out = _run(capsys, "evaluate", DATA / "simba_like" / "arch.yaml", DATA / "_include" / "default_problem.yaml",
                   *sorted((DATA / "_components").glob("*.yaml")), r / "timeloop-mapper.map.yaml", *tables)
    assert rc == 0, out
    rc, top = _run(capsys, "evaluate", TOP, r / "timeloop-mapper.map.yaml", "--var", "architecture=simba_like", *tables)
    assert json.loads(out) == json.loads(top)
    raw, _ = load_spec([DATA / "simba_like" / "arch.yaml", *sorted((DATA / "_components").glob("*.yaml"))])
    assert len(raw["compound_components"]["classes"]) == 6


def test_a_subclassed_storage_is_written_back_as_timeloop_reads_it():
    """class: storage + subclass: aladdin_register: Timeloop reads the class, Accelergy the subclass."""
    from coopt.arch.yaml_io import arch_from_yaml, arch_to_yaml
    from coopt.design import load_design

    arch = load_design(str(TOP), variables={"architecture": "simple_output_stationary"}).arch
    reg = next(s for s in arch.storage if s.name == "weight_reg")
    assert reg.cls == "aladdin_register" and reg.depth == 1 and reg.instances == 256
    doc = arch_to_yaml(arch)
    locals_ = [c for node in _tree_nodes(doc["architecture"]) for c in node.get("local", [])]
    written = next(c for c in locals_ if c["name"].startswith("weight_reg"))
    assert (written["class"], written["subclass"]) == ("storage", "aladdin_register")
    assert arch_from_yaml(doc["architecture"]).storage == arch.storage


def _tree_nodes(node):
    for sub in node.get("subtree", []):
        yield sub
        yield from _tree_nodes(sub)


def _factors_of(text: str) -> dict:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"([A-Z])\s*=?\s*(\d+)", str(text))}


@pytest.mark.parametrize("design", ["simple_output_stationary", "simple_weight_stationary"])
def test_map_as_shipped_keeps_the_inline_constraints(design, capsys):
    """coopt map on the top file: every factor, keep/bypass and split written in the nodes holds in the mapping
    found, and its EDP is no worse than the reference mapper's mapping (both on coopt's own estimates)."""
    rc, out = _run(capsys, "map", TOP, "--var", f"architecture={design}", "--budget", "3000", "--json")
    assert rc == 0, out
    found = json.loads(out)
    got = {(m["target"], "bypass" if m["type"] in ("datatype", "bypass") else m["type"]): m for m in found["mapping"]}
    raw, _ = load_spec([TOP], {"architecture": design})
    checked = 0
    for t in raw["architecture_constraints"]["targets"]:
        m = got[(t["target"], t["type"])]
        for dim, value in _factors_of(t.get("factors", "")).items():
            assert _factors_of(m["factors"])[dim] == value, (t, m)
            checked += 1
        for key in ("keep", "bypass"):
            assert set(t.get(key, [])) <= set(m.get(key, [])), (t, m)
        if "split" in t:
            assert m["split"] == t["split"]
    assert checked >= 10
    rc, out = _run(capsys, "evaluate", TOP, _ref(design) / "timeloop-mapper.map.yaml", "--var",
                   f"architecture={design}", "--json")
    ref = json.loads(out)
    assert found["energy_pj"] * found["cycles"] <= ref["energy_pj"] * ref["cycles"]
