"""`coopt compare STUDY TRIAL TRIAL...`: designs side by side, checked against their trial records."""
from __future__ import annotations

import json
import os

import pytest

from coopt.backends.base import MapperOptions
from coopt.cli import main
from coopt.study.records import write_record
from coopt.study.trial import evaluate_design
from coopt.workload.networks import Network, resnet18

OBJECTIVES = [("energy_uj", "minimize"), ("throughput_ips", "maximize")]


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A hand-made study folder (settings and two records) on the built-in tables."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COOPT_ENERGY", "builtin")
    net = Network("head", resnet18().layers[:2])
    sdir = tmp_path / "mlruns" / "studies" / "cmp"
    recs = []
    for i, (r, c) in enumerate([(4, 4), (8, 8)]):
        p = {"pe_rows": r, "pe_cols": c}
        rec = evaluate_design(i, p, "eyeriss_like", p, None, net, MapperOptions(budget=100), {}, OBJECTIVES)
        write_record(sdir, rec)
        recs.append(rec)
    (sdir / "study.json").write_text(json.dumps({"settings": {"objectives": OBJECTIVES, "budgets": {}}}))
    return recs


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def _rows(text: str, title: str) -> dict[str, list[str]]:
    block = text.split(title + "\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return {ln.split("  ")[0].strip(): ln.split()[-2:] for ln in block}


def test_compare_prints_the_designs_side_by_side_and_draws_them(study, tmp_path, capsys):
    a, b = study
    assert main(["compare", "cmp", "0", "1", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "t000 4x4" in text and "t001 8x8" in text
    totals = _rows(text, "totals")
    for i, rec in enumerate(study):
        assert _number(totals["energy µJ"][i]) == pytest.approx(rec.metrics["energy_uj"], rel=1e-3)
        assert _number(totals["area mm²"][i]) == pytest.approx(rec.metrics["area_mm2"], rel=1e-3)
    cycles = _rows(text, "cycles per layer (all its executions)")
    for i, rec in enumerate(study):
        for layer in rec.layers:
            assert _number(cycles[layer.name][i]) == layer.count * layer.cycles          # exact, with commas
    energy = _rows(text, "energy per component (µJ per inference)")
    for i, rec in enumerate(study):                  # the components add up to the design's energy
        assert sum(_number(v[i]) for v in energy.values()) == pytest.approx(rec.metrics["energy_uj"], rel=5e-3)
    assert not any(k.startswith("inter_PE") for k in energy)          # zero-energy wiring placeholders left out
    assert "DRAM (off-chip)" in text
    png = tmp_path / "out" / "compare-t000-t001.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 10_000
    assert (tmp_path / "out" / "compare-t000-t001.txt").read_text().startswith("study cmp: 2 designs")


def test_compare_names_a_missing_trial_in_one_line(study, capsys):
    assert main(["compare", "cmp", "0", "7"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no completed trial 7" in err and "Traceback" not in err
