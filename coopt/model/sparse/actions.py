"""Energy of Sparseloop's fine-grained actions, picked from an ERT the way Timeloop picks them.

Timeloop maps each of its operations to a priority list of ERT action names
(``storageOperationMappings`` / ``arithmeticOperationMappings`` in
include/model/topology.hpp).  A storage's random read/fill/update falls back
to its largest action energy when none is listed (BufferLevel::ParseSpecs);
gated, skipped and metadata actions fall back to 0 (src/model/buffer.cpp).
"""
from __future__ import annotations

from coopt.energy.tables import EnergyTables

STORAGE = {
    "random_read": ("random_read", "read"),
    "gated_read": ("gated_read",),
    "skipped_read": ("skipped_read", "gated_read"),
    "random_fill": ("random_fill", "random_write", "fill", "write"),
    "gated_fill": ("gated_fill", "gated_write"),
    "skipped_fill": ("skipped_fill", "skipped_write", "gated_fill", "gated_write"),
    "random_update": ("random_update", "random_write", "update", "write"),
    "gated_update": ("gated_update", "gated_write"),
    "skipped_update": ("skipped_update", "skipped_write", "gated_update", "gated_write"),
    "random_metadata_read": ("random_metadata_read", "metadata_read"),
    "gated_metadata_read": ("gated_metadata_read",),
    "skipped_metadata_read": ("skipped_metadata_read", "gated_metadata_read"),
    "random_metadata_fill": ("random_metadata_fill", "random_metadata_write", "metadata_fill", "metadata_write"),
    "random_metadata_update": ("random_metadata_update", "random_metadata_write", "metadata_update",
                               "metadata_write"),
    "gated_metadata_fill": ("gated_metadata_fill", "gated_metadata_write"),
    "skipped_metadata_fill": ("skipped_metadata_fill", "skipped_metadata_write", "gated_metadata_fill",
                              "gated_metadata_write"),
    "gated_metadata_update": ("gated_metadata_update", "gated_metadata_write"),
    "skipped_metadata_update": ("skipped_metadata_update", "skipped_metadata_write", "gated_metadata_update",
                                "gated_metadata_write"),
    "decompression_count": ("decompression_count",),
    "compression_count": ("compression_count",),
}
COMPUTE = {
    "random_compute": ("mac_random", "mult_random", "mac", "mult", "compute"),
    "skipped_compute": ("mac_skipped", "mult_skipped", "compute_skipped", "mac_gated", "mult_gated",
                        "compute_gated", "mac", "mult", "compute"),
    "gated_compute": ("mac_gated", "mult_gated", "compute_gated", "mac", "mult", "compute"),
}
KINDS = ("random", "gated", "skipped")
OPS = ("read", "fill", "update")


def storage_action_energy(tables: EnergyTables, level: str, action: str) -> float:
    """pJ of one ``action`` (e.g. ``gated_read``) at storage ``level``."""
    actions = tables.ert.get(level, {})
    for name in STORAGE[action]:
        if name in actions:
            return float(actions[name])
    if action.startswith("random_") and "metadata" not in action:
        return tables.storage_energy(level, action.removeprefix("random_"))
    return 0.0


def compute_action_energy(tables: EnergyTables, name: str, action: str) -> float:
    """pJ of one ``action`` (random/gated/skipped_compute) at the arithmetic level."""
    actions = tables.ert.get(name, {})
    for a in COMPUTE[action]:
        if a in actions:
            return float(actions[a])
    return 0.0
