"""Pareto fronts and hypervolumes over trial records (objectives minimised or maximised)."""
from __future__ import annotations

import numpy as np

from coopt.study.records import TrialRecord


def losses(points: np.ndarray, directions: list[str]) -> np.ndarray:
    """Objective values turned into values to minimise."""
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return np.asarray(points, dtype=np.float64) * sign


def nondominated(points: np.ndarray, directions: list[str]) -> np.ndarray:
    """Mask of the points no other point dominates (duplicates all kept)."""
    l = losses(points, directions)
    n = len(l)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        dominated = np.all(l <= l[i], axis=1) & np.any(l < l[i], axis=1)
        keep[i] = not dominated.any()
    return keep


def first_of_each_design(records: list[TrialRecord]) -> list[TrialRecord]:
    """One record per design (the lowest trial number): a design proposed again counts once."""
    seen: dict[str, TrialRecord] = {}
    for r in sorted(records, key=lambda r: r.number):
        seen.setdefault(repr(sorted(r.params.items())), r)
    return list(seen.values())


# Metrics an unmapped design really has (the architecture alone decides them); its energy, throughput,
# latency, power and EDP are placeholders told to the samplers and must never be shown as values.
KNOWN_UNMAPPED = ("area_mm2", "onchip_kib", "macs", "mac_instances")


def is_mapped(rec: TrialRecord) -> bool:
    """Every layer has a mapping: the record's energy and throughput are measurements, not placeholders."""
    return not rec.violations.get("unmapped_layers", 0)


def shown_metrics(rec: TrialRecord) -> dict:
    """The record's metrics that are real values (an unmapped design keeps only its area and memory)."""
    return dict(rec.metrics) if is_mapped(rec) else {k: v for k, v in rec.metrics.items() if k in KNOWN_UNMAPPED}


def pareto_front(records: list[TrialRecord], objectives: list[tuple[str, str]], *,
                 fold: bool = True) -> list[TrialRecord]:
    """Feasible, non-dominated records, sorted by the first objective.  With ``fold`` (the default) a
    design evaluated by several trials appears once, as its first trial, and designs with identical
    objective values are one entry, their representative (``fold_ties``)."""
    feas = [r for r in (first_of_each_design(records) if fold else records) if r.feasible]
    if not feas:
        return []
    pts = np.array([[r.metrics[name] for name, _ in objectives] for r in feas])
    mask = nondominated(pts, [d for _, d in objectives])
    front = [r for r, k in zip(feas, mask) if k]
    if fold:
        front = [rep for rep, _ in fold_ties(front, objectives)]
    first, direction = objectives[0]
    return sorted(front, key=lambda r: (r.metrics[first] * (1 if direction == "minimize" else -1), r.number))


def tie_rank(rec: TrialRecord) -> tuple:
    """Which of designs with identical objectives represents them: least area, then power, then trial."""
    return (rec.metrics.get("area_mm2", np.inf), rec.metrics.get("power_mw", np.inf), rec.number)


def fold_ties(records: list[TrialRecord], objectives: list[tuple[str, str]]) -> list[tuple[TrialRecord, list[int]]]:
    """Records with bit-identical objective values as one entry: (representative, the others' trial
    numbers, ascending), in the order of the representatives' first appearance in ``records``."""
    groups: dict[tuple, list[TrialRecord]] = {}
    for r in records:
        groups.setdefault(objective_key(r, objectives), []).append(r)
    out = []
    for members in groups.values():
        rep = min(members, key=tie_rank)
        out.append((rep, sorted(m.number for m in members if m is not rep)))
    order = {id(r): i for i, r in enumerate(records)}
    return sorted(out, key=lambda x: order[id(x[0])])


def objective_key(rec: TrialRecord, objectives: list[tuple[str, str]]) -> tuple:
    return tuple(float(rec.metrics[n]) for n, _ in objectives)


def front_equivalents(records: list[TrialRecord], objectives: list[tuple[str, str]]) -> dict[int, list[int]]:
    """For each front entry (its representative's trial number), the other trials it stands for: designs
    with the same objective values and trials that evaluated one of them again."""
    same: dict[tuple, list[int]] = {}
    for r in records:
        if r.feasible:
            same.setdefault(objective_key(r, objectives), []).append(r.number)
    return {rep.number: sorted(n for n in same[objective_key(rep, objectives)] if n != rep.number)
            for rep in pareto_front(records, objectives)}


def distinct_designs(front: list[TrialRecord]) -> list[tuple[TrialRecord, list[int]]]:
    """Collapse trials that evaluated the same design: (first trial, numbers of the repeats)."""
    out: dict[str, tuple[TrialRecord, list[int]]] = {}
    for r in sorted(front, key=lambda r: r.number):
        key = repr(sorted(r.params.items()))
        if key in out:
            out[key][1].append(r.number)
        else:
            out[key] = (r, [])
    order = {id(r): i for i, r in enumerate(front)}
    return sorted(out.values(), key=lambda x: order[id(x[0])])


def hypervolume(points, directions: list[str], reference: list[float]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (a worse-than-all corner), by moocore."""
    import moocore

    if len(points) == 0:
        return 0.0
    l = losses(points, directions)
    ref = losses(np.array([reference]), directions)[0]
    inside = np.all(l < ref, axis=1)
    if not inside.any():
        return 0.0
    return float(moocore.hypervolume(l[inside], ref=ref))


def front_hypervolume(records: list[TrialRecord], objectives: list[tuple[str, str]], reference: list[float]) -> float:
    front = pareto_front(records, objectives)
    pts = np.array([[r.metrics[name] for name, _ in objectives] for r in front]) if front else np.zeros((0, 2))
    return hypervolume(pts, [d for _, d in objectives], reference)
