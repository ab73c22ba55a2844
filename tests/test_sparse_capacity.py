"""Buffer capacity under compression, against the real Timeloop master 4cf6d4c.

The exercise 04.2.3 (Eyeriss-like, Inputs kept RLE-compressed in the global buffer) with its reference
mapping: shared_glb holds 96 Inputs words dense (27 compressed at density 0.275) and 96 Outputs words.
Its depth cut from 12800 rows of 4 words to 40 rows (160 words), the dense tiles (192) overflow but the
compressed ones (123) fit; at 30 rows (120 words) they do not.  Real timeloop-model (built here by
benchmarks/build_real_tools.sh, run on the same files; tests/data/timeloop_master_4cf6d4c.json) accepts
the first (cycles 1,827,229, counts as the reference's) and refuses the second with "mapped tile size 123
exceeds buffer capacity 120".  coopt must do the same -- in ``evaluate``, in the mapper's batch path and
in its prefilter, which would otherwise reject every mapping that fits only compressed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from coopt.cli import main
from coopt.inputs import load_inputs
from coopt.mapper.constraints import constraints_from_inputs
from coopt.mapper.space import MapSpace
from coopt.model.batch import MappingBatch
from coopt.model.cost import ArchCosts
from coopt.model.sparse.batch import evaluate_batch_sparse, with_sparsity
from tests.test_sparse_reference import parse_sparse_stats

CASE = Path(__file__).resolve().parent / "data" / "sparseloop" / "04.2.3-eyeriss-like-onchip-compression"
MASTER = json.loads((Path(__file__).parent / "data" / "timeloop_master_4cf6d4c.json").read_text())["cases"]


def _input(tmp_path, depth: int) -> Path:
    raw = yaml.safe_load((CASE / "parsed-processed-input.yaml").read_text())
    raw.pop("mapping", None)
    raw.pop("architecture_constraints", None)

    def walk(n):
        if isinstance(n, dict):
            if str(n.get("name", "")).startswith("shared_glb"):
                n["attributes"]["depth"] = depth
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)
    walk(raw["architecture"])
    f = tmp_path / f"input{depth}.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f


def _evaluate(f, capsys):
    rc = main(["evaluate", str(f), str(CASE / "timeloop-mapper.map.yaml"), "--ert",
               str(CASE / "timeloop-mapper.ERT.yaml"), "--art", str(CASE / "timeloop-mapper.ART.yaml"), "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_a_tile_that_fits_only_compressed_is_valid_as_in_timeloop(tmp_path, capsys):
    real = MASTER["sparseloop/04.2.3-glb-depth-40"]
    rc, got = _evaluate(_input(tmp_path, 40), capsys)
    assert rc == 0 and got["valid"] and real["valid"]
    assert got["cycles"] == real["cycles"]
    ref = parse_sparse_stats((CASE / "timeloop-mapper.stats.txt").read_text())    # counts do not depend on depth
    for level, spaces in ref["levels"].items():
        for ds, counts in spaces.items():
            for k, v in counts.items():
                if "metadata" not in k:
                    assert got["levels"][level][ds][k] == v, f"{level}.{ds}.{k}"
    assert got["energy_pj"] == pytest.approx(real["energy_uj"] * 1e6, abs=0.005e6 + 1e-4 * got["energy_pj"])


def test_a_compressed_tile_that_overflows_is_refused_as_in_timeloop(tmp_path, capsys):
    real = MASTER["sparseloop/04.2.3-glb-depth-30"]
    rc, got = _evaluate(_input(tmp_path, 30), capsys)
    assert rc == 1 and not got["valid"] and not real["valid"]
    assert "123" in real["error"] and "120" in real["error"]
    assert "shared_glb" in got["reason"] and "123" in got["reason"] and "120" in got["reason"]


def test_the_mappers_batch_and_prefilter_count_compressed_tiles(tmp_path):
    inp = load_inputs([_input(tmp_path, 40), CASE / "timeloop-mapper.map.yaml"], ert=CASE / "timeloop-mapper.ERT.yaml",
                      art=CASE / "timeloop-mapper.ART.yaml", sparse=True)
    names = [ds.name for ds in inp.problem.dataspaces]
    mb = MappingBatch.from_mappings([inp.mapping()], names)
    space = MapSpace(inp.problem, inp.arch, constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources))
    ac = ArchCosts(inp.arch, with_sparsity(inp.tables, inp.sparse))
    (e1, c1, v1), (e2, c2, v2) = (evaluate_batch_sparse(space.pa, inp.arch, ac, mb),
                                  evaluate_batch_sparse(space.pa, inp.arch, ac, mb, row_by_row=True))
    assert v1[0] and v2[0] and c1[0] == c2[0] == 1827229 and e1[0] == pytest.approx(e2[0], rel=1e-12)
    assert not space.prefilter(mb).capacity[0]              # the dense tiles overflow shared_glb
    space.leave_capacity_to_the_model({"shared_glb"})
    assert space.prefilter(mb).ok[0]


def test_coopt_map_finds_a_mapping_that_fits_only_compressed(tmp_path, capsys):
    """The mapspace pinned to the reference mapping (its factors, orders and bypasses as constraints) on the
    160-word buffer: the mapper's prefilter and batch count compressed tiles, so ``coopt map`` returns that
    mapping, valid (the dense prefilter pruned it: "no valid mapping")."""
    f = _input(tmp_path, 40)
    raw = yaml.safe_load(f.read_text())
    pinned = yaml.safe_load((CASE / "timeloop-mapper.map.yaml").read_text())["mapping"]
    raw["architecture_constraints"] = {"targets": [{**t, "type": "bypass" if t["type"] == "datatype" else t["type"]}
                                                   for t in pinned]}
    raw.pop("mapspace_constraints", None)
    raw.pop("mapspace", None)
    f.write_text(yaml.safe_dump(raw))
    out = tmp_path / "best"
    rc = main(["map", str(f), "--ert", str(CASE / "timeloop-mapper.ERT.yaml"), "--art",
               str(CASE / "timeloop-mapper.ART.yaml"), "--budget", "50", "--out", str(out), "--json"])
    got = json.loads(capsys.readouterr().out)
    assert rc == 0, got
    assert got["cycles"] == MASTER["sparseloop/04.2.3-glb-depth-40"]["cycles"]
