"""CACTI 7 for SRAM energy/area, run the way Accelergy's CACTI plug-in runs it.

Why our own runner: ``hwcomponents-cacti`` ships CACTI's C++ sources and a
prebuilt binary that needs glibc 2.38; where that binary does not run we build
the shipped sources once into ``<cache>/cacti-<version>/`` (``make``, about
10 s) and say so in one line.  CACTI is driven through its own public
interface -- the package's ``default_cfg.cfg`` plus the size, block,
technology and bank lines the plug-in appends -- and its CSV output.

Semantics follow the plug-in (``hwcomponents_cacti``/``accelergy-cacti-plug-in``):
widths below 32 bits are rounded up to a multiple of 8 (at least 32) and
energies scaled by ``0.7 * w/W + 0.3``; depths below 64 rows cost as 64 rows
with energy scaled by ``(d/D) ** 0.78`` and area/leakage by ``d/D``; nodes
between CACTI's 22/32/45/65/90 nm are interpolated linearly; below 22 nm
energies scale by ``sqrt(node/22)``, area by ``node/22`` and leakage by
``0.79 * sqrt(node/22)``; above 90 nm everything scales by ``(node/90)**2``.
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path

from coopt.errors import CooptError

NODES_NM = (22, 32, 45, 65, 90)


class CactiError(CooptError):
    """CACTI could not be found, built or run."""


def cache_root() -> Path:
    """``$COOPT_CACHE_DIR`` or ``~/.cache/coopt``: CACTI builds and estimate caches live here."""
    return Path(os.environ.get("COOPT_CACHE_DIR") or Path.home() / ".cache" / "coopt")


def _package_dir() -> Path:
    try:
        return Path(str(resources.files("hwcomponents_cacti")))
    except ModuleNotFoundError as e:
        raise CactiError("hwcomponents-cacti is not installed", key="--energy accelergy",
                         expected="pip install hwcomponents-cacti (or --energy builtin)") from e


def _version() -> str:
    return metadata.version("hwcomponents-cacti")


def _runs(binary: Path) -> bool:
    """True when ``binary`` answers a real query (a missing glibc fails at load time)."""
    if not binary.is_file() or not os.access(binary, os.X_OK):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "probe.cfg"
        cfg.write_text(_config(1024 * 4, 8, 0.045, 1, 1))
        proc = subprocess.run(check=False, args=[str(binary), "-infile", str(cfg)], cwd=binary.parent,
                              capture_output=True, timeout=120)
        return proc.returncode == 0 and Path(str(cfg) + ".out").is_file()


def build(dest: Path | None = None, *, quiet: bool = False) -> Path:
    """Build CACTI from the sources in hwcomponents-cacti into ``dest`` (default: the cache); its binary."""
    dest = Path(dest) if dest else cache_root() / f"cacti-{_version()}"
    binary = dest / "cacti"
    if _runs(binary):
        return binary
    src = _package_dir() / "cacti"
    if not quiet:
        print(f"coopt: building CACTI {_version()} from hwcomponents-cacti's sources into {dest} (once)",
              file=sys.stderr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cacti-build-", dir=dest.parent))
    try:
        work = tmp / "cacti"
        shutil.copytree(src, work, ignore=shutil.ignore_patterns("obj_*", "cacti", "*.o"))
        proc = subprocess.run(check=False, args=["make", "-j2"], cwd=work, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not _runs(work / "cacti"):
            raise CactiError(f"building CACTI failed: {proc.stderr.strip().splitlines()[-1:]}",
                             key=str(work), expected="g++ and make on PATH")
        dest.parent.mkdir(parents=True, exist_ok=True)
        publish_build(work, dest, binary, _runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return binary


def publish_build(work: Path, dest: Path, product: Path, runs) -> None:
    """Move a finished build folder ``work`` to ``dest`` atomically, so that builders racing in
    parallel (a study's workers) leave one complete copy; ``runs(product)`` says a copy is usable."""
    if runs(product):
        return                          # another process finished first
    if dest.exists():
        shutil.rmtree(dest, ignore_errors=True)
    try:
        os.replace(work, dest)
    except OSError:
        if not runs(product):
            raise


@lru_cache(maxsize=1)
def binary() -> Path:
    """A CACTI binary that runs here: the shipped one if it does, else our cached build."""
    shipped = _package_dir() / "cacti" / "cacti"
    return shipped if _runs(shipped) else build()


def _config(size_bytes: int, block_bytes: int, tech_um: float, n_banks: int, ports: int) -> str:
    base = (_package_dir() / "default_cfg.cfg").read_text()
    return base + (f"\n-size (bytes) {size_bytes}\n-read-write port  {ports}\n-block size (bytes) {block_bytes}\n"
                   f"-technology (u) {tech_um}\n-output/input bus width  {block_bytes * 8}\n"
                   f"-UCA bank {n_banks}\n-cache type \"ram\"\n-tag size (b) 0\n-associativity 1\n")


def run(size_bytes: int, block_bytes: int, tech_um: float, n_banks: int = 1, ports: int = 1,
        exe: Path | None = None) -> dict:
    """One CACTI query (with ``exe`` or the working binary): read/write energy (J), leakage (W), area (m^2)."""
    exe = Path(exe) if exe else binary()
    cfg = _config(size_bytes, block_bytes, tech_um, n_banks, ports)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (hashlib.sha256(cfg.encode()).hexdigest()[:16] + ".cfg")
        path.write_text(cfg)
        proc = subprocess.run(check=False, args=[str(exe), "-infile", str(path)], cwd=exe.parent, capture_output=True,
                              text=True, timeout=600)
        out = Path(str(path) + ".out")
        if proc.returncode != 0 or not out.is_file():
            raise CactiError(f"CACTI failed for a {size_bytes}-byte SRAM at {tech_um} um",
                             key="SRAM", expected="a size CACTI can organise")
        row = list(csv.DictReader(out.read_text().splitlines()))[-1]
    return {"read": float(row[" Dynamic read energy (nJ)"]) * 1e-9,
            "write": float(row[" Dynamic write energy (nJ)"]) * 1e-9,
            "leak_w": float(row[" Standby leakage per bank(mW)"]) * 1e-3 * n_banks,
            "area": float(row[" Area (mm2)"]) * 1e-6}


def _at_node(width: int, depth: int, nm: float, n_banks: int, ports: int) -> dict:
    banks = 2 ** math.ceil(math.log2(max(n_banks, 1)))
    w = max(math.ceil(width / 8) * 8, 32)
    d = max(depth, 64 * banks)
    r = run(w * d // 8, w // 8, nm / 1000, banks, ports)
    dyn = (width / w * 0.7 + 0.3) * (depth / d) ** (1.56 / 2)
    static = (width / w) * (depth / d)
    return {"read": r["read"] * dyn, "write": r["write"] * dyn, "leak_w": r["leak_w"] * static,
            "area": r["area"] * static}


def sram(width: int, depth: int, nm: float, n_banks: int = 1, ports: int = 1) -> dict:
    """SRAM of ``depth`` x ``width`` bits at ``nm``: read/write J, leakage W, area m^2."""
    lo, hi = NODES_NM[0], NODES_NM[-1]
    if nm < lo or nm > hi:
        base = _at_node(width, depth, lo if nm < lo else hi, n_banks, ports)
        if nm > hi:
            return {k: v * (nm / hi) ** 2 for k, v in base.items()}
        s = nm / lo
        return {"read": base["read"] * s ** 0.5, "write": base["write"] * s ** 0.5,
                "leak_w": base["leak_w"] * s ** 0.5 * 0.79, "area": base["area"] * s}
    below = max(n for n in NODES_NM if n <= nm)
    above = min(n for n in NODES_NM if n >= nm)
    a = _at_node(width, depth, below, n_banks, ports)
    if above == below:
        return a
    b = _at_node(width, depth, above, n_banks, ports)
    t = (nm - below) / (above - below)
    return {k: (1 - t) * a[k] + t * b[k] for k in a}
