"""Which estimator builds the energy tables: Accelergy's method (default) or coopt's built-in tables.

Why an environment variable: the choice must reach every process that builds
tables -- the CLI, the mapper's worker processes and a study's Ray workers --
and they all inherit the environment.  ``--energy`` on the CLI sets it.
"""
from __future__ import annotations

import os

from coopt.arch.spec import Architecture
from coopt.energy.tables import EnergyTables
from coopt.errors import SpecError

METHODS = ("accelergy", "builtin")
ENV = "COOPT_ENERGY"


def method() -> str:
    m = os.environ.get(ENV, "accelergy").strip().lower() or "accelergy"
    if m not in METHODS:
        raise SpecError(f"{ENV}={m!r}", key=ENV, expected=f"one of {list(METHODS)}")
    return m


def set_method(m: str | None) -> None:
    """Make ``m`` the method of this process and its children (None: leave as is)."""
    if m is not None:
        if m not in METHODS:
            raise SpecError(f"--energy {m}", key="--energy", expected=f"one of {list(METHODS)}")
        os.environ[ENV] = m


def arch_tables(arch: Architecture, component_files=()) -> EnergyTables:
    """ERT/ART of ``arch`` by the current method."""
    if method() == "builtin":
        from coopt.energy.estimate import estimate
        return estimate(arch)
    from coopt.energy.accelergy import tables
    return tables(arch, component_files)


def with_overrides(arch: Architecture, user: EnergyTables | None) -> EnergyTables:
    """The user's ERT/ART entries over estimates; nothing is estimated when the user's files cover all."""
    names = [lvl.name for lvl in arch.storage] + [arch.arithmetic.name]
    if user is not None and all(n in user.ert and n in user.art for n in names):
        return EnergyTables(ert={k: dict(v) for k, v in user.ert.items()}, art=dict(user.art),
                            source=user.source)
    base = arch_tables(arch)
    if user is None or not (user.ert or user.art):
        return base
    return base.merged(user)
