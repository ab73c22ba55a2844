"""Which estimator builds the energy tables: Accelergy's method (default) or coopt's built-in tables.

Why an environment variable: the choice must reach every process that builds
tables -- the CLI, the mapper's worker processes and a study's Ray workers --
and they all inherit the environment.  ``--energy`` on the CLI sets it.
"""
from __future__ import annotations

import os

from coopt.arch.spec import Architecture
from coopt.energy.notice import warn_once
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


def arch_tables(arch: Architecture, component_files=(), only=None, using: str | None = None,
                arch_file: str | None = None) -> EnergyTables:
    """ERT/ART of ``arch`` (of the components named in ``only``, if given) by ``using`` or the current method;
    errors the user's components cause are reported against ``arch_file``."""
    if (using or method()) == "builtin":
        from coopt.energy.estimate import estimate
        try:
            return estimate(arch)
        except SpecError as e:
            raise e.at(file=arch_file) if e.file is None and arch_file else e from None
    from coopt.energy.accelergy import tables
    return tables(arch, component_files, only=only, arch_file=arch_file)


def with_overrides(arch: Architecture, user: EnergyTables | None, component_files=(),
                   arch_file: str | None = None) -> EnergyTables:
    """The user's ERT/ART entries over estimates; nothing is estimated when the user's files cover all.

    ``component_files``: the user's compound classes (files, dicts or (dict, file)), which replace the
    shipped classes of the same name as in ``coopt energy``.
    """
    names = [lvl.name for lvl in arch.storage] + [arch.arithmetic.name]
    if component_files and method() == "builtin":
        warn_once("--energy builtin uses coopt's own tables; the component classes in the input files are "
                  "not used")
    if user is None or not (user.ert or user.art):
        return arch_tables(arch, component_files, arch_file=arch_file)
    missing = {n for n in names if n not in user.ert or n not in user.art}
    base = arch_tables(arch, component_files, only=missing, arch_file=arch_file) if missing \
        else EnergyTables(source=method())
    return base.merged(user)
