"""The mapper's batch path with representation formats (vector + vformats) equals ``evaluate_sparse`` row by row.

Over a few hundred random mappings of each Sparseloop exercise that keeps
formats (from its own mapspace and constraints), the batch path's energy,
cycles and validity must equal the row-by-row oracle's (the path
tests/test_sparse_reference.py holds to Sparseloop's outputs) -- energy to
1e-12 relative, the rest identical, the same rows refused; so also over
mappings the exercises' constraints rule out (refusals, format failures,
dense overflows); and on each exercise's reference mapping the batch path
gives Sparseloop's own cycles and energy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from coopt.inputs import load_inputs
from coopt.mapper.constraints import constraints_from_inputs
from coopt.mapper.space import MapSpace
from coopt.model.batch import MappingBatch
from coopt.model.cost import ArchCosts
from coopt.model.nest import ProblemArrays
from coopt.model.sparse.batch import evaluate_batch_sparse, with_sparsity
from tests.test_sparse_reference import parse_sparse_stats

DATA = Path(__file__).resolve().parent / "data" / "sparseloop"
WITH_FORMATS = ["01.2.3-SCDU-dot-product", "02.2.1-spMspM", "02.2.2-spMspM-tiled", "03.2.1-conv1d",
                "03.2.2-conv1d+oc", "03.2.3-conv1d+oc-spatial", "04.2.1-eyeriss-like-gating",
                "04.2.2-eyeriss-like-gating-mapspace-search", "04.2.3-eyeriss-like-onchip-compression"]


def _inputs(tmp_path, case, edit=None):
    c = DATA / case
    raw = yaml.safe_load((c / "parsed-processed-input.yaml").read_text())
    raw.pop("mapping", None)
    if edit:
        edit(raw)
    f = tmp_path / "input.yaml"
    f.write_text(yaml.safe_dump(raw))
    return load_inputs([f, c / "timeloop-mapper.map.yaml"], ert=c / "timeloop-mapper.ERT.yaml",
                       art=c / "timeloop-mapper.ART.yaml", sparse=True)


def _free(raw):
    """No architecture or mapspace constraints: any bypass, factors and orders (the refused and failed paths)."""
    for k in ("architecture_constraints", "mapspace", "mapspace_constraints"):
        raw.pop(k, None)


def _no_formats(raw):
    for t in raw["sparse_optimizations"]["targets"]:
        t.pop("representation_format", None)


def _both(inp, pa, mb):
    ac = ArchCosts(inp.arch, with_sparsity(inp.tables, inp.sparse))
    return (evaluate_batch_sparse(pa, inp.arch, ac, mb),
            evaluate_batch_sparse(pa, inp.arch, ac, mb, row_by_row=True))


@pytest.mark.parametrize("case", WITH_FORMATS)
def test_batch_with_formats_equals_rows(tmp_path, case):
    inp = _inputs(tmp_path, case)
    assert inp.sparse.formats
    space = MapSpace(inp.problem, inp.arch, constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources))
    mb = space.sample(500, np.random.default_rng(3))
    mb = mb.take(np.nonzero(space.prefilter(mb).ok)[0])
    (e1, c1, v1), (e2, c2, v2) = _both(inp, space.pa, mb)
    assert len(mb) >= 100 and v2.sum() >= 50
    assert np.array_equal(v1, v2)
    fin = np.isfinite(e2)
    assert np.array_equal(np.isfinite(e1), fin) and np.array_equal(np.isfinite(c1), np.isfinite(c2))
    assert np.array_equal(c1[fin], c2[fin])
    assert np.all(np.abs(e1[fin] - e2[fin]) <= 1e-12 * np.abs(e2[fin]))
    e0, c0, v0 = evaluate_batch_sparse(space.pa, inp.arch, ArchCosts(inp.arch, with_sparsity(inp.tables, inp.sparse)),
                                       mb.take(np.arange(0)))
    assert len(e0) == len(c0) == len(v0) == 0
    if case.startswith("04.2.3"):        # three formatted levels: some mappings refused, some failed, the rest valid
        assert (~fin).sum() > 10 and (fin & ~v2).sum() >= 1


def test_batch_rw_target_kept_only_above_without_formats(tmp_path):
    """03.2.2 skips Outputs at a Buffer that bypasses them: left unoptimised (as Timeloop does), not refused;
    rows where Inputs moves above the Buffer with a loop over its leader innermost are refused by both paths
    (tests/test_sparse_moved_targets.py)."""
    inp = _inputs(tmp_path, "03.2.2-conv1d+oc", _no_formats)
    assert not inp.sparse.formats
    space = MapSpace(inp.problem, inp.arch, constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources))
    mb = space.sample(300, np.random.default_rng(4))
    mb = mb.take(np.nonzero(space.prefilter(mb).ok)[0])
    (e1, c1, v1), (e2, c2, v2) = _both(inp, space.pa, mb)
    assert v2.sum() >= 50 and np.array_equal(v1, v2) and np.array_equal(c1, c2) and np.array_equal(e1, e2)


@pytest.mark.parametrize("case, prefilter", [("02.2.2-spMspM-tiled", True), ("03.2.2-conv1d+oc", True),
                                             ("03.2.3-conv1d+oc-spatial", False),
                                             ("04.2.2-eyeriss-like-gating-mapspace-search", False)])
def test_batch_with_formats_equals_rows_unconstrained(tmp_path, case, prefilter):
    """Mappings the exercises' constraints rule out: refused (SparseUnsupported), failed (format checks,
    rank failures, dense capacity) and valid rows alike, the same in both paths."""
    inp = _inputs(tmp_path, case, _free)
    space = MapSpace(inp.problem, inp.arch, constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources))
    mb = space.sample(400, np.random.default_rng(6))
    if prefilter:
        mb = mb.take(np.nonzero(space.prefilter(mb).ok)[0])
    (e1, c1, v1), (e2, c2, v2) = _both(inp, space.pa, mb)
    fin = np.isfinite(e2)
    assert (~fin).sum() >= 20 and (fin & ~v2).sum() >= 20            # both kinds of failure are exercised
    assert np.array_equal(v1, v2) and np.array_equal(np.isfinite(e1), fin)
    assert np.array_equal(c1[fin], c2[fin]) and np.all(np.abs(e1[fin] - e2[fin]) <= 1e-12 * np.abs(e2[fin]))


@pytest.mark.parametrize("case", WITH_FORMATS)
def test_batch_reference_mapping_gives_sparseloop_figures(tmp_path, case):
    inp = _inputs(tmp_path, case)
    mb = MappingBatch.from_mappings([inp.mapping()], [ds.name for ds in inp.problem.dataspaces])
    (e1, c1, v1), _ = _both(inp, ProblemArrays(inp.problem), mb)
    ref = parse_sparse_stats((DATA / case / "timeloop-mapper.stats.txt").read_text())
    assert v1[0] and c1[0] == ref["cycles"]
    assert abs(e1[0] - ref["energy_pj"]) <= 0.005 * ref["energy_pj"]
