"""coopt.export: exported trial folders re-load with coopt's own loaders and give the records' numbers."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import stat
import tomllib
from pathlib import Path

import pytest
import yaml

from coopt.arch.yaml_io import arch_from_yaml
from coopt.backends.base import MapperOptions
from coopt.energy.accelergy_io import read_tables
from coopt.energy.estimate import estimate
from coopt.energy.select import arch_tables
from coopt.errors import CooptError
from coopt.export import art_yaml, components_yaml, ert_yaml, export_trials, pareto_numbers
from coopt.export.design import safe_name
from coopt.inputs import load_inputs
from coopt.model.evaluate import evaluate
from coopt.study.records import read_records, write_record
from coopt.study.trial import evaluate_design
from coopt.workload.networks import Network, resnet18

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_INPUT = ROOT / "tests/reference_data/model/06-eyeriss-like-convlayer-bestmap/input.yaml"
OBJECTIVES = [("energy_uj", "minimize"), ("throughput_ips", "maximize")]
BUDGETS = {"area_mm2": 3.0, "power_mw": 150.0}
DESIGNS = {  # trial number -> (template, parameters)
    0: ("eyeriss_like", {"pe_rows": 8}),
    1: ("eyeriss_like", {"pe_rows": 12, "pe_cols": 14, "glb_depth": 8192}),
    2: ("systolic_ws", {"pe_rows": 4, "pe_cols": 4}),
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study folder with three real trial records (two templates) over ResNet-18's first two layers."""
    d = tmp_path_factory.mktemp("study")
    net = Network("head", resnet18().layers[:2])
    for n, (template, params) in DESIGNS.items():
        rec = evaluate_design(n, params, template, params, None, net, MapperOptions(budget=200),
                              {"power_mw": 150.0}, OBJECTIVES)   # mapped whatever the area
        assert all(l.found for l in rec.layers)
        write_record(d, rec)
    # what coopt search leaves next to the records: the study's budgets and objectives
    (d / "study.json").write_text(json.dumps({"settings": {"budgets": BUDGETS, "objectives": OBJECTIVES}}))
    return d


