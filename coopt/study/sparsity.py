"""A search space's workload densities: Timeloop ``densities`` per layer, from defaults and overrides.

Why: sparsity is a property of the workload (zeros after ReLU, pruned weights),
not of the design; a study evaluates every design under the same densities.
The space's ``sparsity:`` section gives densities for every layer and per-layer
overrides (any member name of a layer)::

    sparsity:
      distribution: fixed_structured     # Timeloop's density model (default)
      densities: {Inputs: 0.5, Weights: 0.5}
      layers:
        conv1: {Inputs: 1.0}

The result travels to the workers as plain data (``{layer name: {tensor: {distribution, density}}}``),
the form of a Timeloop problem's ``instance.densities``.
"""
from __future__ import annotations

from coopt.errors import SpecError

__all__ = ["parse_sparsity", "record_is_sparse"]

_KEYS = ("distribution", "densities", "layers")
_DISTRIBUTIONS = ("fixed_structured", "hypergeometric")


def _densities(node, tensors: set, *, file, key) -> dict:
    if not isinstance(node, dict):
        raise SpecError(f"is {node!r}", file=file, key=key, expected="{tensor: density from 0 to 1}")
    for t, d in node.items():
        if t not in tensors:
            raise SpecError(f"unknown tensor {t!r}", file=file, key=f"{key}.{t}", expected=f"one of {sorted(tensors)}")
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d <= 1:
            raise SpecError(f"density is {d!r}", file=file, key=f"{key}.{t}", expected="a number from 0 to 1")
    return {t: float(d) for t, d in node.items()}


def parse_sparsity(node, network, *, file=None) -> dict | None:
    """``{layer name: densities}`` for every layer of ``network`` (None: no ``sparsity:`` section).

    Layers of one shape are mapped once (``NetworkLayer.members``), so their members must share
    their densities; overriding one of them alone is refused rather than averaged.
    """
    if node is None:
        return None
    if not isinstance(node, dict) or set(node) - set(_KEYS):
        raise SpecError(f"unknown keys {sorted(set(node) - set(_KEYS)) if isinstance(node, dict) else node!r}",
                        file=file, key="sparsity", expected=f"a mapping with keys among {list(_KEYS)}")
    dist = node.get("distribution", "fixed_structured")
    if dist not in _DISTRIBUTIONS:
        raise SpecError(f"distribution is {dist!r}", file=file, key="sparsity.distribution",
                        expected=f"one of {list(_DISTRIBUTIONS)}")
    tensors = {ds.name for layer in network.layers for ds in layer.problem.dataspaces}
    base = _densities(node.get("densities") or {}, tensors, file=file, key="sparsity.densities")
    over = node.get("layers") or {}
    if not isinstance(over, dict):
        raise SpecError("is not a mapping", file=file, key="sparsity.layers", expected="{layer name: {tensor: density}}")
    members = {m: layer for layer in network.layers for m in layer.members}
    per_member = {}
    for name, d in over.items():
        if name not in members:
            raise SpecError(f"unknown layer {name!r}", file=file, key=f"sparsity.layers.{name}",
                            expected=f"a layer of {network.name}, e.g. {list(members)[:3]}")
        per_member[name] = _densities(d, tensors, file=file, key=f"sparsity.layers.{name}")
    out = {}
    for layer in network.layers:
        given = [per_member.get(m, {}) for m in layer.members]
        if any(g != given[0] for g in given):
            odd = next(m for m in layer.members if m in per_member)       # an override given, for some only
            other = next(m for m, g in zip(layer.members, given) if g != per_member[odd])
            raise SpecError(f"layers {odd} and {other} share a shape (mapped once) but not their "
                            "densities", file=file, key=f"sparsity.layers.{odd}",
                            expected=f"the same densities for all of {list(layer.members)}")
        dens = {**base, **given[0]}
        out[layer.name] = {t: {"distribution": dist, "density": v} for t, v in dens.items()}
    return out


def record_is_sparse(rec) -> bool:
    """Whether a trial record was evaluated under sparsity (densities in its problems, or sparse
    optimisations in its architecture)."""
    return bool(rec.arch_yaml.get("sparse_optimizations")) or any(
        "densities" in (layer.problem_yaml["problem"].get("instance") or {}) for layer in rec.layers)
