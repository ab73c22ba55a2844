"""Aladdin_table's primitives and Accelergy's class resolution, held to the REAL Accelergy 0.4's outputs.

Issue 16: an input that brings its own component classes but not ``regfile`` (or ``intmac``) gets, in real
Accelergy, the Aladdin_table plug-in's primitive of that name; coopt used its shipped compound class
(a simba-like v4 design: 418 uJ in coopt vs 224.73 uJ in real Timeloop+Accelergy).  The oracles in
``tests/data/accelergy_primitives/`` are ERT.yaml/ART.yaml written by ``accelergy arch.yaml components.yaml``
(see its README); each test compares coopt's figures with them to Accelergy's printed precision.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from test_hostile import ROOT, cli

from coopt.energy import aladdin_table
from coopt.energy.accelergy import estimate_arch
from coopt.energy.accelergy_io import leaf_name
from coopt.energy.report import load_arch_and_components

DATA = ROOT / "tests" / "data" / "accelergy_primitives"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "ERT.yaml").is_file())
SIMBA = ROOT / "arch_base" / "simba_v4"


def _sig(x: float, digits: int = 6) -> float:
    """Accelergy's ``round_sigfig`` (its default precision, 6)."""
    return 0.0 if x == 0 else round(x, -int(math.floor(math.log10(abs(x)))) + (digits - 1))


def _real(case: str) -> tuple[dict, dict]:
    ert = yaml.safe_load((DATA / case / "ERT.yaml").read_text())["ERT"]["tables"]
    art = yaml.safe_load((DATA / case / "ART.yaml").read_text())["ART"]["tables"]
    return ({leaf_name(t["name"]): {a["name"]: a["energy"] for a in t["actions"]} for t in ert},
            {leaf_name(t["name"]): t["area"] for t in art})


def _coopt(case: str):
    arch, comps = load_arch_and_components(DATA / case / "arch.yaml")
    comps += [(yaml.safe_load((DATA / case / "components.yaml").read_text()), "components.yaml")]
    return estimate_arch(arch, comps)


def test_oracles_are_there():
    assert {"regfile_intmac_45nm", "regfile_intmac_40nm", "wrapper_args_45nm"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_coopt_energy_equals_real_accelergy(case):
    ert, art = _real(case)
    est = _coopt(case)
    assert set(est.tables.ert) == set(ert)
    for comp, actions in ert.items():
        got = est.tables.ert[comp]
        for action in set(actions) & set(got):
            assert _sig(got[action]) == pytest.approx(actions[action], rel=1e-12), (case, comp, action)
        assert {"read", "write", "update", "compute"} & set(actions) & set(got)
        assert _sig(est.tables.art[comp]) == pytest.approx(art[comp], rel=1e-12), (case, comp)


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("regfile_intmac")])
def test_every_action_of_the_top_level_primitives(case):
    """Actions coopt's tables do not list (intmac's mac_gated, mac_reused), straight from the module."""
    ert, art = _real(case)
    arch_yaml = yaml.safe_load((DATA / case / "arch.yaml").read_text())["architecture"]["subtree"][0]
    top = {**arch_yaml["attributes"], "global_cycle_seconds": float(arch_yaml["attributes"]["global_cycle_seconds"])}
    for comp in arch_yaml["local"]:
        attrs = {**top, **comp["attributes"]}
        for action, pj in ert[leaf_name(comp["name"])].items():
            assert _sig(aladdin_table.energy(comp["class"], action, attrs)) == pytest.approx(pj, rel=1e-12)
        assert _sig(aladdin_table.area(comp["class"], attrs)) == pytest.approx(art[leaf_name(comp["name"])])


