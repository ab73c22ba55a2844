"""The Sparseloop exercises read as shipped: timeloopfe v4 architectures whose nodes carry
``sparse_optimizations`` and problems with ``densities`` (tests/data/sparseloop/<case>/v4/).

Their processed form must hold the same ``sparse_optimizations`` and densities as the
``parsed-processed-input.yaml`` the real timeloopfe wrote, and ``coopt evaluate`` with the
reference's mapping and ERT/ART must give the same figures from either input.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from coopt.arch.v4_spec import load_spec
from coopt.cli import main
from coopt.errors import SpecError

DATA = Path(__file__).resolve().parent / "data" / "sparseloop"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "v4").is_dir())


def _ref(case: str) -> dict:
    return yaml.safe_load((DATA / case / "parsed-processed-input.yaml").read_text())


def test_every_exercise_ships_a_v4_form():
    assert len(CASES) == 12


@pytest.mark.parametrize("case", CASES)
def test_processed_sparse_optimizations_equal_timeloopfe(case):
    raw, sources = load_spec([DATA / case / "v4" / "arch.yaml", DATA / case / "v4" / "problem.yaml"])
    ref = _ref(case)
    assert raw.get("sparse_optimizations") == ref.get("sparse_optimizations")
    mine = raw["problem"]["instance"].get("densities") or {}
    theirs = ref["problem"]["instance"].get("densities") or {}
    assert {t: (d["distribution"], d["density"]) for t, d in mine.items()} == \
           {t: (d["distribution"], d["density"]) for t, d in theirs.items()}
    if raw.get("sparse_optimizations"):
        assert sources["sparse_optimizations"].endswith("arch.yaml")


def _evaluate(inputs: list, case: str, capsys) -> tuple[int, str, str]:
    c = DATA / case
    rc = main(["evaluate", *map(str, inputs), str(c / "timeloop-mapper.map.yaml"),
               "--ert", str(c / "timeloop-mapper.ERT.yaml"), "--art", str(c / "timeloop-mapper.ART.yaml"), "--json"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# 04.2.2's arch.yaml ships search-narrowing mapspace_constraints (shared_glb Q=1, ...) that its reference run did
# not have (its processed input holds no such target, and its best mapping has Q=13 at shared_glb).
_NOT_IN_REFERENCE_RUN = {"04.2.2-eyeriss-like-gating-mapspace-search": "\nmapspace_constraints:"}


@pytest.mark.parametrize("case", CASES)
def test_evaluate_as_shipped_equals_the_processed_input(case, tmp_path, capsys):
    """Every count, the cycles and the energy (tests/test_sparse_reference.py holds the processed input's
    figures to the real run's) are the same from the v4 files."""
    v4 = DATA / case / "v4"
    arch = v4 / "arch.yaml"
    if case in _NOT_IN_REFERENCE_RUN:
        text = arch.read_text()
        arch = tmp_path / "arch.yaml"
        arch.write_text(text.split(_NOT_IN_REFERENCE_RUN[case])[0])
        assert "sparse_optimizations" in arch.read_text()
    rc, out, err = _evaluate([arch, v4 / "problem.yaml"], case, capsys)
    raw = _ref(case)
    raw.pop("mapping", None)
    f = tmp_path / "input.yaml"
    f.write_text(yaml.safe_dump(raw))
    rc_ref, out_ref, err_ref = _evaluate([f], case, capsys)
    assert rc == rc_ref == 0, err + err_ref
    got, want = json.loads(out), json.loads(out_ref)
    assert got["cycles"] == want["cycles"] and got["macs"] == want["macs"]
    assert got["levels"] == want["levels"]
    assert got["energy_pj"] == pytest.approx(want["energy_pj"], rel=1e-12)


_ARCH = """architecture:
  version: 0.4
  nodes:
  - !Container {name: top, attributes: {technology: "45nm"}}
  - !Component {name: Buffer, class: storage, subclass: regfile,
                attributes: {depth: 64, width: 8, datawidth: 8}%s}
  - !Component {name: mac, class: intmac, attributes: {multiplier_width: 8, adder_width: 16}}
"""
_GATE = "{action_optimization: [{type: gating, options: [{target: A, condition_on: [B]}]}]}"


def _write(tmp_path, node_sparse: str = "", extra: str = "") -> list:
    shipped = DATA / "01.2.2-SUDU-dot-product" / "v4" / "problem.yaml"
    arch = tmp_path / "arch.yaml"
    arch.write_text(_ARCH % node_sparse + extra)
    return [arch, shipped]


def test_top_level_targets_attach_to_their_node(tmp_path):
    """timeloopfe's sparse_opt_attacher: ``sparse_optimizations: targets: [{target: NODE, ...}]`` joins the
    node's group; the processed entry is named after the node, as a node's own one is."""
    top = f"sparse_optimizations:\n  targets:\n  - {{target: Buffer, action_optimization: {yaml.safe_load(_GATE)['action_optimization']}}}\n"
    raw, _ = load_spec(_write(tmp_path, extra=top))
    (tmp_path / "inline").mkdir()
    inline, _ = load_spec(_write(tmp_path / "inline", node_sparse=f", sparse_optimizations: {_GATE}"))
    want = {"targets": [{"action_optimization": [{"type": "gating", "options": [{"target": "A", "condition_on": ["B"]}]}],
                         "name": "Buffer"}]}
    assert raw["sparse_optimizations"] == want == inline["sparse_optimizations"]


@pytest.mark.parametrize("node_sparse, extra, message", [
    (", sparse_optimizations: {targets: []}", "", "unknown key 'targets' in sparse_optimizations"),
    (", sparse_optimizations: [1]", "", "is a list"),
    ("", "sparse_optimizations:\n  targets:\n  - {target: nowhere, action_optimization: [1]}\n",
     "target 'nowhere' is not a node"),
    (f", sparse_optimizations: {_GATE}", "sparse_optimizations:\n  targets:\n  - {target: Buffer, "
     "action_optimization: [{type: skipping, options: [{target: A, condition_on: [B]}]}]}\n",
     "given both here and in the node"),
])
def test_malformed_sparse_optimizations_are_refused(tmp_path, node_sparse, extra, message):
    with pytest.raises(SpecError, match=message) as err:
        load_spec(_write(tmp_path, node_sparse, extra))
    assert "arch.yaml" in str(err.value)


def test_a_containers_sparse_optimizations_are_refused(tmp_path):
    arch = tmp_path / "arch.yaml"
    arch.write_text((_ARCH % "").replace("name: top,", f"name: top, sparse_optimizations: {_GATE},"))
    with pytest.raises(SpecError, match="on a container would be ignored by timeloopfe"):
        load_spec([arch, DATA / "01.2.2-SUDU-dot-product" / "v4" / "problem.yaml"])
