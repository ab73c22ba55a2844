"""The batch form of the sparse accounting equals ``evaluate_sparse`` row by row, number for number."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from coopt.inputs import load_inputs
from coopt.mapper.constraints import constraints_from_inputs
from coopt.mapper.space import MapSpace
from coopt.model.cost import ArchCosts
from coopt.model.sparse.batch import evaluate_batch_sparse, with_sparsity

DATA = Path(__file__).resolve().parent / "data" / "sparseloop"


def _inputs(tmp_path, case, edit):
    c = DATA / case
    raw = yaml.safe_load((c / "parsed-processed-input.yaml").read_text())
    raw.pop("mapping", None)
    edit(raw)
    f = tmp_path / "input.yaml"
    f.write_text(yaml.safe_dump(raw))
    return load_inputs([f], ert=c / "timeloop-mapper.ERT.yaml", art=c / "timeloop-mapper.ART.yaml", sparse=True)


def _no_formats(raw):
    for t in raw["sparse_optimizations"]["targets"]:
        t.pop("representation_format", None)


def _gate_macs_too(raw):
    _no_formats(raw)
    raw["sparse_optimizations"]["targets"].append({"name": "mac", "compute_optimization": [{"type": "gating"}]})


@pytest.mark.parametrize("case, edit", [
    ("04.2.2-eyeriss-like-gating-mapspace-search", _no_formats),
    ("04.2.2-eyeriss-like-gating-mapspace-search", _gate_macs_too),
    ("01.2.2-SUDU-dot-product", _no_formats),
])
def test_batch_equals_rows(tmp_path, case, edit):
    inp = _inputs(tmp_path, case, edit)
    assert not inp.sparse.formats
    space = MapSpace(inp.problem, inp.arch, constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources))
    mb = space.sample(400, np.random.default_rng(1))
    mb = mb.take(np.nonzero(space.prefilter(mb).ok)[0])
    ac = ArchCosts(inp.arch, with_sparsity(inp.tables, inp.sparse))
    e1, c1, v1 = evaluate_batch_sparse(space.pa, inp.arch, ac, mb)
    e2, c2, v2 = evaluate_batch_sparse(space.pa, inp.arch, ac, mb, row_by_row=True)
    assert len(mb) > 0 and v2.any()
    assert np.array_equal(v1, v2) and np.array_equal(c1, c2) and np.array_equal(e1, e2)