@pytest.fixture(scope="module")
def exported(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return out, export_trials(study, list(DESIGNS), out)


@pytest.fixture(scope="module")
def odd_study(study, tmp_path_factory):
    """Real records altered: hostile layer names (trial 5) and a layer left unmapped (trial 7)."""
    d = tmp_path_factory.mktemp("odd")
    base = {r.number: r for r in read_records(study)}
    evil = base[0].layers
    names = ["../../../escaped", "a/b\\c d"]
    write_record(d, dataclasses.replace(base[0], number=5, layers=[dataclasses.replace(l, name=n)
                                                                   for l, n in zip(evil, names)]))
    lost = dataclasses.replace(base[1].layers[1], found=False, energy_pj=None, cycles=None, utilization=None,
                               pj_per_mac=None, mapping_yaml=None, reason="no valid mapping: test case")
    write_record(d, dataclasses.replace(base[1], number=7, feasible=False, reasons=["1 layer not mapped"],
                                        layers=[base[1].layers[0], lost]))
    return d


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_exported_files_reevaluate_to_the_records(study, exported):
    """arch + components + prob + map + ERT/ART, as timeloop-model takes them, give each layer's numbers."""
    out, folders = exported
    assert [f.name for f in folders] == [f"trial-{n}" for n in DESIGNS]
    checked = 0
    for rec in read_records(study):
        folder = out / f"trial-{rec.number}"
        assert {p.name for p in folder.iterdir()} == {"arch.yaml", "components.yaml", "ERT.yaml", "ART.yaml", "prob",
                                                      "map", "summary.json", "summary.md", "run_timeloop.sh"}
        for layer in rec.layers:
            prob, mp = folder / f"prob/{layer.name}.yaml", folder / f"map/{layer.name}.yaml"
            ert, art = folder / "ERT.yaml", folder / "ART.yaml"
            for inputs in (load_inputs([folder / "arch.yaml", prob, mp], ert=ert, art=art),
                           load_inputs([folder / f for f in ("arch.yaml", "components.yaml")] + [prob, mp]
                                       + [ert, art])):
                ev = evaluate(inputs.problem, inputs.arch, inputs.tables, inputs.mapping())
                assert ev.valid
                assert ev.energy_pj == pytest.approx(layer.energy_pj, rel=1e-9)
                assert ev.cycles == layer.cycles
                assert ev.utilization == pytest.approx(layer.utilization, rel=1e-12)
                checked += 1
    assert checked == 2 * sum(len(r.layers) for r in read_records(study))


def test_ert_art_round_trip_with_accelergy_names(study, exported, tmp_path):
    out, _ = exported
    for rec in read_records(study):
        arch = arch_from_yaml(rec.arch_yaml["architecture"])
        tables = arch_tables(arch)   # what export wrote: the default (--energy) estimator
        folder = out / f"trial-{rec.number}"
        back = read_tables(folder / "ERT.yaml", folder / "ART.yaml")
        assert back.ert == tables.ert and back.art == tables.art
        # in-memory too, and the table names are the components' full Accelergy paths
        assert read_tables(ert_yaml(arch, tables), art_yaml(arch, tables)).ert == tables.ert
        names = [t["name"] for t in yaml.safe_load((folder / "ERT.yaml").read_text())["ERT"]["tables"]]
        assert names == [lvl.path for lvl in reversed(arch.storage)] + [arch.arithmetic.path]
        ert = ert_yaml(arch, tables)["ERT"]
        assert ert["version"] == "0.4"
        for table in ert["tables"]:
            mac = table["name"] == arch.arithmetic.path
            wanted = {"compute", "leak"} if mac else {"read", "write", "update", "leak"}
            assert {a["name"] for a in table["actions"]} == wanted
    eyeriss = yaml.safe_load((out / "trial-0/ERT.yaml").read_text())["ERT"]["tables"]
    assert eyeriss[1]["name"] == "system_top_level.shared_glb[1..1]"
    assert eyeriss[-1]["name"] == "system_top_level.mac[1..112]"


def test_names_built_from_arch_and_level_when_paths_are_empty(study):
    rec = read_records(study)[0]
    arch = arch_from_yaml(rec.arch_yaml["architecture"])
    bare = dataclasses.replace(arch, storage=tuple(dataclasses.replace(l, path="") for l in arch.storage),
                               arithmetic=dataclasses.replace(arch.arithmetic, path=""))
    tables = estimate(bare)
    ert, art = ert_yaml(bare, tables), art_yaml(bare, tables)
    names = [t["name"] for t in ert["ERT"]["tables"]]
    assert names[0] == "system_top_level.DRAM[1..1]"
    assert "system_top_level.inter_PE_spatial[1..14]" in names
    assert names[-1] == "system_top_level.mac[1..112]"
    assert [t["name"] for t in art["ART"]["tables"]] == names
    back = read_tables(ert, art)
    assert back.ert == tables.ert and back.art == tables.art


def test_components_yaml_holds_exactly_the_classes_used(exported):
    out, _ = exported
    classes = yaml.safe_load(REFERENCE_INPUT.read_text())["compound_components"]["classes"]
    reference = {c["name"]: c for c in classes}
    # smartbuffer_RF is built on regfile, so Accelergy needs regfile for the Eyeriss-like design too
    want = {0: {"smartbuffer_SRAM", "smartbuffer_RF", "regfile", "intmac"},
            2: {"smartbuffer_SRAM", "regfile", "intmac"}}
    for n, classes in want.items():
        cc = yaml.safe_load((out / f"trial-{n}/components.yaml").read_text())["compound_components"]
        assert cc["version"] == 0.4          # a number, as arch.yaml's 0.3: Accelergy compares the two
        names = [c["name"] for c in cc["classes"]]
        assert sorted(names) == sorted(classes)
        for c in cc["classes"]:
            want = yaml.safe_load(yaml.safe_dump(reference[c["name"]]))
            if c["name"] == "intmac":      # ours multiplies with a width-aware multiplier, not a 32-bit adder
                want["subcomponents"][1]["class"] = "aladdin_multiplier"
                want["actions"][0]["subcomponents"][1]["actions"][0]["name"] = "multiply"
            assert c == want
        arch = arch_from_yaml(yaml.safe_load((out / f"trial-{n}/arch.yaml").read_text())["architecture"])
        assert components_yaml(arch)["compound_components"] == cc


def test_yaml_files_are_plain(exported):
    out, folders = exported
    for folder in folders:
        yamls = [p for p in _files(folder) if p.suffix == ".yaml"]
        assert len(yamls) == 4 + 2 * 2
        for p in yamls:
            text = p.read_text()
            assert "!" not in text.replace("!=", "") and "&id" not in text, p
            assert isinstance(yaml.safe_load(text), dict), p
        ert = yaml.safe_load((folder / "ERT.yaml").read_text())
        energies = [a["energy"] for t in ert["ERT"]["tables"] for a in t["actions"]]
        assert all(type(e) is float for e in energies)
        arch = yaml.safe_load((folder / "arch.yaml").read_text())
        assert isinstance(arch["architecture"]["subtree"][0]["attributes"]["global_cycle_seconds"], float)


def _md_table(md: str, heading: str) -> list[dict]:
    """The first Markdown table under ``heading`` as rows of column -> cell."""
    lines = md.split(heading, 1)[1].splitlines()
    rows = [l for l in lines if l.startswith("|")]
    table = []
    for l in lines[lines.index(rows[0]):]:
        if not l.startswith("|"):
            break
        table.append([c.strip() for c in l.strip("|").split("|")])
    return [dict(zip(table[0], r)) for r in table[2:]]


def _num(cell: str) -> float:
    return float(cell.replace(",", "").split()[0])


def test_summary_has_commands_totals_and_layers(study, exported):
    out, _ = exported
    for rec in read_records(study):
        folder = out / f"trial-{rec.number}"
        md = (folder / "summary.md").read_text()
        script = (folder / "run_timeloop.sh").read_text()
        assert os.stat(folder / "run_timeloop.sh").st_mode & stat.S_IXUSR
        for layer in rec.layers:
            files = f"arch.yaml components.yaml prob/{layer.name}.yaml map/{layer.name}.yaml"
            assert md.count(f"timeloop-model {files}") == 1                  # each command once
            assert f"timeloop-model {files} ERT.yaml ART.yaml\n" in md
            assert f"{layer.cycles:,}" in md
            assert f"\n{layer.name} {layer.cycles} {layer.energy_pj!r}\n" in script   # what it compares with
            assert "e+" not in _md_table(md, "## Layers")[rec.layers.index(layer)]["energy"]   # readable
        assert 'cd "$out/$layer"' in script and "../../ERT.yaml" in script
        assert "µJ" in md and "mm²" in md and "inferences/s" in md
        for k, v in rec.params.items():
            assert f"| {k} | {v} |" in md
        # energy and area by component add up to the design's totals (computed by the study, not here)
        parts = _md_table(md, "## Energy and area by component")
        arch = arch_from_yaml(rec.arch_yaml["architecture"])
        # (the template's inter-PE wiring levels cost nothing: left out; DRAM is off-chip: no area)
        assert [p["component"] for p in parts] == [l.name for l in reversed(arch.storage)
                                                   if not l.name.startswith("inter_PE")] + [arch.arithmetic.name]
        assert parts[0]["component"] == "DRAM" and parts[0]["area (mm²)"] == "off-chip"
        assert sum(_num(p["energy (µJ)"]) for p in parts) == pytest.approx(rec.metrics["energy_uj"], rel=2e-3)
        assert sum(_num(p["area (mm²)"]) for p in parts[1:]) == pytest.approx(rec.metrics["area_mm2"], rel=2e-3)
        # headroom against each budget, positive when within it
        budgets = {r["budget"]: r for r in _md_table(md, "## Budgets")}
        assert set(budgets) == set(BUDGETS)
        for key, limit in BUDGETS.items():
            room = limit - rec.metrics[key]
            assert _num(budgets[key]["headroom"]) == pytest.approx(room, rel=2e-3)
            assert budgets[key]["within"] == ("yes" if room >= 0 else "no")
        s = json.loads((folder / "summary.json").read_text())
        assert s["trial"] == rec.number and s["template"] == rec.template and s["params"] == rec.params
        assert s["dataflow"] == rec.dataflow and s["feasible"] is rec.feasible and s["all_layers_mapped"]
        assert s["metrics"] == rec.metrics and s["network"] == "head" and s["reasons"] == rec.reasons
        assert s["headroom"] == pytest.approx({k: v - rec.metrics[k] for k, v in BUDGETS.items()})
        assert [(l["name"], l["energy_pj"], l["cycles"]) for l in s["layers"]] == \
            [(l.name, l.energy_pj, l.cycles) for l in rec.layers]


def test_index_compares_the_exported_designs(study, exported):
    import pandas as pd

    out, _ = exported
    recs = {r.number: r for r in read_records(study)}
    df = pd.read_csv(out / "index.csv")
    assert sorted(df["trial"]) == sorted(DESIGNS)
    for row in df.itertuples(index=False):
        rec = recs[row.trial]
        assert row.folder == f"trial-{rec.number}" and (out / row.folder / "summary.md").is_file()
        assert row.energy_uj == pytest.approx(rec.metrics["energy_uj"])
        assert row.throughput_ips == pytest.approx(rec.metrics["throughput_ips"])
        assert row.pe_rows == rec.params["pe_rows"]
        assert row.headroom_area_mm2 == pytest.approx(3.0 - rec.metrics["area_mm2"])
        assert row.headroom_power_mw == pytest.approx(150.0 - rec.metrics["power_mw"])
    md = (out / "index.md").read_text()
    rows = _md_table(md, "# Exported designs")
    assert [r["folder"] for r in rows] == [f"[trial-{n}](trial-{n}/summary.md)" for n in df["trial"]]
    assert "energy_uj ↓" in rows[0] and "throughput_ips ↑" in rows[0]
    from coopt import __version__
    assert f"by coopt {__version__}" in md                                     # what wrote it, and when
    feasible = [recs[n] for n in df["trial"] if recs[n].feasible]
    assert [r.metrics["energy_uj"] for r in feasible] == sorted(r.metrics["energy_uj"] for r in feasible)
    assert list(df["feasible"]) == sorted(df["feasible"], reverse=True)        # along the front, feasible first


def _fake_timeloop(tmp_path: Path, answers: dict[str, tuple[int, float]]) -> dict:
    """A stand-in timeloop-model on PATH writing a stats file's summary with the given cycles and energy."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    lines = "\n".join(f"{k} {c} {e!r} 1000" for k, (c, e) in answers.items())     # fJ/compute = pJ / 1000
    (tmp_path / "answers").write_text(lines + "\n")
    fake = bin_dir / "timeloop-model"
    fake.write_text(f"""#!/bin/sh
layer=$(basename "$3" .yaml)
line=$(grep "^$layer " {tmp_path / 'answers'}) || exit 1
set -- $line
printf 'Summary Stats\\n-------------\\nCycles: %s\\nEnergy: 0.01 uJ\\n\\nComputes = %s\\nfJ/Compute\\n    MACC = 1.00\\n    Total = %s\\n' "$2" "$4" "$3" > timeloop-model.stats.txt
""")
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_run_timeloop_compares_with_coopt(study, tmp_path):
    """run_timeloop.sh runs every layer (a failing one does not stop it) and prints PASS/FAIL per layer."""
    import subprocess

    rec = read_records(study)[0]
    (folder,) = export_trials(study, [rec.number], tmp_path / "out")
    first, second = rec.layers
    # Total fJ/Compute x 1000 computes / 1000 = pJ: first layer exact, second 1 % off in energy
    env = _fake_timeloop(tmp_path, {first.name: (first.cycles, first.energy_pj), second.name:
                                    (second.cycles, second.energy_pj * 1.01)})
    run = subprocess.run([str(folder / "run_timeloop.sh")], env=env, capture_output=True, text=True, timeout=60)
    lines = {l.split()[0]: l for l in run.stdout.splitlines()}
    assert run.returncode == 1, run.stdout + run.stderr
    assert lines[first.name].endswith("PASS") and lines[second.name].endswith("FAIL")
    assert (folder / "out" / second.name / "timeloop-model.stats.txt").is_file()
    (tmp_path / "b").mkdir()
    env = _fake_timeloop(tmp_path / "b", {first.name: (first.cycles, first.energy_pj * 1.004),
                                          second.name: (second.cycles, second.energy_pj)})
    run = subprocess.run([str(folder / "run_timeloop.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.count("PASS") == 2, run.stdout + run.stderr
    # without Timeloop: one line saying how to install it, exit 2, nothing run
    shutil.rmtree(folder / "out")
    run = subprocess.run([str(folder / "run_timeloop.sh")], env={**os.environ, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stdout == "" and run.stderr.count("\n") == 1
    assert "timeloop-model not found" in run.stderr and "timeloopaccelergy/timeloop-accelergy-pytorch" in run.stderr
    assert not (folder / "out").exists()


def test_hostile_layer_names_stay_inside(odd_study, tmp_path):
    out = tmp_path / "out"
    (folder,) = export_trials(odd_study, [5], out)
    assert not (tmp_path / "escaped.yaml").exists() and not (tmp_path / "prob").exists()
    for p in _files(tmp_path):
        assert p.resolve().is_relative_to(folder.resolve()) or p.name in ("index.csv", "index.md")
        assert p.resolve().is_relative_to(out.resolve())
        assert all(c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-" for c in p.name)
    assert sorted(p.name for p in (folder / "prob").iterdir()) == ["_escaped.yaml", "a_b_c_d.yaml"]
    md = (folder / "summary.md").read_text()
    assert "layer '../../../escaped' is written as '_escaped'" in md
    assert "timeloop-model arch.yaml components.yaml prob/a_b_c_d.yaml map/a_b_c_d.yaml ERT.yaml ART.yaml" in md
    for name in ("..", ".", "", "../..", "-rf", ".hidden", "ok.name-1"):
        s = safe_name(name)
        assert s and s not in (".", "..") and ".." not in s and not s.startswith((".", "-"))
    assert safe_name("ok.name-1") == "ok.name-1"


def test_refuses_to_write_through_a_link_outside(study, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "trial-0").symlink_to(outside)
    with pytest.raises(CooptError, match=r"refusing to write .*trial-0: it resolves to .*elsewhere, outside") as e:
        export_trials(study, [0], out, force=True)
    assert "\n" not in str(e.value)
    assert list(outside.iterdir()) == [] and sorted(p.name for p in out.iterdir()) == ["trial-0"]


def test_existing_folder_needs_force_and_force_replaces(study, tmp_path):
    out = tmp_path / "out"
    export_trials(study, [1], out)
    (out / "trial-1" / "stale.txt").write_text("old")
    with pytest.raises(CooptError, match=r"trial-1 already exists and is not empty; use force=True"):
        export_trials(study, [0, 1], out)
    assert not (out / "trial-0").exists()                       # nothing written when one target is refused
    assert (out / "trial-1" / "stale.txt").exists()
    folders = export_trials(study, [0, 1], out, force=True)
    assert not (out / "trial-1" / "stale.txt").exists() and (out / "trial-1" / "map").is_dir()
    assert [f.name for f in folders] == ["trial-0", "trial-1"]
    assert sorted(p.name for p in out.iterdir()) == ["index.csv", "index.md", "trial-0", "trial-1"]   # no temporary folders
    (out / "trial-2").mkdir()                                    # an empty folder is not an export
    export_trials(study, [2], out)
    assert (out / "trial-2" / "arch.yaml").exists()


def test_unknown_trial_number(study, tmp_path):
    with pytest.raises(CooptError) as e:
        export_trials(study, [0, 99], tmp_path / "out")
    assert str(e.value) == f"trial 99 not found in {study}; known trials: 0, 1, 2"
    assert not (tmp_path / "out").exists()
    with pytest.raises(CooptError, match="trial 3 not found in .*no trial records"):
        export_trials(tmp_path / "empty", [3], tmp_path / "out")


def test_unmapped_layers_are_exported_with_a_note(odd_study, tmp_path):
    (folder,) = export_trials(odd_study, [7], tmp_path)
    rec = {r.number: r for r in read_records(odd_study)}[7]
    mapped, lost = rec.layers
    assert (folder / f"prob/{lost.name}.yaml").exists() and not (folder / f"map/{lost.name}.yaml").exists()
    assert (folder / f"map/{mapped.name}.yaml").exists()
    md = (folder / "summary.md").read_text()
    assert (f"layer '{lost.name}' was not mapped: no valid mapping: test case; map/{lost.name}.yaml is omitted"
            in md)
    assert f"prob/{lost.name}.yaml map/" not in md and f"prob/{mapped.name}.yaml map/{mapped.name}.yaml" in md
    script = (folder / "run_timeloop.sh").read_text()
    assert f"\n{mapped.name} {mapped.cycles} " in script and f"\n{lost.name} " not in script
    s = json.loads((folder / "summary.json").read_text())
    assert s["all_layers_mapped"] is False and s["feasible"] is False
    assert s["layers"][1]["mapping"] is None and s["layers"][1]["command"] is None
    inputs = load_inputs([folder / "arch.yaml", folder / f"prob/{mapped.name}.yaml",
                          folder / f"map/{mapped.name}.yaml"],
                         ert=folder / "ERT.yaml", art=folder / "ART.yaml")
    assert evaluate(inputs.problem, inputs.arch, inputs.tables, inputs.mapping()).cycles == mapped.cycles


def test_pareto_numbers(study, tmp_path):
    """Against a front found by hand: feasible designs no other feasible design beats on both objectives."""
    base = read_records(study)
    d = tmp_path / "study"
    # one design made infeasible, and one that an altered copy dominates (less energy, more throughput)
    recs = [dataclasses.replace(base[0], number=0, feasible=False, reasons=["over budget"]),
            dataclasses.replace(base[1], number=1, feasible=True),
            dataclasses.replace(base[2], number=2, feasible=True),
            dataclasses.replace(base[1], number=3, feasible=True, params={**base[1].params, "altered": 1},
                                metrics={**base[1].metrics,
                                                            "energy_uj": base[1].metrics["energy_uj"] * 0.9,
                                                            "throughput_ips": base[1].metrics["throughput_ips"] * 1.1})]
    for r in recs:
        write_record(d, r)
    e = {r.number: r.metrics["energy_uj"] for r in recs}
    t = {r.number: r.metrics["throughput_ips"] for r in recs}
    expected = {n for n in (1, 2, 3) if not any(e[m] <= e[n] and t[m] >= t[n] and (e[m], t[m]) != (e[n], t[n])
                                                for m in (1, 2, 3))}
    front = pareto_numbers(d, OBJECTIVES)
    assert set(front) == expected and 1 not in front and 3 in front and 0 not in front
    assert front == sorted(front, key=lambda n: e[n])                       # first objective's order


def test_summary_json_is_strict_with_infinities(study, tmp_path):
    rec = read_records(study)[0]
    d = tmp_path / "study"
    write_record(d, dataclasses.replace(rec, number=9, metrics={**rec.metrics, "latency_ms": math.inf}))
    (folder,) = export_trials(d, [9], tmp_path / "out")
    s = json.loads((folder / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert s["metrics"]["latency_ms"] is None


def test_compound_classes_ship_as_package_data():
    from importlib import resources

    data = resources.files("coopt.energy").joinpath("data/compound_components.yaml")
    assert data.is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "energy/data/*.yaml" in config["tool"]["setuptools"]["package-data"]["coopt"]
