"""Component classes in the input files replace the shipped ones in evaluate, map and network, as in energy.

Issue 16: ``coopt evaluate`` without ``--ert`` used coopt's own classes where
``coopt energy`` used the file's (5 of 10 exported designs 5-25 % off).  Here
one input set redefines ``intmac`` with every compute reference scaled by 3;
each command's MAC energy must equal ``coopt energy``'s compute entry times
the MACs, and differ from the unmodified set's.
"""
from __future__ import annotations

import copy
import json

import pytest
import yaml
from test_hostile import ONE_D, cli, dump
from test_hostile_inputs import _intmac


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classes")
    doc = yaml.safe_load((ONE_D / "input.yaml").read_text())
    plain = copy.deepcopy(doc)
    doc["compound_components"] = {"version": 0.4, "classes": [_intmac(3)]}
    scaled = dump(tmp / "scaled.yaml", doc)
    for d in (doc, plain):
        d.pop("mapping")
    return {"tmp": tmp, "scaled": scaled, "plain": ONE_D / "input.yaml",
            "scaled_arch": dump(tmp / "scaled_arch.yaml", doc), "plain_arch": dump(tmp / "plain_arch.yaml", plain)}


def _json(p):
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)


def _compute(path, tmp) -> float:
    return _json(cli("energy", path, "--json", cwd=tmp))["ert"]["MACC"]["compute"]


def test_energy_reads_the_files_class(inputs):
    tmp = inputs["tmp"]
    assert _compute(inputs["scaled"], tmp) == pytest.approx(3 * _compute(inputs["plain"], tmp), rel=1e-12)


def test_evaluate_uses_the_files_classes(inputs):
    tmp = inputs["tmp"]
    for key in ("scaled", "plain"):
        got = _json(cli("evaluate", inputs[key], "--json", cwd=tmp))
        assert got["mac_energy_pj"] == pytest.approx(_compute(inputs[key], tmp) * got["macs"], rel=1e-12)
    a = _json(cli("evaluate", inputs["scaled"], "--json", cwd=tmp))
    b = _json(cli("evaluate", inputs["plain"], "--json", cwd=tmp))
    assert a["mac_energy_pj"] == pytest.approx(3 * b["mac_energy_pj"], rel=1e-12)
    # Only the MAC's class changed, but an input that brings classes gets Accelergy's resolution: its
    # RegisterFile (class regfile, which it does not define) is Aladdin_table's primitive, not coopt's class.
    assert a["cycles"] == b["cycles"]
    assert {k: v for k, v in a["levels"].items() if k != "RegisterFile"} == \
        {k: v for k, v in b["levels"].items() if k != "RegisterFile"}


def test_map_uses_the_files_classes(inputs):
    tmp = inputs["tmp"]
    got = _json(cli("map", inputs["scaled"], "--budget", "200", "--json", cwd=tmp))
    assert got["mac_energy_pj"] == pytest.approx(_compute(inputs["scaled"], tmp) * got["macs"], rel=1e-12)


def test_network_uses_the_files_classes(inputs):
    tmp = inputs["tmp"]
    compute = {k: _compute(inputs[f"{k}_arch"], tmp) for k in ("scaled", "plain")}
    assert compute["scaled"] == pytest.approx(3 * compute["plain"], rel=1e-12)
    for k in ("scaled", "plain"):
        net = _json(cli("network", "--arch", inputs[f"{k}_arch"], "--network", "resnet18", "--budget", "30",
                        "--json", cwd=tmp, timeout=600))
        for layer in net["layers"]:
            mac = layer["energy_pj"] - sum(v["energy_pj"] for v in layer["levels"].values())
            assert mac == pytest.approx(compute[k] * layer["macs"], rel=1e-9), layer["name"]


def test_exported_components_carry_the_files_classes(inputs):
    """The classes written for Accelergy next to an exported design are the ones its energies came from."""
    from coopt.design import component_classes
    from coopt.energy.accelergy_files import components_yaml
    from coopt.energy.report import load_arch
    raw = yaml.safe_load(inputs["scaled_arch"].read_text())
    arch = load_arch(inputs["scaled_arch"])
    mine = components_yaml(arch, component_classes(raw, {}))["compound_components"]["classes"]
    shipped = components_yaml(arch)["compound_components"]["classes"]
    pick = {name: [c for c in cls if c["name"] == "intmac"][0] for name, cls in (("mine", mine), ("shipped", shipped))}
    assert pick["mine"] == _intmac(3) and pick["shipped"] != pick["mine"]
    # the input brings classes, so its regfile is Accelergy's primitive (as in the estimate): not written
    assert sorted(c["name"] for c in mine) == sorted(c["name"] for c in shipped if c["name"] != "regfile")
