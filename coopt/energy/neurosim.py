"""NeuroSim for the ``intadder`` primitive, as Accelergy's NeuroSim plug-in estimates it.

Why a build: ``hwcomponents-neurosim`` ships a prebuilt NeuroSim that needs
glibc 2.38 and, beside it, NeuroSim's C++ sources with the plug-in's drop-in
files.  Where the shipped binary does not run we build those sources once into
``<cache>/neurosim-<version>/`` (``make``, about 40 s) and point the plug-in at
that binary through its module-level ``NEUROSIM_PATH`` -- the plug-in has no
other setting for it.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path

from coopt.energy.cacti import cache_root, publish_build
from coopt.errors import CooptError


class NeuroSimError(CooptError):
    """NeuroSim could not be found, built or run."""


def _package_dir() -> Path:
    return Path(str(resources.files("hwcomponents_neurosim")))


def _runs(exe) -> bool:
    """True when ``exe`` loads (it prints NeuroSim's banner; a missing glibc fails before that).

    The binary itself is probed, not a query: the plug-in answers repeated
    queries from its own output cache without running anything.
    """
    try:
        proc = subprocess.run(args=[str(exe)], check=False, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return b"neurosim v1" in (proc.stdout + proc.stderr).lower()


def build(dest: Path | None = None, *, quiet: bool = False) -> Path:
    """Build NeuroSim from hwcomponents-neurosim's sources into ``dest`` (default: the cache); its binary."""
    version = metadata.version("hwcomponents-neurosim")
    dest = Path(dest) if dest else cache_root() / f"neurosim-{version}"
    exe = dest / "main"
    if _runs(exe):
        return exe
    if not quiet:
        print(f"coopt: building NeuroSim from hwcomponents-neurosim {version}'s sources into {dest} (once)",
              file=sys.stderr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="neurosim-build-", dir=dest.parent))
    try:
        work = tmp / "NeuroSIM"
        pkg = _package_dir()
        shutil.copytree(pkg / "DNN_NeuroSim_V1.3" / "Inference_pytorch" / "NeuroSIM", work,
                        ignore=shutil.ignore_patterns("*.o", "main"))
        for f in (pkg / "drop_in").iterdir():
            shutil.copy(f, work / f.name)
        proc = subprocess.run(args=["make", "-j2"], check=False, cwd=work, capture_output=True, text=True,
                              timeout=1800)
        if proc.returncode != 0 or not (work / "main").is_file():
            raise NeuroSimError(f"building NeuroSim failed: {proc.stderr.strip().splitlines()[-1:]}",
                                key=str(work), expected="g++ with OpenMP and make on PATH")
        for o in work.glob("*.o"):
            o.unlink()
        publish_build(work, dest, exe, _runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return exe


@lru_cache(maxsize=1)
def ensure() -> bool:
    """Make hwcomponents-neurosim usable here (building it if needed); False when it cannot be."""
    try:
        import hwcomponents_neurosim.neurointerface as ni
    except ModuleNotFoundError:
        return False
    if _runs(ni.NEUROSIM_PATH):
        return True
    try:
        ni.NEUROSIM_PATH = str(build())
    except (NeuroSimError, OSError, subprocess.SubprocessError):
        return False
    return _runs(ni.NEUROSIM_PATH)
