"""A first run that talks: one line per finished trial off a terminal, and the kernels compiled once, by the
driver, before the workers start (they load numba's cache instead of each compiling it in silence)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from coopt.model import jit

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]


def search(tmp_path: Path, study: str, trials: int, workers: int, env: dict | None = None) -> tuple[str, Path]:
    """Run ``coopt search`` on tiny.yaml with stderr to a file (not a terminal); return stderr and the study."""
    err = tmp_path / f"{study}.stderr"
    with open(err, "wb") as f:
        run = subprocess.run([sys.executable, "-m", "coopt.cli", "search", "--space",
                              str(ROOT / "search_spaces/tiny.yaml"), "--trials", str(trials), "--workers",
                              str(workers), "--sampler", "random", "--seed", "3", "--study", study,
                              "--energy", "builtin"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=f,
                             env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=1500)
    text = err.read_text(errors="replace")
    assert run.returncode == 0, run.stdout.decode() + text
    return text, tmp_path / "mlruns" / "studies" / study


def test_search_off_a_terminal_prints_one_line_per_trial(tmp_path):
    text, sdir = search(tmp_path, "lines", trials=3, workers=1)
    lines = [ln for ln in text.splitlines() if re.match(r"trial \d+/3 t\d{3} ", ln)]
    recs = [json.loads(p.read_text()) for p in sorted((sdir / "trials").glob("*.json"))]
    assert len(lines) == len(recs) == 3, text
    for ln, rec in zip(lines, recs):
        assert f"t{rec['number']:03d} " in ln
        assert ("; feasible;" in ln) == rec["feasible"]
        assert "; front " in ln and " elapsed" in ln
        if not rec["violations"].get("unmapped_layers"):
            energy = float(re.search(r"energy µJ (\d+(?:,\d{3})*(?:\.\d+)?)", ln).group(1).replace(",", ""))
            assert energy == pytest.approx(rec["metrics"]["energy_uj"], rel=1e-3)     # 4 digits
    assert "left" in lines[0] and "left" not in lines[-1]                              # an ETA until the end


@pytest.mark.skipif(not jit.AVAILABLE, reason="numba not installed")
def test_first_search_compiles_the_kernels_once_in_the_driver(tmp_path):
    """On a fresh kernel cache: numba's notice once, from the driver (Ray prefixes its workers' lines with
    "(Evaluator pid=...)"), the time it took, and no worker compiles again."""
    from coopt.model.kernel import COMPILE_NOTICE

    cache = tmp_path / "numba-cache"
    text, sdir = search(tmp_path, "cold", trials=2, workers=2, env={"NUMBA_CACHE_DIR": str(cache)})
    said = [ln for ln in text.splitlines() if COMPILE_NOTICE in ln]
    assert len(said) == 1 and said[0].startswith("coopt: compiling"), text
    took = [ln for ln in text.splitlines() if re.fullmatch(r"coopt: kernels compiled in \d+ s; the workers load "
                                                           r"them from numba's cache", ln)]
    assert len(took) == 1, text
    assert text.index(said[0]) < text.index(took[0]) < text.index("trial 1/2")
    assert list(cache.rglob("*.nbi")), "nothing was cached"
    compile_s = int(took[0].split(" in ")[1].split()[0])
    recs = [json.loads(p.read_text()) for p in (sdir / "trials").glob("*.json")]
    assert all(r["seconds"] < max(30.0, compile_s) for r in recs)     # the compile time is not a trial's


def test_network_off_a_terminal_prints_one_line_per_layer(tmp_path):
    """`coopt network` with stderr to a file: its layer count first, then a line per mapped layer."""
    err = tmp_path / "network.stderr"
    with open(err, "wb") as f:
        run = subprocess.run([sys.executable, "-m", "coopt.cli", "network", "--network", "resnet18", "--budget", "30",
                              "--workers", "1", "--energy", "builtin"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=f, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)
    text = err.read_text(errors="replace")
    assert run.returncode in (0, 1), text
    from coopt.workload.networks import get_network

    n = len(get_network("resnet18").layers)
    assert re.search(rf"^mapping resnet18 on .*: {n} layers$", text, re.M), text
    lines = [ln for ln in text.splitlines() if ln.startswith("layer ")]
    assert [int(ln.split()[1].split("/")[0]) for ln in lines] == list(range(1, n + 1)), text
    assert all(ln.split()[1].endswith(f"/{n}") and " elapsed" in ln for ln in lines)
