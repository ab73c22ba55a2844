"""What a network is to coopt: distinct layer shapes with counts, and the ops a user's model leaves out.

Kept apart from :mod:`coopt.workload.networks` (the built-in networks and the ``--network`` registry)
so that the readers of users' networks (ONNX, Timeloop problem folders) build the same types without
importing the registry that dispatches to them.
"""
from __future__ import annotations

from dataclasses import dataclass

from coopt.workload.problem import Problem

__all__ = ["NetworkLayer", "NotMapped", "Network", "merge_layers", "not_mapped_summary"]


@dataclass(frozen=True)
class NetworkLayer:
    """One distinct layer shape, how many times it runs, and which layers have it.

    ``densities``: the layer's Timeloop densities as its problem file gave them (``{tensor:
    {distribution, density}}``, coopt.workload.densities); None: dense."""

    name: str
    problem: Problem
    count: int
    members: tuple[str, ...]
    densities: dict | None = None

    @property
    def macs(self) -> int:
        return self.count * self.problem.macs


@dataclass(frozen=True)
class NotMapped:
    """Operations of a user's model that no layer models (pooling, element-wise, softmax, ...):
    the report lists them so the totals' scope is plain.  ``elements``: element operations."""

    op: str
    count: int
    elements: int
    reason: str = ""


def not_mapped_summary(not_mapped) -> str:
    """One sentence for a trial's MLflow note and export summary (``not_mapped``: records' dicts)."""
    parts = ", ".join(f"{n['op']} x{n['count']:,} ({n['elements']:,} element ops)" for n in not_mapped)
    return f"Not mapped (outside the totals): {parts}."


@dataclass(frozen=True)
class Network:
    """A network: its distinct layer shapes in order of first appearance, and what it leaves out."""

    name: str
    layers: tuple[NetworkLayer, ...]
    not_mapped: tuple[NotMapped, ...] = ()
    source: str = ""                      # the file or folder it was read from ('' for built-in ones)

    @property
    def total_layers(self) -> int:
        """Layer executions (sum of counts)."""
        return sum(layer.count for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def densities(self) -> dict | None:
        """``{layer name: Timeloop densities}`` of the layers whose files gave densities (the form of
        coopt.study.sparsity); None: every layer is dense."""
        return {layer.name: layer.densities for layer in self.layers if layer.densities} or None


def _densities_key(densities: dict | None) -> tuple:
    return tuple(sorted((t, d["distribution"], d["density"]) for t, d in (densities or {}).items()))


def merge_layers(entries) -> tuple[NetworkLayer, ...]:
    """``(name, problem, repeat[, densities])`` in network order -> distinct layers with counts, first
    appearance first.  One shape under other densities is another layer: it is mapped on its own,
    since the best mapping and its cost depend on the densities (a network's first layer often
    reads dense inputs where later ones of the same shape read sparse activations)."""
    merged: dict[tuple, list] = {}
    for lname, p, repeat, *dens in entries:
        densities = dens[0] if dens else None
        slot = merged.setdefault((p.signature(), _densities_key(densities)), [p, 0, [], densities])
        slot[1] += repeat
        slot[2].append(lname)
    return tuple(NetworkLayer(p.name, p, count, tuple(members), densities)
                 for p, count, members, densities in merged.values())
