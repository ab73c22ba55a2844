"""Energy-per-action (ERT) and area (ART) tables, keyed by component name.

Keys are the leaf names of the architecture's components (``shared_glb``,
``mac``), the way the model refers to levels.  Timeloop picks an ERT action
for each of its operations by a priority list; ``storage_energy`` and
``compute_energy`` follow the same lists so that an ERT written by real
Accelergy gives Timeloop's exact energies.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Timeloop's {operation: [ERT action names in priority order]} (model/topology.hpp).
STORAGE_ACTIONS = {
    "read": ("random_read", "read"),
    "fill": ("random_fill", "random_write", "fill", "write"),
    "update": ("random_update", "random_write", "update", "write"),
    "leak": ("leak",),
}
COMPUTE_ACTIONS = ("mac_random", "mult_random", "mac", "mult", "compute")


@dataclass(frozen=True)
class EnergyTables:
    """pJ per action (``ert[name][action]``) and µm² per instance (``art[name]``)."""

    ert: dict[str, dict[str, float]] = field(default_factory=dict)
    art: dict[str, float] = field(default_factory=dict)
    source: str = "unknown"

    def storage_energy(self, name: str, op: str) -> float:
        """Energy of one vector access ``op`` (read/fill/update/leak) at storage ``name``.

        Like Timeloop: read/fill/update fall back to the largest action energy of
        the component when no listed action exists; leak falls back to 0.
        """
        actions = self.ert.get(name, {})
        for action in STORAGE_ACTIONS[op]:
            if action in actions:
                return float(actions[action])
        if op == "leak" or not actions:
            return 0.0
        return float(max(actions.values()))

    def compute_energy(self, name: str) -> float:
        actions = self.ert.get(name, {})
        for action in COMPUTE_ACTIONS:
            if action in actions:
                return float(actions[action])
        return 0.0

    def area(self, name: str) -> float:
        return float(self.art.get(name, 0.0))

    def merged(self, other: "EnergyTables") -> "EnergyTables":
        """Entries of ``other`` override ours (a user's Accelergy files over estimates)."""
        ert = {k: dict(v) for k, v in self.ert.items()}
        for k, v in other.ert.items():
            ert[k] = dict(v)
        art = dict(self.art)
        art.update(other.art)
        return EnergyTables(ert, art, source=f"{self.source}+{other.source}")
