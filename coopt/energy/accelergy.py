"""Accelergy's role for an architecture: ERT and ART from compound classes and primitive estimators.

Why: coopt's energy axis should be the one a user gets from Accelergy 0.4
with its CACTI, Library and NeuroSim plug-ins.  Every component of the
architecture is expanded through its class (the shipped tutorial classes in
``coopt/energy/data/compound_components.yaml``, then the user's files, which
override by class name) down to primitives, each estimated once per distinct
attribute set (``coopt.energy.primitives``, cached on disk).  When the user's
files bring classes, a name they do not define that is a primitive
(``regfile``, ``intmac``) is the primitive, as in Accelergy, not our shipped
class (``Library.as_accelergy_sees_it``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.energy.compound import ComponentError, Library, Result
from coopt.energy.tables import EnergyTables
from coopt.errors import SpecError
from coopt.yamlio import load_yaml

SOURCE = "accelergy"
STORAGE_ACTIONS = ("update", "read", "write", "leak")     # the required_actions Timeloop's front end writes
COMPUTE_ACTIONS = ("compute", "leak")


@dataclass
class Estimation:
    """The tables plus, per component, the estimator of each primitive (Accelergy's summaries)."""

    tables: EnergyTables
    estimators: dict[str, list[tuple[str, str]]]
    paths: dict[str, str]


SHIPPED = Path(__file__).resolve().parent / "data" / "compound_components.yaml"
SHIPPED_LABEL = "coopt/energy/data/compound_components.yaml"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=1)
def _shipped() -> dict:
    """The shipped classes (read as a file, without importing the writers in accelergy_files)."""
    return yaml.load(SHIPPED.read_text("utf-8"), Loader=_LOADER)


def library(component_files=()) -> Library:
    """The shipped classes, then the user's (a class of the same name replaces ours; when the user brings
    any, shipped classes named like a primitive give way to it: ``Library.as_accelergy_sees_it``).

    Each entry is a file, a parsed dict, or ``(dict, file name)`` for classes read from an input set
    (so that errors name the user's file)."""
    lib = Library()
    lib.add(_shipped(), SHIPPED_LABEL, shipped=True)
    for f in component_files:
        if isinstance(f, tuple):
            node, name = f
        elif isinstance(f, dict):
            node, name = f, "<components>"
        else:
            node, name = _load(str(f), _mtime(f)), str(f)
        lib.add(node or {}, name)
    lib.as_accelergy_sees_it()
    return lib


def _mtime(path) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return -1                                      # load_yaml says what is wrong with it


@lru_cache(maxsize=64)
def _load(path: str, mtime_ns: int) -> dict:
    """A components file, parsed once per version of it (a study reads the same file per trial)."""
    return load_yaml(path)


def _given(arch: Architecture, comp: StorageLevel | ArithmeticLevel) -> dict:
    attrs = {k: v for k, v in (comp.attributes or {}).items() if k not in ("meshX", "meshY")}
    if isinstance(comp, StorageLevel):
        attrs.setdefault("width", comp.width or comp.word_bits * comp.block_size)
        if comp.depth is not None:
            attrs.setdefault("depth", comp.depth)
        attrs.setdefault("datawidth", comp.word_bits)
    else:   # widths Accelergy would demand; coopt knows the word size (Timeloop's tutorials leave them out)
        attrs.setdefault("datawidth", comp.word_bits)
        attrs.setdefault("multiplier_width", comp.word_bits)
        attrs.setdefault("adder_width", 2 * comp.word_bits)
    if attrs.get("technology") == -1:             # Timeloop's placeholder on dummy levels
        attrs.pop("technology")
    return attrs


def estimate_arch(arch: Architecture, component_files=(), *, lib: Library | None = None,
                  only=None, arch_file: str | None = None) -> Estimation:
    """ERT/ART of every component of ``arch`` (or of those named in ``only``) as Accelergy would estimate them.

    An error inside coopt's own classes or estimators caused by the user's component (a depth of 0, an
    unknown technology) is reported against ``arch_file`` and the component, where the user can fix it."""
    lib = lib or library(component_files)
    inherited = {"technology": arch.technology, "global_cycle_seconds": arch.cycle_seconds}
    ert, art, est, paths = {}, {}, {}, {}
    for comp in [*reversed(arch.storage), arch.arithmetic]:
        if only is not None and comp.name not in only:
            continue
        where = f"architecture.{comp.name}"
        cls = comp.cls
        try:
            res: Result = lib.expand(cls, _given(arch, comp), inherited, where)
        except SpecError as e:
            if e.file not in (None, SHIPPED_LABEL):
                raise                                  # the user's own class file: already named
            inside = f" (in coopt's class {e.key})" if e.file else ""
            key = e.key if e.file is None and (e.key or "").startswith("architecture") else where
            raise ComponentError(f"{comp.name} (class {cls}): {e.message}{inside}", file=arch_file, key=key,
                                 expected=e.expected) from None
        actions = dict(res.actions)
        if res.energy_of is not None:              # a primitive: the actions Timeloop requires of it
            names = COMPUTE_ACTIONS if isinstance(comp, ArithmeticLevel) else STORAGE_ACTIONS
            actions = {a: res.energy_of(a, {}) for a in names}
        if isinstance(comp, ArithmeticLevel) and "compute" not in actions:
            for alias in ("mac_random", "mult_random", "mac", "mult", "multiply", "add", "read"):
                if alias in actions:
                    actions["compute"] = actions[alias]
                    break
        _check_result(lib, comp, actions, res.area, where, arch_file)
        ert[comp.name], art[comp.name] = actions, res.area
        est[comp.name] = res.estimators
        paths[comp.name] = comp.path or comp.name
    return Estimation(EnergyTables(ert=ert, art=art, source=SOURCE), est, paths)


def _check_result(lib: Library, comp, actions: dict, area: float, where: str, arch_file: str | None) -> None:
    """Energies and areas finite and >= 0, as ``evaluate --ert`` demands of a user's tables (the same rule
    for estimates and for given tables); blamed on the user's class, else on the component."""
    cdef = lib.classes.get(comp.cls)
    user = cdef is not None and cdef.file != SHIPPED_LABEL
    file, key = (cdef.file, cdef.key) if user else (arch_file, where)
    for name, v in [*actions.items(), ("area", area)]:
        if not math.isfinite(v) or v < 0:
            what = "area" if name == "area" else f"energy of {name}"
            raise ComponentError(f"{comp.name}: the {what} comes out as {v!r}", file=file, key=key,
                                 expected="a finite number >= 0 (check energy_scale/area_scale and attributes)")


def tables(arch: Architecture, component_files=(), only=None, arch_file: str | None = None) -> EnergyTables:
    return estimate_arch(arch, component_files, only=only, arch_file=arch_file).tables


def summary_yaml(estimation: Estimation) -> dict:
    """Accelergy's ERT_summary-like record: per component its actions and each primitive's estimator."""
    out = []
    for name, actions in estimation.tables.ert.items():
        seen, prims = set(), []
        for sub, e in estimation.estimators[name]:
            if (sub, e) not in seen:
                seen.add((sub, e))
                prims.append({"name": sub or name, "estimator": e})
        out.append({"name": estimation.paths[name], "actions": [{"name": a, "energy": float(v)}
                                                                 for a, v in actions.items()],
                    "area": float(estimation.tables.art[name]), "primitive_estimation(s)": prims})
    return {"energy_summary": {"version": 0.4, "table_summary": out}}
