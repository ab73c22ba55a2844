"""The optional AccelForge engine (coopt/backends/accelforge_backend.py).

AccelForge needs Python >= 3.12, so in the 3.11 CI only the "not installed"
test runs; the others run under a 3.12 venv with ``pip install accelforge``.
The mapping test takes a few minutes on 2 cores (AccelForge's mapper
analyses every loop-nest template symbolically before enumerating tiles).
"""
from __future__ import annotations

import math

import pytest

from coopt.backends import accelforge_backend as ab
from coopt.design import design_from_template
from coopt.errors import BinaryNotFound
from coopt.workload.problem import conv_problem

needs_af = pytest.mark.skipif(not ab.available(),
                              reason="accelforge is not installed (optional: pip install 'coopt[accelforge]')")


def small():
    return conv_problem("small", C=8, M=8, P=4, Q=4, R=3, S=3)


def test_missing_accelforge_raises_binary_not_found():
    if ab.available():
        pytest.skip("accelforge is installed here")
    d = design_from_template("eyeriss_like")
    with pytest.raises(BinaryNotFound) as err:
        ab.map_layer(small(), d.arch)
    assert "AccelForge is not installed" in str(err.value)
    assert "pip install 'coopt[accelforge]'" in str(err.value)
    assert "3.12" in str(err.value)


@needs_af
def test_translation_keeps_level_structure():
    from accelforge.frontend.arch import Compute, Container, Memory
    d = design_from_template("eyeriss_like")
    arch = ab.translate_arch(d.arch, d.tables, d.targets, small())
    kinds = [(type(n).__name__, n.name) for n in arch.nodes]
    assert kinds == [("Memory", "DRAM"), ("Memory", "shared_glb"), ("Container", "inter_PE_column_spatial"),
                     ("Container", "inter_PE_spatial"), ("Memory", "ifmap_spad"), ("Memory", "weights_spad"),
                     ("Memory", "psum_spad"), ("Compute", "mac")]
    fanouts = [(s.fanout) for n in arch.nodes if isinstance(n, Container) for s in n.spatial]
    assert fanouts == [14, 12]
    mems = {n.name: n for n in arch.nodes if isinstance(n, Memory)}
    assert mems["DRAM"].size == math.inf
    assert mems["shared_glb"].size == 16384 * 64            # bits
    assert mems["psum_spad"].tensors.keep == "outputs"      # row-stationary bypass carried over
    assert any(isinstance(n, Compute) for n in arch.nodes)
    wl = ab.translate_layer(small())
    (e,) = wl.einsums
    assert [t.name for t in e.tensor_accesses] == ["weights", "inputs", "outputs"]
    assert e.tensor_accesses[1].projection["INPUTS2"] == "r + p"


@needs_af
def test_small_layer_maps():
    d = design_from_template("eyeriss_like")
    r = ab.map_layer(small(), d.arch, tables=d.tables, targets=d.targets, metric="energy", timeout_s=900)
    assert r["engine"] == "accelforge" and r["version"]
    for k in ("energy_pj", "cycles", "area_um2"):
        assert math.isfinite(r[k]) and r[k] > 0, k
    # at least one MAC-cycle per 168 MACs, and no more cycles than MACs
    assert small().macs / 168 <= r["cycles"] <= small().macs
    assert r["energy_pj"] > r["levels"]["mac"] > 0


def test_accelforge_mapping_to_timeloop_directives():
    """AccelForge's mapping text (recorded from a real run) becomes Timeloop directives (no accelforge needed)."""
    from coopt.model.evaluate import evaluate
    from coopt.model.mapping import mapping_from_yaml
    compact = ("[weights,outputs,inputs in DRAM] [inputs,outputs in shared_glb] weights,outputs,inputs reserves "
               "DRAM inputs,outputs reserves shared_glb S-inter_PE_spatial_Y-c in [0..8) shape=1 "
               "S-inter_PE_column_spatial_X-q in [0..2) shape=2 S-inter_PE_column_spatial_X-m in [0..4) shape=2 "
               "[inputs in ifmap_spad] inputs reserves ifmap_spad T-m in [0..2) shape=1 [weights in weights_spad] "
               "weights reserves weights_spad T-p in [0..4) shape=1 T-q in [0..2) shape=1 [outputs in psum_spad] "
               "outputs reserves psum_spad T-r in [0..3) shape=1 T-s in [0..3) shape=1 mac computes small")
    d = design_from_template("eyeriss_like")
    dirs = ab.timeloop_mapping(compact, d.arch, small())
    by = {(x["target"], x["type"]): x for x in dirs}
    assert by[("psum_spad", "temporal")]["factors"] == "C1 M1 R3 S3 N1 P1 Q1"
    assert by[("weights_spad", "temporal")]["factors"] == "C1 M1 R1 S1 N1 P4 Q2"
    assert by[("inter_PE_column_spatial", "spatial")]["factors"] == "C1 M4 R1 S1 N1 P1 Q2"
    assert by[("inter_PE_column_spatial", "spatial")]["split"] == 2
    assert by[("inter_PE_spatial", "spatial")]["split"] == 0
    assert by[("shared_glb", "datatype")]["keep"] == ["Inputs", "Outputs"]
    ev = evaluate(small(), d.arch, d.tables, mapping_from_yaml(dirs, d.arch, small()))
    assert ev.valid and ev.cycles == small().macs // 64
