"""Primitive components: which estimator answers, as Accelergy picks by accuracy, with a disk cache.

Why a cache: a study asks for the same few memories thousands of times and a
CACTI call costs 0.2-5 s; every (primitive class, attribute set) is estimated
once and kept as a small JSON file under ``<cache>/estimates/`` (see
``coopt.energy.cacti.cache_root``), plus an in-process memo.

Estimators and the accuracies Accelergy 0.4's plug-ins declare (highest wins):
Library (Aladdin tables) 90 for ``aladdin_*``; CACTI 80 for ``SRAM`` and
``DRAM``; NeuroSim 70 for ``intadder``; dummy 100 for ``dummy_storage``.
When NeuroSim cannot run (hwcomponents-neurosim's binary also needs glibc
2.38), ``intadder`` falls back to the Library's Aladdin adder at its width and
the summary says so.  The names only the Aladdin_table plug-in (70, 40/45 nm)
knows -- ``regfile``, ``intmac``, ``reg``, ``comparator``, ... -- are
``TABLE_PRIMITIVES`` (``coopt.energy.aladdin_table``): cheap table look-ups
whose energy depends on the action's arguments, so they are answered per action
(``table_primitive``) and never cached on disk.  A user's input meets them when
it brings its own classes (``coopt.energy.accelergy.library``).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata

from coopt.energy import aladdin_table, cacti, library
from coopt.energy.estimate import parse_node
from coopt.errors import SpecError

CACHE_FORMAT = 3


@dataclass(frozen=True)
class Estimate:
    """pJ per action (``leak`` per cycle) and µm² for one primitive instance."""

    actions: dict
    area: float
    estimator: str


def _neurosim_adder(attrs: dict, nm: float, cycle_s: float) -> Estimate:
    from coopt.energy import neurosim
    if not neurosim.ensure():
        raise RuntimeError("NeuroSim unavailable")
    from hwcomponents_neurosim import Adder
    bits = int(attrs.get("n_bits", attrs.get("width", attrs.get("precision", 8))))
    model = Adder(tech_node=nm * 1e-9, cycle_period=cycle_s, n_bits=bits)
    add = model.add().energy * 1e12
    return Estimate({"add": add, "read": add, "write": 0.0, "update": 0.0,
                     "leak": model.leak_power * cycle_s * 1e12}, model.area * 1e12, "NeuroSim")


FALLBACK = "(NeuroSim unavailable)"


def _intadder(attrs: dict, nm: float, cycle_s: float) -> Estimate:
    try:
        return _neurosim_adder(attrs, nm, cycle_s)
    except Exception as e:                         # noqa: BLE001 -- any failure of the binary
        reason = type(e).__name__
    bits = attrs.get("n_bits", attrs.get("width", attrs.get("precision", 32)))
    actions, area = library.aladdin("aladdin_adder", {"width": bits}, nm, cycle_s)
    return Estimate(actions, area, f"Library aladdin_adder {FALLBACK[:-1]}: {reason})")


def _sram(attrs: dict, nm: float, cycle_s: float, key: str) -> Estimate:
    try:
        width, depth = int(attrs["width"]), int(attrs["depth"])
    except (KeyError, TypeError, ValueError) as e:
        raise SpecError("an SRAM needs numeric width and depth", key=key, expected="width: bits, depth: rows") from e
    r = cacti.sram(width, depth, nm, int(attrs.get("n_banks", 1)),
                   int(attrs.get("n_rdwr_ports", attrs.get("n_rw_ports", 1))))
    read, write = r["read"] * 1e12, r["write"] * 1e12
    return Estimate({"read": read, "write": write, "update": write, "leak": r["leak_w"] * cycle_s * 1e12},
                    r["area"] * 1e12, "CactiSRAM")


def _estimate(cls: str, attrs: dict, key: str) -> Estimate:
    c = cls.lower()
    if c == "dummy_storage":
        return Estimate({"read": 0.0, "write": 0.0, "update": 0.0, "leak": 0.0}, 1.0, "dummy")
    if c == "dram":
        actions, area = library.dram(attrs, key)
        return Estimate(actions, area, "CactiDRAM")
    nm = parse_node(attrs.get("technology", "45nm"))
    cycle_s = float(attrs.get("global_cycle_seconds", 1e-9))
    if c in library.ALADDIN:
        actions, area = library.aladdin(c, attrs, nm, cycle_s)
        return Estimate(actions, area, "Library")
    if c == "sram":
        return _sram(attrs, nm, cycle_s, key)
    if c == "intadder":
        return _intadder(attrs, nm, cycle_s)
    raise SpecError(f"unknown component class {cls!r}", key=key,
                    expected="a compound class defined in a components file or a primitive among "
                             f"{sorted(PRIMITIVES)}")


# Aladdin_table's names that no plug-in of higher (or, for intadder, equal) accuracy answers: SRAM is CACTI's
# (80), intadder NeuroSim's (70, listed before it), as above.
TABLE_PRIMITIVES = frozenset(aladdin_table.CLASSES) - {"SRAM", "intadder"}
PRIMITIVES = frozenset({"SRAM", "DRAM", "dummy_storage", "intadder", *library.ALADDIN, *TABLE_PRIMITIVES})
_LOWER = frozenset(p.lower() for p in PRIMITIVES - TABLE_PRIMITIVES)


def is_primitive(cls: str) -> bool:
    """A class some plug-in answers (Aladdin_table matches its names exactly, as its ``supported_pc`` does)."""
    return cls.lower() in _LOWER or cls in TABLE_PRIMITIVES


def table_primitive(cls: str, attrs: dict, key: str = ""):
    """(energy of an action given its arguments, area) of an Aladdin_table-only primitive, or the one-line
    error Accelergy's failure amounts to: no plug-in estimates ``cls`` here (Aladdin_table: 40/45 nm only)."""
    relevant = {k: v for k, v in attrs.items() if k not in ("meshX", "meshY")}
    if not aladdin_table.supports(cls, relevant):
        raise SpecError(f"no Accelergy plug-in estimates primitive class {cls!r} at technology "
                        f"{relevant.get('technology')!r} (only {aladdin_table.NAME} knows it, at 40 and 45 nm), "
                        f"so real Accelergy stops here", key=key,
                        expected=f"a compound class named {cls} in your components, or a 40/45 nm technology")
    area = aladdin_table.area(cls, relevant, key=key)

    def energy(action: str, args: dict | None = None) -> float:
        return aladdin_table.energy(cls, action, relevant, args, key=key)
    return energy, area


