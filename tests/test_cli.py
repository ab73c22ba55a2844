"""The command line: evaluate's outputs, and one-line errors (exit 2, no traceback) on bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from coopt.cli import main
from reference import cases

EYERISS = [c for c in cases("model") if c.name.startswith("06-")]
ONE_LEVEL = [c for c in cases("model") if c.name.startswith("00-")]
needs_ref = pytest.mark.skipif(not EYERISS or not ONE_LEVEL, reason="reference runs not found")


def _case_dict(case):
    return yaml.safe_load((case / "input.yaml").read_text())


def _write(tmp_path, name, doc):
    f = tmp_path / name
    f.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return str(f)


@needs_ref
def test_json_has_documented_keys(capsys):
    rc = main(["evaluate", str(EYERISS[0] / "input.yaml"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    for key in ("energy_pj", "cycles", "utilization", "macs", "levels"):
        assert key in out
    glb = out["levels"]["shared_glb"]
    assert {"energy_pj", "Inputs", "Outputs"} <= set(glb)
    assert {"reads", "fills", "updates"} <= set(glb["Inputs"])
    # without Accelergy tables coopt estimates energies: same counts, plausible energy
    assert out["cycles"] == 5505024
    assert 1.0 < out["energy_pj"] / out["macs"] < 10.0


@needs_ref
def test_split_files_are_merged(tmp_path, capsys):
    doc = _case_dict(EYERISS[0])
    a = _write(tmp_path, "arch.yaml", {"architecture": doc["architecture"]})
    p = _write(tmp_path, "prob.yaml", {"problem": doc["problem"]})
    m = _write(tmp_path, "map.yaml", {"mapping": doc["mapping"]})
    assert main(["evaluate", a, p, m, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cycles"] == 5505024


@needs_ref
def test_text_summary(capsys):
    case = EYERISS[0]
    assert main(["evaluate", str(case / "input.yaml"), "--ert", str(case / "ERT.yaml"),
                 "--art", str(case / "ART.yaml")]) == 0
    text = capsys.readouterr().out
    assert "Cycles: 5,505,024" in text
    assert "2982.03 fJ/MAC" in text
    assert "shared_glb" in text


@needs_ref
def test_overflowing_tile_is_an_invalid_result_not_a_crash(tmp_path, capsys):
    doc = _case_dict(EYERISS[0])
    for comp in doc["architecture"]["subtree"][0]["local"]:
        if comp["name"].startswith("weights_spad"):
            comp["attributes"]["depth"] = 4
    rc = main(["evaluate", _write(tmp_path, "in.yaml", doc), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["valid"] is False
    assert "weights_spad" in out["reason"] and "exceeds" in out["reason"]


def _mutate(case, fn):
    doc = _case_dict(case)
    fn(doc)
    return doc


def _set_mapping_factors(doc, target, factors):
    for d in doc["mapping"]:
        if d.get("target") == target and d.get("type", "temporal") == "temporal":
            d["factors"] = factors


BAD = {
    "missing file": (lambda tmp: ["/no/such/file.yaml"], "file"),
    "yaml syntax": (lambda tmp: [_write(tmp, "bad.yaml", "architecture: [1, 2\nproblem: x\n")], "line"),
    "no architecture": (lambda tmp: [_write(tmp, "p.yaml", {"problem": _case_dict(ONE_LEVEL[0])["problem"]})],
                        "architecture"),
    "unknown level in mapping": (lambda tmp: [_write(tmp, "m.yaml", _mutate(
        ONE_LEVEL[0], lambda d: d["mapping"][0].__setitem__("target", "Nowhere")))], "Nowhere"),
    "unknown dimension in factors": (lambda tmp: [_write(tmp, "m.yaml", _mutate(
        ONE_LEVEL[0], lambda d: _set_mapping_factors(d, "Buffer", "R=3,P=16,Z=2")))], "'Z'"),
    "factor product wrong": (lambda tmp: [_write(tmp, "m.yaml", _mutate(
        ONE_LEVEL[0], lambda d: _set_mapping_factors(d, "Buffer", "R=3,P=8")))], "P"),
    "unreadable factors": (lambda tmp: [_write(tmp, "m.yaml", _mutate(
        ONE_LEVEL[0], lambda d: _set_mapping_factors(d, "Buffer", "R three")))], "factors"),
    "unknown permutation letter": (lambda tmp: [_write(tmp, "m.yaml", _mutate(
        ONE_LEVEL[0], lambda d: d["mapping"][0].__setitem__("permutation", "RX")))], "permutation"),
    "negative bound": (lambda tmp: [_write(tmp, "m.yaml", _mutate(
        ONE_LEVEL[0], lambda d: d["problem"]["instance"].__setitem__("P", -4)))], "problem.instance.P"),
    "unknown data space in bypass": (lambda tmp: [_write(tmp, "m.yaml", _mutate(
        EYERISS[0], lambda d: d["mapping"][0].__setitem__("bypass", ["Psums"])))], "Psums"),
    "mapping not a list": (lambda tmp: [_write(tmp, "m.yaml", _mutate(
        ONE_LEVEL[0], lambda d: d.__setitem__("mapping", "oops")))], "mapping"),
    "bad ERT": (lambda tmp: [str(ONE_LEVEL[0] / "input.yaml"), "--ert",
                             _write(tmp, "ERT.yaml", {"ERT": {"tables": [{"name": "x", "actions": "no"}]}})],
                "ERT"),
}


@needs_ref
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_one_line_exit_2(name, tmp_path, capsys):
    make_args, must_mention = BAD[name]
    rc = main(["evaluate", *make_args(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert must_mention in err, err
    assert "Traceback" not in err


def test_template_parameter_out_of_range(capsys):
    rc = main(["arch", "eyeriss_like", "--set", "pe_rows=300"])
    err = capsys.readouterr().err
    assert rc == 2 and "pe_rows" in err and "256" in err


def test_unknown_template(capsys):
    assert main(["arch", "no_such_design"]) == 2
    assert "eyeriss_like" in capsys.readouterr().err


@needs_ref
def test_real_process_exit_code_and_no_traceback(tmp_path):
    bad = _write(tmp_path, "bad.yaml", "architecture: {")
    proc = subprocess.run([sys.executable, "-m", "coopt.cli", "evaluate", bad], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "bad.yaml" in proc.stderr
