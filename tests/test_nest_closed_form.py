"""The vectorised nest analysis equals the literal Timeloop walk on random mappings.

The walk (coopt.model.walk) is a step-by-step port of Timeloop's nest
analysis and matches every reference run exactly (test_fidelity); the closed
form must agree with it number for number, link transfers included, on
mappings drawn at random over problems with strides, dilations and batch,
and on architectures whose fan-outs sit at several levels, including the
innermost one.
"""
from __future__ import annotations

import numpy as np
import pytest

from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.arch.template import load_template
from coopt.mapper.sample import random_batch
from coopt.model.evaluate import walk_stats
from coopt.model.nest import ProblemArrays, nest_stats
from coopt.workload.problem import conv_problem

FIELDS = ("size", "total", "weighted", "link", "msize", "fanout", "repl", "xexp", "yexp", "compute", "compute_repl")

PROBLEMS = [
    conv_problem("a", R=3, S=3, P=8, Q=8, C=4, M=8),
    conv_problem("b", R=5, S=1, P=12, Q=4, C=2, M=4, Wstride=2),
    conv_problem("c", R=3, S=3, P=6, Q=6, C=2, M=2, N=2, Hdilation=2, Wstride=3),
    conv_problem("d", R=2, S=2, P=16, Q=1, C=3, M=5),
]


def _multi_level_fanout() -> Architecture:
    return Architecture("multi", (
        StorageLevel("R0", instances=64, mesh_x=8, mesh_y=8, depth=16, word_bits=8),
        StorageLevel("R1", instances=16, mesh_x=4, mesh_y=4, depth=64, word_bits=8),
        StorageLevel("GLB", instances=2, mesh_x=2, mesh_y=1, depth=4096, word_bits=8, block_size=4),
        StorageLevel("DRAM", technology="DRAM", word_bits=8)),
        ArithmeticLevel("mac", instances=256, mesh_x=16, mesh_y=16))


ARCHS = {
    "eyeriss_like": lambda: load_template("eyeriss_like").instantiate({}),
    "multi_level_fanout": _multi_level_fanout,
}


@pytest.mark.parametrize("arch_name", sorted(ARCHS))
@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_random_mappings_match_walk(arch_name, problem):
    arch = ARCHS[arch_name]()
    rng = np.random.default_rng(hash((arch_name, problem.name)) % 2**32)
    mb = random_batch(problem, arch, 40, rng)
    fast = nest_stats(ProblemArrays(problem), arch, mb)
    names = [d.name for d in problem.dataspaces]
    targets = [lvl.name for lvl in arch.storage]
    links = 0
    for b in range(len(mb)):
        walk = walk_stats(problem, arch, mb.mapping(b, targets, problem.dims, names))
        links += bool(walk.link.any())
        for field in FIELDS:
            np.testing.assert_allclose(getattr(fast, field)[b], getattr(walk, field)[0],
                                       err_msg=f"row {b}: {field}")
    if arch_name == "multi_level_fanout":
        assert links > 0, "the sample should exercise link transfers"


@pytest.mark.parametrize("arch_name", sorted(ARCHS))
def test_compiled_paths_equal_numpy_paths(arch_name):
    """The numba kernels (walk totals, collapse) give the numpy paths' numbers exactly."""
    from coopt.model.collapse import collapse, collapse_numpy
    import coopt.model.nest as nest_mod
    from coopt.model import jit

    jit.enable()
    arch = ARCHS[arch_name]()
    for problem in PROBLEMS:
        mb = random_batch(problem, arch, 300, np.random.default_rng(7))
        pa = ProblemArrays(problem)
        fast = nest_stats(pa, arch, mb)
        kernel = nest_mod.HAVE_NUMBA
        try:
            nest_mod.HAVE_NUMBA = False                   # every row through the numpy path
            slow = nest_stats(pa, arch, mb)
        finally:
            nest_mod.HAVE_NUMBA = kernel
        for field in FIELDS:
            np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field), err_msg=field)
        a, b = collapse(fast, mb.keep, pa.read_write), collapse_numpy(fast, mb.keep, pa.read_write)
        for field in ("reads", "fills", "updates", "utilized", "partition"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
