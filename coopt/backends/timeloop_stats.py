"""Read ``timeloop-model.stats.txt`` / ``timeloop-mapper.stats.txt`` into plain numbers.

Used to test the native engine against real Timeloop runs and by the
``timeloop`` backend to turn the real tool's output into coopt results.
"""
from __future__ import annotations

import re
from pathlib import Path

from coopt.errors import SpecError

_NUM = r"([-+0-9.eE]+)"
_DS_FIELDS = {
    "Scalar reads (per-instance)": "reads",
    "Scalar fills (per-instance)": "fills",
    "Scalar updates (per-instance)": "updates",
    "Energy (total)": "energy_pj",
    "Utilized capacity": "utilized_capacity",
    "Partition size": "partition_size",
    "Utilized instances (max)": "utilized_instances",
}


def _value(text: str) -> float:
    m = re.match(r"\s*" + _NUM, text)
    if not m:
        raise ValueError(text)
    return float(m.group(1))


def parse_stats(path_or_text) -> dict:
    """Parse a Timeloop stats file: per-level data-space counts, cycles, energy, utilisation."""
    text = path_or_text
    if isinstance(path_or_text, Path) or (isinstance(path_or_text, str) and "\n" not in path_or_text):
        try:
            text = Path(path_or_text).read_text()
        except OSError as e:
            raise SpecError(f"cannot read Timeloop stats: {e.strerror}", file=str(path_or_text)) from None
    out: dict = {"levels": {}, "mac": {}, "fj_per_compute": {}}
    lines = text.splitlines()
    level = None
    ds = None
    section = None
    in_summary = False
    in_levels = True
    in_fj = False
    for raw in lines:
        line = raw.rstrip()
        m = re.match(r"^=== (.+) ===$", line.strip())
        if m and in_levels:
            name = m.group(1)
            if name in out["levels"] or name == out["mac"].get("name"):
                level = None          # the later "Networks"/"Operational Intensity" repeats
                continue
            level = {"name": name, "dataspaces": {}}
            ds = None
            section = None
            if not out["mac"]:
                out["mac"] = level
            else:
                out["levels"][name] = level
            continue
        if line.startswith("Networks") or line.startswith("Operational Intensity"):
            level = None
            in_levels = False
            continue
        if line.startswith("Summary Stats"):
            in_summary = True
            level = None
            continue
        if in_summary:
            if line.startswith("Utilization:"):
                out["utilization"] = _value(line.split(":", 1)[1]) / 100.0
            elif line.startswith("Cycles:"):
                out["cycles"] = int(_value(line.split(":", 1)[1]))
            elif line.startswith("Energy:"):
                out["energy_uj"] = _value(line.split(":", 1)[1])
            elif line.startswith("Computes ="):
                out["computes"] = int(_value(line.split("=", 1)[1]))
            elif line.startswith("fJ/Compute"):
                in_fj = True
            elif in_fj and "=" in line:
                k, v = line.split("=", 1)
                out["fj_per_compute"][k.strip()] = _value(v)
            continue
        if level is None:
            continue
        s = line.strip()
        if s in ("SPECS", "STATS"):
            section = s
            ds = None
            continue
        m = re.match(r"^(\w+):$", s)
        if m and section == "STATS":
            ds = level["dataspaces"].setdefault(m.group(1), {})
            continue
        if ":" not in s:
            continue
        key, val = [x.strip() for x in s.split(":", 1)]
        try:
            num = _value(val)
        except ValueError:
            continue
        if ds is not None and key in _DS_FIELDS:
            ds[_DS_FIELDS[key]] = num
        elif ds is None:
            level.setdefault(key, num)
    if "cycles" not in out:
        raise SpecError("no 'Summary Stats' with Cycles found", file=str(path_or_text)[:200],
                        expected="a timeloop-model or timeloop-mapper stats file")
    return out


def total_energy_pj(stats: dict) -> float:
    """Total energy in pJ from the fJ/Compute summary (more digits than the uJ line)."""
    return stats["fj_per_compute"]["Total"] * stats["computes"] / 1000.0


def level_energy_pj(stats: dict, name: str) -> float:
    return stats["fj_per_compute"][name] * stats["computes"] / 1000.0


def format_stats(result, problem, arch) -> str:
    """A stats file in Timeloop's layout (the parts ``parse_stats`` and people read) for a MappingEval."""
    lines = ["Buffer and Arithmetic Levels", "----------------------------", "Level 0", "-------",
             f"=== {arch.arithmetic.name} ===", "", "    STATS", "    -----",
             f"    Computes (total)        : {result.macs}", f"    Cycles                  : {result.compute_cycles}",
             f"    Energy (total)          : {result.mac_energy_pj:.2f} pJ", ""]
    for i, lvl in enumerate(result.levels):
        lines += [f"Level {i + 1}", "-------", f"=== {lvl.name} ===", "", "    STATS", "    -----",
                  f"    Cycles               : {lvl.cycles}"]
        for ds in problem.dataspaces:
            d = lvl.dataspaces[ds.name]
            if not (d["reads"] or d["fills"] or d["updates"]):
                continue
            lines += [f"    {ds.name}:",
                      f"        Utilized capacity                        : {d['tile']}",
                      f"        Utilized instances (max)                 : {lvl.instances_used}",
                      f"        Scalar reads (per-instance)              : {d['reads']}",
                      f"        Scalar fills (per-instance)              : {d['fills']}",
                      f"        Scalar updates (per-instance)            : {d['updates']}",
                      f"        Energy (total)                           : {d['energy_pj']:.2f} pJ"]
        lines.append("")
    lines += ["Networks", "--------", "", "Summary Stats", "-------------",
              f"Utilization: {100 * result.utilization:.2f}%", f"Cycles: {result.cycles}",
              f"Energy: {result.energy_pj / 1e6:.2f} uJ", "", f"Computes = {result.macs}", "fJ/Compute"]
    lines.append(f"    {arch.arithmetic.name:<45s} = {1000 * result.mac_energy_pj / result.macs:.2f}")
    for lvl in result.levels:
        lines.append(f"    {lvl.name:<45s} = {1000 * lvl.energy_pj / result.macs:.2f}")
    lines.append(f"    {'Total':<45s} = {1000 * result.energy_pj / result.macs:.2f}")
    return "\n".join(lines) + "\n"
