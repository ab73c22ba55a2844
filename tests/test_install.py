"""Installing on a Python older than coopt needs stops with one line that names the requirement (pip would
otherwise stop on a dependency with no release for that Python, naming the wrong problem)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD = shutil.which("python3.11") or shutil.which("python3.10")


@pytest.mark.slow
@pytest.mark.skipif(OLD is None, reason="no Python older than 3.12 on this machine")
def test_an_older_python_is_told_what_coopt_needs(tmp_path):
    venv = tmp_path / "old"
    subprocess.run([OLD, "-m", "venv", str(venv)], check=True, timeout=300)
    run = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-input", str(ROOT)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "coopt needs Python >= 3.12 (this is Python 3.1" in out, out[-3000:]
    assert "No matching distribution" not in out                   # stopped before resolving dependencies
    assert sys.version_info >= (3, 12)                             # (and this suite runs on one that fits)
