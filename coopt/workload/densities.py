"""A network layer's Timeloop ``densities``, read with its problem file.

Why here: a layer's densities are part of the workload (Timeloop keeps them in
``problem.instance.densities``); the network readers use this module, and so
does the model's reader (``coopt.model.sparse.spec.parse_densities``: the
one-way rule lets the model import the workload).  Timeloop's
density-distribution-factory.cpp: a bare number is fixed-structured; ``fixed``
and ``diagonal`` are other names of ``fixed_structured`` and ``banded``.
What the model refuses later (banded densities below 1) is refused here,
where the file is known.

A layer's densities travel as Timeloop writes them, ``{tensor: {distribution,
density}}``; a layer whose densities are all 1 is dense (None), as before.
"""
from __future__ import annotations

from coopt.errors import SpecError

__all__ = ["DISTRIBUTIONS", "split_densities", "checked_densities", "read_densities", "check_copies"]

DISTRIBUTIONS = {"fixed": "fixed_structured", "fixed_structured": "fixed_structured",
                 "hypergeometric": "hypergeometric", "banded": "banded", "diagonal": "banded"}


def split_densities(node) -> tuple[object, object, str]:
    """``(problem node without densities, densities, their key)``, as model/sparse/spec.split_problem_node:
    the dense reader never sees a density (also in Timeloop's form without ``instance``)."""
    if not isinstance(node, dict):
        return node, None, ""
    inst = node.get("instance")
    if isinstance(inst, dict) and "densities" in inst:
        inst = dict(inst)
        dens = inst.pop("densities")
        return {**node, "instance": inst}, dens, "problem.instance.densities"
    if "densities" in node and "instance" not in node:
        rest = dict(node)
        return rest, rest.pop("densities"), "problem.densities"
    return node, None, ""


def checked_densities(node, tensors, *, file: str | None, key: str) -> dict[str, tuple[str, float]]:
    """``{tensor: (distribution, density)}`` of a ``densities`` block, checked key by key (also the model's
    reader, ``coopt.model.sparse.spec.parse_densities``)."""
    if node in (None, {}):
        return {}
    if not isinstance(node, dict):
        raise SpecError(f"is {node!r}", file=file, key=key, expected="a mapping {tensor: {distribution, density}}")
    out = {}
    for name, d in node.items():
        k = f"{key}.{name}"
        if name not in tensors:
            raise SpecError(f"{name!r} is not a tensor of the problem", file=file, key=k,
                            expected=f"one of {list(tensors)}")
        if isinstance(d, dict):
            dist, dens, dk = d.get("distribution", "fixed_structured"), d.get("density"), f"{k}.density"
            if dist not in DISTRIBUTIONS:
                raise SpecError(f"distribution {dist!r}", file=file, key=f"{k}.distribution",
                                expected=f"one of {list(DISTRIBUTIONS)}")
        else:
            dist, dens, dk = "fixed_structured", d, k
        if isinstance(dens, bool) or not isinstance(dens, (int, float)) or not 0 <= dens <= 1:
            raise SpecError(f"density {dens!r}", file=file, key=dk, expected="a number from 0 to 1")
        out[name] = (DISTRIBUTIONS[dist], float(dens))
    return out


def read_densities(node, tensors, *, file: str | None, key: str) -> dict | None:
    """``{tensor: {distribution, density}}`` of one problem file; None when every tensor is dense."""
    out = {}
    for name, (dist, dens) in checked_densities(node, tensors, file=file, key=key).items():
        if dist == "banded" and dens < 1:          # model/sparse/analysis.static_checks refuses it too
            raise SpecError(f"not modelled yet: {dist} density for {name}", file=file, key=f"{key}.{name}",
                            expected="fixed_structured or hypergeometric (banded densities are not modelled yet)")
        out[name] = {"distribution": dist, "density": dens}
    return out if any(d["density"] < 1 for d in out.values()) else None


def check_copies(densities: dict | None, copies: int, *, file: str, key: str) -> None:
    """A hypergeometric density is a count of nonzeros in the whole tensor (hypergeometric-distribution.cpp,
    SetWorkloadTensorSize): a layer mapped as independent copies (groups, heads) holds a part of it, whose
    count Timeloop's reading does not fix.  Refused rather than approximated."""
    for name, d in (densities or {}).items():
        if copies > 1 and d["distribution"] == "hypergeometric" and d["density"] < 1:
            raise SpecError(f"hypergeometric density of {name} in a layer mapped as {copies:,} independent copies",
                            file=file, key=f"{key}.{name}",
                            expected="fixed_structured, or a shape without independent ranks (groups, heads)")
