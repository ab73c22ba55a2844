"""The native mapper: mapspace counts, search quality, constraints, failures, re-evaluation."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.backends.timeloop_stats import parse_stats, total_energy_pj
from coopt.cli import main
from coopt.design import design_from_template
from coopt.energy.accelergy_io import read_tables
from coopt.energy.estimate import estimate
from coopt.inputs import load_inputs
from coopt.mapper.constraints import constraints_from_inputs, parse_constraints
from coopt.mapper.sample import random_batch
from coopt.mapper.search import _count_factorizations, _factorizations, enumerate_space, parse_metric, search
from coopt.mapper.space import MapSpace
from coopt.model.evaluate import evaluate
from coopt.workload.networks import resnet50
from coopt.workload.problem import DataSpace, Problem, conv_problem
from reference import cases

MAPPER_CASES = cases("mapper")


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@pytest.mark.parametrize("n,k", [(1, 3), (12, 2), (36, 3), (56, 4), (64, 5)])
def test_factorization_counts_match_brute_force(n, k):
    brute = sum(1 for t in itertools.product(_divisors(n), repeat=k) if np.prod(t) == n)
    got = list(_factorizations(n, k))
    assert len(got) == brute == len(set(got)) == _count_factorizations(n, k)
    assert all(np.prod(t) == n for t in got)


def conv1d_oc(K, R, P, C=1) -> Problem:
    """The tutorial's Conv1D_OC shape (3-4 dimensions: small enough to brute-force)."""
    dims = ("C", "K", "R", "P") if C > 1 else ("K", "R", "P")
    ds = (DataSpace("Weights", tuple(((None, d),) for d in dims if d in "CKR")),
          DataSpace("Inputs", tuple(((None, d),) for d in dims if d == "C") + (((None, "R"), (None, "P")),)),
          DataSpace("Outputs", (((None, "K"),), ((None, "P"),)), read_write=True))
    bounds = {"K": K, "R": R, "P": P, "C": C}
    return Problem("conv1d_oc", dims, ds, {d: bounds[d] for d in dims}, {})


def _tiny_arch():
    return Architecture("tiny", (
        StorageLevel("RF", depth=64, word_bits=8),
        StorageLevel("DRAM", technology="DRAM", word_bits=8)),
        ArithmeticLevel("mac"))