def _versions() -> str:
    out = []
    for pkg in ("hwcomponents-cacti", "hwcomponents-neurosim"):
        try:
            out.append(f"{pkg}={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            out.append(f"{pkg}=none")
    return ",".join(out)


def estimates_dir():
    """``$COOPT_ESTIMATES_DIR`` or ``<cache>/estimates``: one JSON file per primitive and attribute set."""
    from pathlib import Path
    return Path(os.environ.get("COOPT_ESTIMATES_DIR") or cacti.cache_root() / "estimates")


_MEMO: dict[str, Estimate] = {}
STATS = {"hits": 0, "disk_hits": 0, "misses": 0}


def _cache_key(cls: str, attrs: dict) -> str:
    text = json.dumps([CACHE_FORMAT, _versions_cached(), cls.lower(), sorted((k, str(v)) for k, v in attrs.items())])
    return hashlib.sha256(text.encode()).hexdigest()


_VERSIONS: list[str] = []


def _versions_cached() -> str:
    if not _VERSIONS:
        _VERSIONS.append(_versions())
    return _VERSIONS[0]


def estimate_primitive(cls: str, attrs: dict, key: str = "") -> Estimate:
    """The primitive's per-action energies and area, from the memo, the disk cache or its estimator."""
    relevant = {k: v for k, v in attrs.items() if k not in ("n_instances", "meshX", "meshY")}
    h = _cache_key(cls, relevant)
    if h in _MEMO:
        STATS["hits"] += 1
        return _MEMO[h]
    path = estimates_dir() / f"{h}.json"
    if path.is_file():
        try:
            d = json.loads(path.read_text())
            est = Estimate(d["actions"], d["area"], d["estimator"])
            STATS["disk_hits"] += 1
            _MEMO[h] = est
            return est
        except (ValueError, KeyError):
            pass                                   # a damaged entry is recomputed
    est = _estimate(cls, relevant, key)
    STATS["misses"] += 1
    _MEMO[h] = est
    if FALLBACK[:-1] in est.estimator:
        return est                                 # a stand-in is never cached on disk
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"class": cls, "attributes": {k: str(v) for k, v in relevant.items()},
                                   "actions": est.actions, "area": est.area, "estimator": est.estimator}))
        os.replace(tmp, path)
    except OSError:
        pass                                       # a read-only cache only costs time
    return est


def clear_memo() -> None:
    """Forget in-process results (the disk cache stays): for tests and benchmarks."""
    _MEMO.clear()
    for k in STATS:
        STATS[k] = 0
