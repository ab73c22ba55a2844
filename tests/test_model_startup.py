"""What a model command costs before it computes anything: the modules it imports, and numba's cache.

``coopt network``, ``map`` and ``evaluate`` are run as a study trial or a script runs them, in a
fresh process: Ray, MLflow, Optuna, pandas, plotly and SQLAlchemy take seconds to import and
none of these commands needs them.  The compiled kernels must load from numba's on-disk cache
in a later process, also when the package folder is read-only (then ``~/.cache/coopt/numba``).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coopt.model import jit

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("ray", "mlflow", "optuna", "pandas", "plotly", "sqlalchemy")
MAPPER_CASE = ROOT / "tests" / "reference_data" / "mapper" / "resnet50-conv2x-3x3-eyeriss-like" / "input.yaml"
MODEL_CASE = ROOT / "tests" / "reference_data" / "model" / "06-eyeriss-like-convlayer-bestmap" / "input.yaml"

_RUN = """
import json, sys
from coopt.cli import main
rc = main(sys.argv[1:])
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))
print(json.dumps({"rc": rc, "heavy": heavy}))
""" % (HEAVY,)


def _run_command(argv: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COOPT_JIT": "1"}     # kernels loaded too
    proc = subprocess.run([sys.executable, "-c", _RUN, *argv], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    ["network", "--budget", "30", "--workers", "1", "--energy", "builtin", "--json"],
    ["map", str(MAPPER_CASE), "--budget", "200", "--energy", "builtin", "--json"],
    ["evaluate", str(MODEL_CASE), "--energy", "builtin", "--json"],
], ids=["network", "map", "evaluate"])
def test_model_commands_do_not_import_the_study_stack(argv):
    if not Path(argv[1]).exists() and argv[0] != "network":
        pytest.skip("reference inputs not found")
    out = _run_command(argv)
    assert out["rc"] in (0, 1)
    assert out["heavy"] == [], f"coopt {argv[0]} imported {out['heavy']}"


_KERNEL = """
import json, os
import coopt.model.kernel as k
assert k.__file__.startswith(os.environ["COPY"]), k.__file__
k._round(2.5)
assert not os.access(os.path.dirname(k.__file__), os.W_OK), "the copy should be read-only"
stats = k._round.stats
print(json.dumps({"hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


@pytest.mark.skipif(not jit.AVAILABLE, reason="numba not installed")
def test_kernels_cache_under_home_when_the_install_is_read_only(tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(ROOT / "coopt", copy / "coopt", ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(PYTHONPATH=str(copy), HOME=str(home), COPY=str(copy))
    cmd = [sys.executable, "-c", _KERNEL]
    if os.geteuid() == 0:                      # root writes through file modes: mount the copy read-only
        if not shutil.which("unshare"):
            pytest.skip("running as root without unshare: cannot make a read-only install")
        cmd = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$COPY" "$COPY" && exec "$@"', "sh", *cmd]
    else:
        for p in [copy, *copy.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)

    def load():
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=home, timeout=600)
        if "mount" in proc.stderr and proc.returncode:
            pytest.skip(f"cannot mount read-only here: {proc.stderr.strip()[:200]}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        return {**json.loads(proc.stdout.strip().splitlines()[-1]), "said": proc.stderr.count(COMPILE_NOTICE)}

    from coopt.model.kernel import COMPILE_NOTICE
    first, second = load(), load()
    assert first["misses"] >= 1 and first["said"] == 1           # compiled once, and said so ...
    assert second["hits"] >= 1 and second["misses"] == 0        # ... then loaded from the cache, silently
    assert second["said"] == 0
    assert list((home / ".cache" / "coopt" / "numba").rglob("*.nbi")), "no cache index under home"
    assert not list(copy.rglob("*.nbi"))
