"""Hostile inputs of issue 20 item 7's classes "expression evaluation" and "inputs silently overridden",
and constraint forms coopt cannot honour, through the real command line.

Each refused case: exit 2, one line on stderr naming the file and the key, no traceback, within seconds
(the subprocess timeout) and, for the expression bombs, bounded memory (a child limited to 2 GB of address
space would die of MemoryError otherwise).  Each accepted-but-surprising case: one warning line.
"""
from __future__ import annotations

import copy
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_hostile import ONE_D, dump, refused

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "coopt" / "energy" / "data" / "compound_components.yaml"
MEMORY = 2 * 1024 ** 3


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def cli(*args, cwd, env=None, timeout=60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    p = subprocess.run([sys.executable, "-m", "coopt.cli", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout, preexec_fn=_limit)
    p.cwd = str(cwd)
    return p


def warned(p, *names) -> str:
    lines = [line for line in p.stderr.splitlines() if "warning" in line]
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(lines) == 1, p.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def one_d():
    return yaml.safe_load((ONE_D / "input.yaml").read_text())


def _intmac(scale) -> dict:
    """The shipped intmac class with ``energy_scale: scale`` on its compute action's references."""
    classes = yaml.safe_load(SHIPPED.read_text())["compound_components"]["classes"]
    cls = copy.deepcopy(next(c for c in classes if c["name"] == "intmac"))
    for act in cls["actions"]:
        if act["name"] == "compute":
            for ref in act["subcomponents"]:
                for a in ref["actions"]:
                    a["energy_scale"] = scale
    return cls


def _with_class(one_d, tmp_path, *classes) -> Path:
    doc = copy.deepcopy(one_d)
    doc["compound_components"] = {"version": 0.4, "classes": list(classes)}
    return dump(tmp_path / "in.yaml", doc)


# ----------------------------------------------------------------- expression evaluation

BOMBS = {
    "power": "2 ** 2 ** 40",
    "pow": "pow(10, 10 ** 6)",
    "repeat": "len('x' * 10 ** 10)",
    "long": "+".join(["1"] * 3000),
    "deep": "(" * 500 + "1" + ")" * 500,
    "nan": "float('nan')",
    "inf": "1e308 * 10",
}


@pytest.mark.parametrize("case", sorted(BOMBS))
@pytest.mark.parametrize("command", ["energy", "evaluate"])
def test_expression_bombs_are_one_line(case, command, one_d, tmp_path):
    f = _with_class(one_d, tmp_path, _intmac(BOMBS[case]))
    refused(cli(command, f, cwd=tmp_path), "in.yaml", "energy_scale")


def test_nan_number_in_a_class_is_refused(one_d, tmp_path):
    f = _with_class(one_d, tmp_path, _intmac(float("nan")))
    refused(cli("energy", f, cwd=tmp_path), "in.yaml", "energy_scale", "finite")


def test_negative_energies_are_refused_by_energy_as_by_evaluate_ert(one_d, tmp_path):
    f = _with_class(one_d, tmp_path, _intmac(-1))
    for command in ("energy", "evaluate"):
        refused(cli(command, f, cwd=tmp_path), "in.yaml", "intmac", ">= 0")
    ert = {"ERT": {"version": "0.4", "tables": [{"name": "MACC", "actions": [{"name": "compute", "energy": -2.0}]}]}}
    e = dump(tmp_path / "ERT.yaml", ert)
    refused(cli("evaluate", ONE_D / "input.yaml", "--ert", e, cwd=tmp_path), "ERT.yaml", "energy", ">= 0")


def test_template_expression_bomb_is_one_line(tmp_path):
    """Templates' ${...} placeholders go through the same bounds."""
    text = (ROOT / "arch_base" / "eyeriss_like.yaml").read_text()
    for bomb in ("len('x' * 10 ** 10)", "(" * 300 + "1" + ")" * 300, "+".join(["1"] * 3000)):
        f = tmp_path / "bomb.yaml"
        f.write_text(text.replace("${1 / (clock_mhz * 1000000)}", "${" + bomb + "}"))
        refused(cli("arch", f, cwd=tmp_path), "bomb.yaml", "global_cycle_seconds")


# ----------------------------------------------------------------- silent overrides

def test_a_class_defined_twice_is_refused(one_d, tmp_path):
    f = _with_class(one_d, tmp_path, _intmac(2), _intmac(3))
    refused(cli("energy", f, cwd=tmp_path), "in.yaml", "classes[1]", "intmac", "defined twice")
    refused(cli("evaluate", f, cwd=tmp_path), "in.yaml", "classes[1]", "defined twice")


def test_two_ert_tables_for_one_component_warn(tmp_path):
    t = [{"name": "MACC", "actions": [{"name": "compute", "energy": 1.0}]},
         {"name": "sys.MACC[1..1]", "actions": [{"name": "compute", "energy": 2.0}]}]
    e = dump(tmp_path / "ERT.yaml", {"ERT": {"version": "0.4", "tables": t}})
    warned(cli("evaluate", ONE_D / "input.yaml", "--ert", e, cwd=tmp_path), "ERT.yaml", "tables[1]", "MACC")


def test_ert_names_that_match_nothing_warn(tmp_path):
    t = [{"name": "sys.NoSuchBuffer[1..4]", "actions": [{"name": "read", "energy": 1.0}]}]
    e = dump(tmp_path / "ERT.yaml", {"ERT": {"version": "0.4", "tables": t}})
    warned(cli("evaluate", ONE_D / "input.yaml", "--ert", e, cwd=tmp_path), "ERT.yaml", "NoSuchBuffer")


def test_keep_and_bypass_of_one_data_space_is_refused(one_d, tmp_path):
    doc = copy.deepcopy(one_d)
    doc.pop("mapping")
    doc["architecture_constraints"] = {"targets": [
        {"target": "GlobalBuffer", "type": "bypass", "keep": ["Weights"]},
        {"target": "GlobalBuffer", "type": "dataspace", "bypass": ["Weights", "Inputs"]}]}
    refused(cli("map", dump(tmp_path / "c.yaml", doc), "--budget", "50", cwd=tmp_path),
            "c.yaml", "architecture_constraints[1]", "Weights", "both kept and bypassed")


@pytest.mark.parametrize("value", ["yes", "2", "on"])
def test_invalid_coopt_jit_is_refused(value, tmp_path):
    refused(cli("evaluate", ONE_D / "input.yaml", env={"COOPT_JIT": value}, cwd=tmp_path), "COOPT_JIT", value)


def test_depth_zero_buffer_is_reported_against_the_users_file(one_d, tmp_path):
    doc = copy.deepcopy(one_d)
    text = yaml.safe_dump(doc).replace("depth: 64", "depth: 0")
    f = tmp_path / "d0.yaml"
    f.write_text(text)
    for command in ("energy", "evaluate"):
        line = refused(cli(command, f, cwd=tmp_path), "d0.yaml", "RegisterFile")
        assert line.split(": ")[2].endswith("d0.yaml"), line        # the file named first is the user's


def test_technology_error_names_its_file(one_d, tmp_path):
    f = tmp_path / "tech.yaml"
    f.write_text(yaml.safe_dump(one_d).replace("40nm", "banana"))
    for command in ("energy", "evaluate"):
        refused(cli(command, f, cwd=tmp_path), "tech.yaml", "technology", "banana")


# ----------------------------------------------------------------- constraint forms refused in one line

def _constrained(one_d, tmp_path, *targets) -> Path:
    doc = copy.deepcopy(one_d)
    doc.pop("mapping")
    doc["architecture_constraints"] = {"targets": list(targets)}
    return dump(tmp_path / "c.yaml", doc)


REFUSED = {
    "misspelt key": ({"target": "GlobalBuffer", "type": "temporal", "factor": "K=1"}, "factor"),
    "no_reuse": ({"target": "GlobalBuffer", "type": "temporal", "no_reuse": ["Weights"]}, "no_reuse"),
    "no_coalesce": ({"target": "GlobalBuffer", "type": "bypass", "no_coalesce": ["Inputs"]}, "no_coalesce"),
    "no_link_transfer": ({"target": "GlobalBuffer", "type": "spatial", "no_link_transfer": ["Inputs"]},
                         "no_link_transfer"),
    "overbooking": ({"target": "GlobalBuffer", "type": "max_overbooked_proportion", "proportion": 0.1},
                    "max_overbooked_proportion"),
    "utilization max": ({"target": "RegisterFile", "type": "utilization", "max": 0.5}, "max"),
    "utilization above innermost": ({"target": "GlobalBuffer", "type": "utilization", "min": 0.5}, "target"),
    "unknown type": ({"target": "GlobalBuffer", "type": "tempral"}, "type"),
    "conflicting factors": ({"target": "GlobalBuffer", "type": "temporal", "factors": ["K=2", "K=4"]}, "factors"),
    "min above max": ({"target": "GlobalBuffer", "type": "temporal", "factors": "K>=8 K<=4"}, "factors"),
    "spatial at a level without fan-out": ({"target": "GlobalBuffer", "type": "spatial", "factors": "K=4"},
                                           "factors"),
    "bad factor map": ({"target": "GlobalBuffer", "type": "temporal", "factors": {"K": [1]}}, "factors"),
    "attributes not a mapping": ({"target": "GlobalBuffer", "type": "temporal", "attributes": ["K=1"]},
                                 "attributes"),
    "unknown level": ({"target": "L2", "type": "temporal", "factors": "K=1"}, "target"),
    "level index out of range": ({"target": 7, "type": "temporal", "factors": "K=1"}, "target"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_constraint_forms_coopt_cannot_honour_are_refused(case, one_d, tmp_path):
    target, key = REFUSED[case]
    refused(cli("map", _constrained(one_d, tmp_path, target), "--budget", "50", cwd=tmp_path), "c.yaml", key)


def test_a_second_permutation_for_one_level_is_refused(one_d, tmp_path):
    f = _constrained(one_d, tmp_path, {"target": "GlobalBuffer", "type": "temporal", "permutation": "KRP"},
                     {"target": "GlobalBuffer", "type": "temporal", "permutation": "PRK"})
    refused(cli("map", f, "--budget", "50", cwd=tmp_path), "c.yaml", "permutation")


def test_a_factor_beyond_the_dimension_warns_as_timeloop_does(one_d, tmp_path):
    f = _constrained(one_d, tmp_path, {"target": "GlobalBuffer", "type": "temporal", "factors": "K=64"})
    warned(cli("map", f, "--budget", "50", cwd=tmp_path), "K=64", "ignored")