def test_the_cli_prints_the_real_figures(tmp_path):
    case = "regfile_intmac_40nm"
    p = cli("energy", DATA / case / "arch.yaml", DATA / case / "components.yaml", "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    got, (ert, art) = json.loads(p.stdout), _real(case)
    assert _sig(got["ert"]["rf_128x32"]["write"]) == ert["rf_128x32"]["write"]
    assert _sig(got["art"]["mac"]) == art["mac"]


def test_another_technology_is_one_line_naming_the_component(tmp_path):
    """Aladdin_table answers 40/45 nm only and no other plug-in knows regfile: real Accelergy stops."""
    arch = yaml.safe_load((DATA / "regfile_intmac_45nm" / "arch.yaml").read_text())
    arch["architecture"]["subtree"][0]["attributes"]["technology"] = "22nm"
    (tmp_path / "arch.yaml").write_text(yaml.safe_dump(arch))
    p = cli("energy", tmp_path / "arch.yaml", DATA / "regfile_intmac_45nm" / "components.yaml", cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    line = p.stderr.strip()
    assert "\n" not in line and "arch.yaml" in line and "architecture.rf_64x128" in line
    assert "primitive class 'regfile'" in line and "a compound class named regfile" in line


def test_inputs_without_classes_keep_the_shipped_ones():
    """A design that brings no class list is estimated with coopt's shipped classes, as before."""
    arch, comps = load_arch_and_components(DATA / "regfile_intmac_45nm" / "arch.yaml")
    assert comps == []
    est = estimate_arch(arch, comps)
    ert, _ = _real("regfile_intmac_45nm")
    assert est.tables.ert["rf_64x128"]["read"] != pytest.approx(ert["rf_64x128"]["read"], rel=0.01)
    assert "Aladdin_table" not in {e for _, e in est.estimators["rf_64x128"]}


# -- a v4 spec that defines smartbuffer_RF but not regfile ---------------------------------------------------

@pytest.fixture(scope="module")
def spec_without_regfile(tmp_path_factory) -> Path:
    """arch_base/simba_v4 as it was before it defined regfile (its classes: intmac, smartbuffer_RF/SRAM)."""
    root = tmp_path_factory.mktemp("simba_noreg")
    shutil.copytree(SIMBA, root / "simba", dirs_exist_ok=True)
    classes = root / "simba" / "components" / "classes.yaml"
    doc = yaml.safe_load(classes.read_text())
    doc["compound_components"]["classes"] = [c for c in doc["compound_components"]["classes"]
                                             if c["name"] != "regfile"]
    classes.write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "simba" / "top.yaml.jinja2"


def _simba_oracle() -> dict:
    case = "simba_pe_buffers_45nm"
    if case not in CASES:
        pytest.skip("the real-tools oracle of simba's PE buffers is not stored")
    return _real(case)


def test_v4_spec_without_regfile_gets_the_primitive_in_energy(spec_without_regfile, tmp_path):
    ert, art = _simba_oracle()
    p = cli("energy", spec_without_regfile, "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    for comp in ("PEInputBuffer", "PEWeightBuffer", "PEAccuBuffer", "PEWeightRegs"):
        for action in ("read", "write", "update", "leak"):
            assert _sig(got["ert"][comp][action]) == pytest.approx(ert[comp][action], rel=1e-12), (comp, action)
        assert _sig(got["art"][comp]) == pytest.approx(art[comp], rel=1e-12), comp


def test_v4_spec_without_regfile_gets_the_primitive_in_evaluate(spec_without_regfile, tmp_path):
    """``coopt evaluate`` on its own estimate gives, level by level, what it gives on the real ERT/ART
    (one mapping of the spec's layer, found by ``coopt map`` on the shipped spec, for every run)."""
    _simba_oracle()
    p = cli("map", SIMBA / "top.yaml.jinja2", "--budget", "100", "--out", tmp_path / "m", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    mapping, real = tmp_path / "m" / "coopt-mapper.map.yaml", DATA / "simba_pe_buffers_45nm"
    runs = {}
    for name, spec, extra in (("own", spec_without_regfile, ()),
                              ("real", spec_without_regfile, ("--ert", real / "ERT.yaml", "--art", real / "ART.yaml")),
                              ("simba", SIMBA / "top.yaml.jinja2", ())):
        p = cli("evaluate", spec, mapping, *extra, "--json", cwd=tmp_path, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        runs[name] = json.loads(p.stdout)
    own, real, simba = runs["own"], runs["real"], runs["simba"]
    assert own["cycles"] == real["cycles"] == simba["cycles"]
    for comp in ("PEInputBuffer", "PEWeightBuffer", "PEAccuBuffer", "PEWeightRegs"):
        assert own["levels"][comp]["energy_pj"] > 0
        assert own["levels"][comp]["energy_pj"] == pytest.approx(real["levels"][comp]["energy_pj"], rel=1e-5)
        assert own["levels"][comp]["energy_pj"] < 0.5 * simba["levels"][comp]["energy_pj"]   # not the shipped class


# -- exports: never a shipped class where Accelergy takes a primitive; every shipped class the design used -----

def _arch(case: str):
    return load_arch_and_components(DATA / case / "arch.yaml")[0]


def _names(node: dict) -> list[str]:
    return [c["name"] for c in node["compound_components"]["classes"]]


def test_components_yaml_leaves_primitives_to_accelergy():
    from coopt.energy.accelergy_files import components_yaml
    arch = _arch("smartbuffer_rf_40nm")                        # smartbuffer_RF buffers, an intmac MAC
    own = [(yaml.safe_load((DATA / "regfile_intmac_40nm" / "components.yaml").read_text()), "c.yaml")]
    assert _names(components_yaml(arch, own)) == ["smartbuffer_RF"]     # carried; regfile, intmac: primitives
    assert sorted(_names(components_yaml(arch))) == ["intmac", "regfile", "smartbuffer_RF"]  # no classes: as before


def test_required_actions_go_to_the_primitives_written_as_such():
    from coopt.energy.accelergy_files import with_required_actions
    arch_yaml = yaml.safe_load((DATA / "smartbuffer_rf_40nm" / "arch.yaml").read_text())
    for comp in arch_yaml["architecture"]["subtree"][0]["local"]:
        comp.pop("required_actions", None)
    arch = _arch("smartbuffer_rf_40nm")

    def mac(tree):
        return tree["architecture"]["subtree"][0]["local"][-1]
    assert "required_actions" not in mac(with_required_actions(arch_yaml, arch))          # shipped intmac written
    assert mac(with_required_actions(arch_yaml, arch, compound={"smartbuffer_RF"}))["required_actions"] == \
        ["compute", "leak"]


def test_v4_export_carries_the_shipped_classes_the_spec_lacks(spec_without_regfile, tmp_path):
    """The processed form coopt exports for a spec without regfile and smartbuffer_SRAM: smartbuffer_SRAM
    (coopt's, which it estimated with) is added, regfile is not (Accelergy takes the primitive, as coopt did).
    Fed to the real Accelergy 0.4, that file gave every figure of ``coopt energy`` (README of the oracles)."""
    from coopt.arch.v4_spec import load_spec
    from coopt.arch.yaml_io import arch_from_yaml
    from coopt.export.v4 import _carry_shipped_classes
    spec = spec_without_regfile.parent
    classes = spec / "components" / "classes.yaml"
    doc = yaml.safe_load(classes.read_text())
    kept = [c for c in doc["compound_components"]["classes"] if c["name"] != "smartbuffer_SRAM"]
    raw = {}
    for cls_list in (kept, doc["compound_components"]["classes"]):
        classes.write_text(yaml.safe_dump({**doc, "compound_components": {**doc["compound_components"],
                                                                          "classes": cls_list}}))
        raw = load_spec([spec_without_regfile])[0]
        base = {k: raw[k] for k in ("architecture", "compound_components")}
        _carry_shipped_classes(base, arch_from_yaml(raw["architecture"]))
        assert sorted(_names(base)) == ["intmac", "smartbuffer_RF", "smartbuffer_SRAM"]
    raw = load_spec([SIMBA / "top.yaml.jinja2"])[0]
    base = {k: raw[k] for k in ("architecture", "compound_components")}
    _carry_shipped_classes(base, arch_from_yaml(raw["architecture"]))
    assert base["compound_components"] == raw["compound_components"]        # simba_v4 defines all it uses


def test_the_plug_in_tables_ship_in_the_wheel():
    """Every file of ``coopt/energy/data/aladdin_table`` matches the package data of pyproject.toml."""
    import fnmatch
    import tomllib
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["coopt"]
    files = [p.relative_to(ROOT / "coopt").as_posix() for p in (ROOT / "coopt" / "energy" / "data" /
                                                                 "aladdin_table").iterdir()]
    assert len(files) >= 12
    assert all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), files


def test_evaluate_equals_real_timeloop_on_a_v4_design_without_regfile(tmp_path):
    """simba_v4 without a regfile class, one ResNet-18 layer, one mapping: the processed form that the real
    timeloop-model (with Accelergy 0.4 and its plug-ins) ran, and its stats.  coopt gave 418.14 uJ before
    (its shipped regfile class); the real tools, and coopt now, 224.73 uJ with the same cycles."""
    case = DATA / "simba_noreg_timeloop"
    stats = (case / "timeloop-model.stats.txt").read_text()
    summary = stats[stats.index("Summary Stats"):]
    real_cycles = int(summary.split("Cycles: ")[1].split()[0])
    real_uj = float(summary.split("Energy: ")[1].split()[0])
    per_compute = {}
    for line in summary.split("fJ/Compute")[1].splitlines():
        if "=" in line:
            name, value = line.split("=")
            per_compute[name.strip()] = float(value)
    p = cli("evaluate", case / "processed.yaml", "--json", cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout)
    assert got["cycles"] == real_cycles
    assert round(got["energy_pj"] / 1e6, 2) == real_uj
    assert round(got["mac_energy_pj"] / got["macs"] * 1000, 2) == per_compute.pop("mac")
    assert round(got["energy_pj"] / got["macs"] * 1000, 2) == per_compute.pop("Total")
    for name, fj in per_compute.items():
        assert round(got["levels"][name]["energy_pj"] / got["macs"] * 1000, 2) == fj, name
