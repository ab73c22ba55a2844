"""The compiled batch evaluation (``coopt.model.fused``) equals the numpy reference bit for bit.

The mapper ranks mappings by these numbers and the fidelity tests compare them with
Timeloop's exactly, so "close" is not enough: energy, cycles and validity must be ``==``
on every row, over random mappings of several layers on several designs (link transfers,
bypassed levels and invalid mappings included).
"""
from __future__ import annotations

import numpy as np
import pytest

from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.arch.template import load_template
from coopt.energy.estimate import estimate
from coopt.mapper.sample import random_batch
from coopt.model import jit
from coopt.model.cost import ArchCosts
from coopt.model.fused import PAIRWISE_MAX, evaluate_batch, evaluate_batch_numpy
from coopt.model.nest import ProblemArrays, nest_stats_numpy
from coopt.workload.networks import resnet50

from tests.test_nest_closed_form import ARCHS, PROBLEMS

DESIGNS = {
    **ARCHS,
    "eyeriss_4x4_small_glb": lambda: load_template("eyeriss_like").instantiate(
        {"pe_rows": 4, "pe_cols": 4, "glb_depth": 256, "psum_spad_depth": 4}),
}


def _layers():
    net = resnet50()
    return PROBLEMS + [net.layers[i].problem for i in (0, 5, 13, 23)]


@pytest.mark.skipif(not jit.AVAILABLE, reason="numba not installed")
@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_compiled_batch_evaluation_equals_numpy_bit_for_bit(design):
    jit.enable()
    arch = DESIGNS[design]()
    ac = ArchCosts(arch, estimate(arch))
    rows = invalid = linked = 0
    for i, problem in enumerate(_layers()):
        mb = random_batch(problem, arch, 400, np.random.default_rng(100 + i))
        pa = ProblemArrays(problem)
        fast = evaluate_batch(pa, arch, ac, mb)
        slow = evaluate_batch_numpy(pa, arch, ac, mb)
        for name, a, b in zip(("energy", "cycles", "valid"), fast, slow):
            same = (a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b
            assert same.all(), f"{design}/{problem.name}: {name} differs on rows {np.nonzero(~same)[0][:5]}"
        rows += len(mb)
        invalid += int((~slow[2]).sum())
        linked += int(nest_stats_numpy(pa, arch, mb).link.any(axis=(1, 2)).sum())
    assert rows >= 3000 and invalid > 0
    if design == "multi_level_fanout":
        assert linked > 0, "the sample should exercise link transfers"


@pytest.mark.skipif(not jit.AVAILABLE, reason="numba not installed")
def test_a_single_detailed_evaluation_is_the_same_compiled(monkeypatch):
    """A search's final, detailed evaluation runs compiled once a process has much work asked of it
    (jit.MIN_WORK_SINGLE); every figure of it (per level and data space) equals the numpy path's."""
    from coopt.model.evaluate import evaluate
    from coopt.model.batch import MappingBatch

    jit.enable()
    compared, validity = 0, set()
    for design in ("multi_level_fanout", "eyeriss_4x4_small_glb"):
        arch = DESIGNS[design]()
        tables = estimate(arch)
        for i, problem in enumerate(_layers()):
            mb = random_batch(problem, arch, 6, np.random.default_rng(7 + i))
            names = [ds.name for ds in problem.dataspaces]
            for b in range(len(mb)):
                mapping = MappingBatch.mapping(mb, b, [l.name for l in arch.storage], problem.dims, names)
                monkeypatch.setitem(jit._state, "asked", 0)
                assert not jit.single_evaluations_compiled()
                slow = evaluate(problem, arch, tables, mapping).to_dict()
                monkeypatch.setitem(jit._state, "asked", jit.MIN_WORK_SINGLE)
                assert jit.single_evaluations_compiled()
                assert evaluate(problem, arch, tables, mapping).to_dict() == slow
                compared += 1
                validity.add(slow["valid"])
    assert compared >= 60 and validity == {True, False}


def _deep_hierarchy(levels: int) -> Architecture:
    """A chain of ``levels`` buffers: more level x data-space sums than numpy adds in one block."""
    inner = [StorageLevel(f"B{i}", depth=16 * 4 ** i, word_bits=8) for i in range(levels - 1)]
    return Architecture("deep", (*inner, StorageLevel("DRAM", technology="DRAM", word_bits=8)),
                        ArithmeticLevel("mac", instances=1))


def test_deep_hierarchies_keep_numpy_sums():
    """Past 128 terms numpy splits its pairwise sum; such designs take the array chain: same numbers."""
    jit.enable()
    arch = _deep_hierarchy(16)
    ac = ArchCosts(arch, estimate(arch))
    problem = PROBLEMS[0]
    pa = ProblemArrays(problem)
    assert ac.L * pa.P * 3 > PAIRWISE_MAX
    mb = random_batch(problem, arch, 200, np.random.default_rng(3))
    for a, b in zip(evaluate_batch(pa, arch, ac, mb), evaluate_batch_numpy(pa, arch, ac, mb)):
        assert np.array_equal(a, b)
