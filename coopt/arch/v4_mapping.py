"""A mapping given with a v4 spec, as timeloopfe reads it: directives may name a ``!Container``.

Why: timeloopfe attaches every mapping directive to the architecture node of
that name (``v4/processors/constraint_attacher.py``), so a v4 mapping puts a
fan-out's spatial factors on the container (``target: PE``), and
``version_transpilers/v4_to_v3.py`` then writes them on the container's
``inter_PE_spatial`` level, which keeps nothing (a bypass of every data
space).  coopt's processed form has the same levels; this renames such
targets and adds the bypass timeloopfe adds, so a mapping coopt exports in
v4 form (:mod:`coopt.export.v4`) reads back here as it reads in timeloopfe.
"""
from __future__ import annotations

import re

__all__ = ["level_names", "attach_container_directives", "to_v4_mapping"]

_DUMMY = re.compile(r"inter_(.+)_spatial")
_KEEP_TYPES = ("datatype", "bypass", "dataspace")


def level_names(arch: dict) -> list[str]:
    """Names of the flat components of a processed architecture (``name[1..N]`` -> ``name``)."""
    out = []
    for sub in arch.get("subtree") or []:
        for comp in sub.get("local") or []:
            out.append(str(comp.get("name", "")).split("[", 1)[0])
    return out


def attach_container_directives(mapping, levels: list[str], dataspaces: list[str]):
    """``mapping`` with directives on a container moved to its ``inter_<name>_spatial`` level."""
    if not isinstance(mapping, list):
        return mapping
    out, moved = [], []
    for d in mapping:
        target = d.get("target") if isinstance(d, dict) else None
        dummy = f"inter_{target}_spatial"
        if isinstance(target, str) and target not in levels and dummy in levels:
            d = {**d, "target": dummy}
            moved.append(dummy)
        out.append(d)
    for dummy in dict.fromkeys(moved):
        if not any(d.get("target") == dummy and d.get("type") in _KEEP_TYPES for d in out if isinstance(d, dict)):
            out.append({"target": dummy, "type": "bypass", "keep": [], "bypass": list(dataspaces)})
    return out


def to_v4_mapping(mapping: list) -> list:
    """Timeloop's mapping (as coopt writes it) in timeloopfe's v4 form: factors ``C=4``, ``type: dataspace``,
    a fan-out's spatial factors on its container; the dummy level's own directives (no temporal loops, keeps
    nothing) are timeloopfe's to add."""
    out = []
    for d in mapping:
        d = dict(d)
        m = _DUMMY.fullmatch(str(d.get("target", "")))
        if m:
            if d.get("type") == "temporal":
                if re.search(r"=?([2-9]|\d\d+)\b", re.sub(r"[A-Za-z_]+\s*=?\s*1\b", "", str(d.get("factors", "")))):
                    raise ValueError(f"temporal loops at {d['target']}: a container has none in v4")
                continue
            if d.get("type") in _KEEP_TYPES:
                continue
            d["target"] = m.group(1)
        if isinstance(d.get("factors"), str):
            d["factors"] = re.sub(r"([A-Za-z_][A-Za-z0-9_]*?)\s*=?\s*(\d+)", r"\1=\2", d["factors"])
        if d.get("type") in ("datatype", "bypass"):
            d["type"] = "dataspace"
        out.append(d)
    return out