def test_exhaustive_enumeration_matches_brute_force_count():
    """All distinct mappings of a tiny space: tilings x orders of non-trivial loops."""
    prob = conv1d_oc(K=2, R=3, P=4)
    arch = _tiny_arch()
    keep_all = [{"target": l.name, "type": "bypass", "keep": ["Weights", "Inputs", "Outputs"]}
                for l in arch.storage]
    space = MapSpace(prob, arch, parse_constraints(keep_all, arch, prob))
    rows = sum(len(c) for c in enumerate_space(space, limit=10**7))
    # brute force: every split of R, P, M over the two levels, every full loop order per level,
    # deduplicated on what Timeloop sees (the order of the non-trivial loops only)
    dims = prob.dims
    seen = set()
    per_dim = {d: [(a, prob.bounds[d] // a) for a in _divisors(prob.bounds[d])] for d in dims}
    for split in itertools.product(*(per_dim[d] for d in dims)):
        for p0 in itertools.permutations(range(len(dims))):
            for p1 in itertools.permutations(range(len(dims))):
                key = tuple(tuple(d for d in perm if split[d][lvl] > 1) for lvl, perm in ((0, p0), (1, p1)))
                seen.add((split, key))
    assert rows == len(seen)


def test_hybrid_finds_the_exhaustive_optimum_on_a_small_layer():
    prob = conv1d_oc(K=4, R=3, P=8, C=2)
    arch = Architecture("small", (
        StorageLevel("RF", instances=4, mesh_x=4, depth=32, word_bits=8),
        StorageLevel("GLB", depth=256, word_bits=8),
        StorageLevel("DRAM", technology="DRAM", word_bits=8)),
        ArithmeticLevel("mac", instances=4, mesh_x=4))
    tables = estimate(arch)
    cons = parse_constraints([{"target": "GLB", "type": "bypass", "keep": ["Inputs"], "bypass": ["Weights"]},
                              {"target": "RF", "type": "bypass", "keep": ["Weights", "Outputs"]}], arch, prob)
    full = search(prob, arch, tables, cons, metric="edp", budget=10**7, strategy="exhaustive")
    for seed in range(3):
        fast = search(prob, arch, tables, cons, metric="edp", budget=4000, seed=seed)
        assert fast.found
        assert fast.eval.energy_pj * fast.eval.cycles <= full.eval.energy_pj * full.eval.cycles * (1 + 1e-9)
    assert full.stats.evaluated > 4000          # the space is bigger than the hybrid's budget


@pytest.mark.skipif(not MAPPER_CASES, reason="reference runs not found")
@pytest.mark.parametrize("case", MAPPER_CASES, ids=lambda p: p.name)
def test_no_worse_than_timeloop(case):
    """Lexicographic [delay, energy], both sides evaluated by the same (Timeloop-exact) model."""
    inp = load_inputs([case / "input.yaml"])
    tables = inp.tables.merged(read_tables(case / "ERT.yaml", case / "ART.yaml"))
    cons = constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources)
    block = inp.raw["mapper"]
    metric = parse_metric(block.get("optimization_metrics") or block.get("optimization_metric"))
    assert metric == ("delay", "energy")
    r = search(inp.problem, inp.arch, tables, cons, metric=metric, budget=3000, seed=0)
    ref = parse_stats(case / "timeloop-mapper.stats.txt")
    assert r.eval.cycles <= ref["cycles"]
    if r.eval.cycles == ref["cycles"]:
        assert r.eval.energy_pj <= total_energy_pj(ref) * (1 + 1e-6)


def test_row_stationary_constraints_are_honoured():
    design = design_from_template("eyeriss_like", dataflow="row_stationary")
    layer = [l for l in resnet50().layers if l.name == "layer2.0.conv2"][0]
    prob = layer.problem
    cons = parse_constraints(design.targets, design.arch, prob)
    r = search(prob, design.arch, design.tables, cons, budget=2000, seed=3)
    assert r.found
    names = [l.name for l in design.arch.storage]
    dims = prob.dims
    for t in design.targets:
        lvl = r.mapping.levels[names.index(t["target"])]
        if t["type"] == "bypass":
            assert set(t.get("keep", [])) <= lvl.keep
            assert not set(t.get("bypass", [])) & lvl.keep
        elif "factors" in t:
            facs = dict(x.split("=") for x in t["factors"].split(","))
            got = lvl.temporal if t["type"] == "temporal" else lvl.spatial
            for d, v in facs.items():
                assert got[dims.index(d)] == int(v), (t, got)
        if t["type"] == "temporal" and "permutation" in t:
            order = [dims[i] for i in lvl.permutation if lvl.temporal[i] > 1]
            prefix = [d for d in t["permutation"] if d in order]
            assert order[: len(prefix)] == prefix
    # the spatial splits put S, C, M on Y of inter_PE_spatial and Q, M on X of the columns
    x, y = r.mapping.levels[names.index("inter_PE_spatial")].spatial_xy()
    assert x == 1 and y > 1


def test_scratchpad_too_small_gives_no_valid_mapping_with_reason(capsys):
    prob = conv_problem("x", R=3, P=8, C=4, M=4)
    arch = Architecture("cramped", (
        StorageLevel("RF", depth=2, word_bits=8),
        StorageLevel("DRAM", technology="DRAM", word_bits=8)),
        ArithmeticLevel("mac"))
    keep = [{"target": "RF", "type": "bypass", "keep": ["Weights", "Inputs", "Outputs"]}]
    r = search(prob, arch, estimate(arch), parse_constraints(keep, arch, prob), budget=500)
    assert not r.found
    assert "no valid mapping" in r.reason and "overflows" in r.reason


def test_same_seed_same_mapping_and_cache():
    from coopt.backends.base import MapperOptions
    from coopt.backends.network import map_layer
    design = design_from_template("eyeriss_like")
    layer = resnet50().layers[3]
    opts = MapperOptions(metric=("edp",), budget=1500, seed=11)
    a = map_layer(layer, design.arch, design.tables, design.targets, opts)
    b = search(layer.problem, design.arch, design.tables,
               parse_constraints(design.targets, design.arch, layer.problem), budget=1500, seed=11)
    assert a.mapping.key() == b.mapping.key()
    again = map_layer(layer, design.arch, design.tables, design.targets, opts)
    assert again.eval is a.eval                  # served from the cache


@pytest.mark.skipif(not MAPPER_CASES, reason="reference runs not found")
def test_map_cli_output_reevaluates_identically(tmp_path, capsys):
    case = [c for c in MAPPER_CASES if c.name.startswith("resnet50")][0]
    out = tmp_path / "out"
    assert main(["map", str(case / "input.yaml"), "--ert", str(case / "ERT.yaml"), "--art", str(case / "ART.yaml"),
                 "--budget", "1500", "--json", "--out", str(out)]) == 0
    found = json.loads(capsys.readouterr().out)
    for key in ("energy_pj", "cycles", "utilization", "mapping", "mappings_evaluated", "seconds"):
        assert key in found
    assert found["metric"] == ["delay", "energy"]           # from the file's mapper block
    # evaluate the written mapping with the same files (the input's empty mapping removed)
    import yaml
    raw = yaml.safe_load((case / "input.yaml").read_text())
    raw.pop("mapping")
    inp = tmp_path / "input.yaml"
    inp.write_text(yaml.safe_dump(raw))
    assert main(["evaluate", str(inp), str(out / "coopt-mapper.map.yaml"), "--ert", str(case / "ERT.yaml"),
                 "--art", str(case / "ART.yaml"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cycles"] == found["cycles"]
    assert again["energy_pj"] == pytest.approx(found["energy_pj"], rel=1e-12)
    assert again["levels"]["shared_glb"]["Inputs"] == found["levels"]["shared_glb"]["Inputs"]


def test_best_mappings_reevaluate_with_the_walk_on_several_layers():
    """What the batched search reports equals the exact walk on the mapping it returns."""
    design = design_from_template("eyeriss_like")
    for layer in resnet50().layers[:3]:
        cons = parse_constraints(design.targets, design.arch, layer.problem)
        r = search(layer.problem, design.arch, design.tables, cons, budget=800, seed=1)
        exact = evaluate(layer.problem, design.arch, design.tables, r.mapping, engine="walk")
        assert exact.cycles == r.eval.cycles and exact.energy_pj == pytest.approx(r.eval.energy_pj, rel=1e-12)


def test_network_cli_totals(capsys):
    rc = main(["network", "--network", "resnet18", "--budget", "400", "--workers", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["feasible"]
    layers = out["layers"]
    assert len(layers) == 12 and sum(l["count"] for l in layers) == 21
    assert out["energy_uj"] == pytest.approx(sum(l["count"] * l["energy_pj"] for l in layers) / 1e6)
    assert out["latency_cycles"] == sum(l["count"] * l["cycles"] for l in layers)
    assert out["throughput_ips"] == pytest.approx(1e9 / out["latency_cycles"])
    assert out["power_mw"] == pytest.approx(out["energy_uj"] * 1e-6 / (out["latency_cycles"] * 1e-9) * 1e3)
    assert out["area_mm2"] > 0
    assert {"name", "count", "energy_pj", "cycles", "utilization", "mapping"} <= set(layers[0])


def _spaces():
    """Mapspaces with different constraint shapes: row stationary, free, and fan-outs at 3 levels."""
    layers = [l for l in resnet50().layers if l.name in ("conv1", "layer1.0.conv2", "layer3.0.conv1", "fc")]
    out = []
    for dataflow in ("row_stationary", "free"):
        design = design_from_template("eyeriss_like", dataflow=dataflow)
        for layer in layers:
            out.append(MapSpace(layer.problem, design.arch, parse_constraints(design.targets, design.arch,
                                                                                  layer.problem)))
    multi = Architecture("multi", (
        StorageLevel("R0", instances=64, mesh_x=8, mesh_y=8, depth=16, word_bits=8),
        StorageLevel("R1", instances=16, mesh_x=4, mesh_y=4, depth=64, word_bits=8),
        StorageLevel("GLB", instances=2, mesh_x=2, mesh_y=1, depth=4096, word_bits=8, block_size=4),
        StorageLevel("DRAM", technology="DRAM", word_bits=8)),
        ArithmeticLevel("mac", instances=256, mesh_x=16, mesh_y=16))
    prob = conv_problem("m", R=3, S=3, P=12, Q=12, C=8, M=16, N=2)
    out.append(MapSpace(prob, multi, parse_constraints([], multi, prob)))
    return out


def _same(a, b):
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("tf", "tperm", "sf", "sperm", "split", "keep"))


@pytest.mark.skipif(not __import__("coopt.model.jit", fromlist=["x"]).AVAILABLE, reason="numba missing")
def test_compiled_mapspace_loops_equal_the_python_reference(monkeypatch):
    """Sampling, neighbours, canonical form, prefilter and keys: same rows from the same seed."""
    import coopt.mapper.space as space_mod
    from coopt.model import jit

    jit.enable()
    accepted = rejected = 0
    for space in _spaces():
        got = {}
        for compiled in (True, False):
            monkeypatch.setattr(space_mod, "HAVE_NUMBA", compiled)
            rng = np.random.default_rng(11)
            a = space.sample(400, rng)
            b = space.neighbours(a.take(np.arange(24)), rng, 30)
            b = space.neighbours(b.take(np.arange(0, len(b), 7)), rng, 20)       # moves of moved rows too
            got[compiled] = (a, b, space.prefilter(a), space.prefilter(b), space.keys(b), rng.random())
        (a1, b1, pa1, pb1, k1, next1), (a0, b0, pa0, pb0, k0, next0) = got[True], got[False]
        assert _same(a1, a0) and _same(b1, b0)
        assert next1 == next0                   # both paths drew exactly as many numbers from the generator
        for x, y in ((pa1, pa0), (pb1, pb0)):
            for f in ("ok", "fanout", "capacity"):
                assert np.array_equal(getattr(x, f), getattr(y, f))
        assert k1 == k0
        accepted += int(pa1.ok.sum() + pb1.ok.sum())
        rejected += int((~pa1.ok).sum() + (~pb1.ok).sum())
        assert len(set(k1)) > 1
        # canonical form of arbitrary (non-canonical) rows: same on both paths, and idempotent
        raw = random_batch(space.problem, space.arch, 300, np.random.default_rng(5))
        c1, c0 = space.canonical(raw, compiled=True), space.canonical(raw, compiled=False)
        assert _same(c1, c0) and not _same(c1, raw)
        assert _same(space.canonical(c1, compiled=True), c1)
    # the checks both accept and reject rows: the comparison is not vacuous
    assert accepted and rejected


_JIT_PROBE = """
import json, sys
from coopt.inputs import load_inputs
from coopt.mapper.constraints import constraints_from_inputs
from coopt.mapper.search import search
d = sys.argv[1]
inp = load_inputs([d + '/input.yaml', d + '/ERT.yaml', d + '/ART.yaml'])
cons = constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources)
r = search(inp.problem, inp.arch, inp.tables, cons, budget=int(sys.argv[2]), seed=4)
print(json.dumps({"energy": r.eval.energy_pj, "cycles": r.eval.cycles, "evaluated": r.stats.evaluated,
                  "mapping": [[l.temporal, l.permutation, l.spatial, l.spatial_permutation, l.split, sorted(l.keep)]
                              for l in r.mapping.levels],
                  "numba": "numba" in sys.modules}))
"""


@pytest.mark.skipif(not __import__("coopt.model.jit", fromlist=["x"]).AVAILABLE, reason="numba missing")
def test_small_jobs_skip_numba_and_both_paths_find_the_same_mapping():
    """A one-layer map with a small budget never imports numba (its start-up costs more than it
    saves); forced either way, the search finds the very same mapping."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    case = next((str(c) for c in MAPPER_CASES if "resnet50" in str(c)), None)
    if case is None:
        pytest.skip("reference mapper case missing")
    out = {}
    for mode in ("", "0", "1"):
        env = {**os.environ, "PYTHONPATH": str(root), "COOPT_JIT": mode}
        res = subprocess.run([sys.executable, "-c", _JIT_PROBE, case, "2000"], env=env, capture_output=True,
                             text=True, timeout=300, check=True)
        out[mode] = json.loads(res.stdout)
    assert out[""]["numba"] is False and out["0"]["numba"] is False and out["1"]["numba"] is True
    assert out["0"] == {**out["1"], "numba": False}
    assert out["0"]["evaluated"] > 1000
