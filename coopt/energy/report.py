"""``coopt energy`` output: the architecture it reads, the text summary and the JSON object."""
from __future__ import annotations

from coopt.arch.spec import Architecture
from coopt.arch.yaml_io import arch_from_yaml
from coopt.energy.accelergy import Estimation
from coopt.errors import SpecError
from coopt.arch.v4_spec import load_spec


def load_arch(path) -> Architecture:
    """The architecture in ``path`` (Timeloop v0.3/v0.4 tree or timeloopfe ``nodes`` form)."""
    return load_arch_and_components(path)[0]


def load_arch_and_components(path, variables: dict | None = None) -> tuple[Architecture, list]:
    """The architecture and, as Accelergy reads every key of every file, compound classes found beside it
    (a v4 spec's ``components:`` included)."""
    raw, sources = load_spec([path], variables)
    if "architecture" not in raw:
        raise SpecError("no 'architecture:' section", file=str(path), key="architecture")
    arch = arch_from_yaml(raw["architecture"], file=sources["architecture"])
    cc = raw.get("compound_components")
    comps = ([({"compound_components": cc}, sources.get("compound_components") or str(path))]
             if isinstance(cc, dict) else [])
    return arch, comps


def energy_json(estimation: Estimation) -> dict:
    t = estimation.tables
    return {"ert": {c: {a: float(v) for a, v in acts.items()} for c, acts in t.ert.items()},
            "art": {c: float(v) for c, v in t.art.items()}}


def energy_text(estimation: Estimation) -> str:
    lines = ["component            area um^2   actions (pJ; leak per cycle)   estimators"]
    for c, acts in estimation.tables.ert.items():
        shown = "  ".join(f"{a}={v:.6g}" for a, v in acts.items() if a != "idle")
        ests = sorted({e for _, e in estimation.estimators[c]})
        lines.append(f"{c:<20} {estimation.tables.art[c]:>11.6g}   {shown}   [{', '.join(ests)}]")
    return "\n".join(lines)
