"""Optimisations whose target the optimising level does not keep, against the REAL timeloop-model.

The exercises' references check one mapping each; ``coopt map`` explores their whole mapspaces, where a
skipping/gating target often bypasses the level the optimisation names (02.2.1's A, B and Z at Buffer).
Timeloop then optimises it at the nearest level above that keeps it -- or leaves it unoptimised -- by the
innermost loop below that level (``analysis._moves_up``).  benchmarks/sparse_differential.py compared
coopt with real Timeloop master 4cf6d4c on 30 random mappings of each sparseloop exercise (2026-12-07,
seed 5: 308 evaluated, 0 differences, 19 refused; after the block-size rule below, seed 6: 293, 0, 33)
and kept 20 such mappings with Timeloop's figures in
tests/data/sparse_differential/ (plus, under ``bandwidth/``, two bandwidth-bound mappings of 04.2.2 and
04.2.3 on which coopt's cycles were one off: Timeloop sums per-tensor bandwidths and counts whole metadata
words).  Before this rule coopt gave 13 of 30 of 02.2.1's mappings wrong counts
(A skipped where Timeloop skips nothing), and its mapper preferred exactly those.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from coopt.cli import main

DATA = Path(__file__).resolve().parent / "data"
CASES = sorted(str(p.parent.relative_to(DATA / "sparse_differential"))
               for p in (DATA / "sparse_differential").glob("*/*/real.json"))
MODEL_KEYS = ("architecture", "problem", "sparse_optimizations", "compound_components")


def differences(got: dict, real: dict) -> list[str]:
    """Where coopt's ``evaluate --json`` and Timeloop's parsed stats differ (cycles, MACs, every count,
    energy beyond 1e-4); also used by benchmarks/sparse_differential.py."""
    out = []
    if got["cycles"] != real["cycles"]:
        out.append(f"cycles {got['cycles']} != {real['cycles']}")
    if got["macs"] != real["macs"]:
        out.append(f"macs {got['macs']} != {real['macs']}")
    for level, spaces in real["levels"].items():
        for ds, counts in spaces.items():
            for k, v in counts.items():
                mine = got["levels"].get(level, {}).get(ds, {}).get(k)
                if "metadata" in k:
                    if [list(x) for x in (mine or [])] != v and any(x for r in v for x in r):
                        out.append(f"{level}.{ds}.{k} {mine} != {v}")
                elif mine != v:
                    out.append(f"{level}.{ds}.{k} {mine} != {v}")
    if abs(got["energy_pj"] - real["energy_pj"]) > 1e-4 * real["energy_pj"]:
        out.append(f"energy {got['energy_pj']} != {real['energy_pj']}")
    return out


def _model_input(case: str, tmp_path) -> Path:
    raw = yaml.safe_load((DATA / "sparseloop" / case / "parsed-processed-input.yaml").read_text())
    f = tmp_path / "input.yaml"
    f.write_text(yaml.safe_dump({k: raw[k] for k in MODEL_KEYS if k in raw}))
    return f


def _evaluate(case, mapping, tmp_path, capsys):
    c = DATA / "sparseloop" / case
    rc = main(["evaluate", str(_model_input(case, tmp_path)), str(mapping), "--ert", str(c / "timeloop-mapper.ERT.yaml"),
               "--art", str(c / "timeloop-mapper.ART.yaml"), "--json"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_the_oracles_hold_both_outcomes():
    """Moved targets that Timeloop optimises (02.2.1's B with N innermost) and that it leaves alone (A with
    N innermost, Inputs with S innermost) are both among the oracles."""
    assert len(CASES) >= 12
    skipped = {c: json.loads((DATA / "sparse_differential" / c / "real.json").read_text())["levels"]["BackingStorage"]
               for c in CASES if c.startswith("02.2")}
    assert any(lv["B"]["skipped_read"] > 0 for c, lv in skipped.items() if c.startswith("02.2.1"))
    assert all(lv["A"]["skipped_read"] == 0 for c, lv in skipped.items() if c.startswith("02.2"))


@pytest.mark.parametrize("case", CASES)
def test_coopt_equals_real_timeloop(case, tmp_path, capsys):
    exercise, _ = case.split("/")
    folder = DATA / "sparse_differential" / case
    rc, out, err = _evaluate(exercise, folder / "map.yaml", tmp_path, capsys)
    assert rc == 0, out + err
    assert differences(json.loads(out), json.loads((folder / "real.json").read_text())) == []


def test_a_read_write_target_moved_with_two_leaders_is_refused(tmp_path, capsys):
    """02.2.1's Z skipped at a Buffer that bypasses it, on A and B: Timeloop optimises it by rules coopt does
    not model (measured: 336 of 448 reads skipped on one such mapping) -- refused in one line, never a number."""
    ref = yaml.safe_load((DATA / "sparseloop" / "02.2.1-spMspM" / "timeloop-mapper.map.yaml").read_text())
    for t in ref["mapping"]:
        if t["target"] == "Buffer" and t["type"] == "datatype":
            t["keep"], t["bypass"] = ["B"], ["A", "Z"]
    f = tmp_path / "map.yaml"
    f.write_text(yaml.safe_dump(ref))
    rc, out, err = _evaluate("02.2.1-spMspM", f, tmp_path, capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "not modelled yet" in err and "Z" in err, err


BLOCK = sorted(p.parent.name for p in (DATA / "sparse_block").glob("*/real.json"))


@pytest.mark.parametrize("case", BLOCK)
def test_a_block_wide_leader_tile_as_in_real_timeloop(case, capsys):
    """Eyeriss-like (edge_sparse, block size 2 at weights_spad) weights gating on zero Inputs: Timeloop
    conditions each weights read on two Inputs when psum_spad's permutation starts with C (a loop over
    Inputs) -- at density 0.5 never empty, so nothing is gated -- and on one when it starts with M
    (analysis.leader_tiles).  coopt gated half the reads in both until this was measured."""
    folder = DATA / "sparse_block" / case
    rc = main(["evaluate", *(str(folder / f) for f in ("arch.yaml", "prob.yaml", "map.yaml")),
               "--ert", str(folder / "ERT.yaml"), "--art", str(folder / "ART.yaml"), "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    real = json.loads((folder / "real.json").read_text())
    assert differences(json.loads(out), real) == []
    gated = real["levels"]["weights_spad"]["Weights"]["gated_read"]
    assert (gated == 0) == case.startswith("c_first")
