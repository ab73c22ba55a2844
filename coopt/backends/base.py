"""The engine interface and its registry: map a layer on a design, return a LayerResult.

The rest of coopt never knows which engine ran.  Engines are registered by
name with the dotted path of their class, imported only when asked for, so
that an optional engine (AccelForge) costs nothing until it is used.  To add
an engine: subclass :class:`Backend` in a module of this package and add one
:func:`register_engine` line below (or call it from a plug-in).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coopt.errors import CooptError
from coopt.mapper.options import MapperOptions

if TYPE_CHECKING:                       # the registry stays cheap to import (the CLI's --help reads it)
    from coopt.arch.spec import Architecture
    from coopt.energy.tables import EnergyTables
    from coopt.mapper.constraints import MapConstraints
    from coopt.results import LayerResult
    from coopt.workload.networks import NetworkLayer

__all__ = ["Backend", "MapperOptions", "EngineInfo", "ENGINES", "register_engine", "engine_names",
           "engine_help", "get_backend"]


class Backend:
    """An engine: ``map_layer`` (its mapper) and, where it has one, ``evaluate`` (its model)."""

    name = "abstract"

    def map_layer(self, layer: NetworkLayer, arch: Architecture, tables: EnergyTables,
                  constraints: MapConstraints, options: MapperOptions) -> LayerResult:
        raise NotImplementedError

    def evaluate(self, problem, arch: Architecture, tables: EnergyTables, mapping):
        """One fixed mapping through the engine's model (a MappingEval); not every engine has one."""
        raise CooptError(f"the {self.name} engine cannot evaluate a fixed mapping", key="--engine",
                         expected="an engine with a model, e.g. native or timeloop")


@dataclass(frozen=True)
class EngineInfo:
    name: str
    target: str            # "package.module:Class"
    help: str
    takes_bin: bool = False  # the constructor takes bin_dir (a folder with the engine's executables)


ENGINES: dict[str, EngineInfo] = {}


def register_engine(name: str, target: str, help: str, *, takes_bin: bool = False) -> None:
    """Make engine ``name`` available to every command (``--engine name``)."""
    ENGINES[name] = EngineInfo(name, target, help, takes_bin)


register_engine("native", "coopt.backends.native:NativeBackend",
                "coopt's Timeloop-exact model and mapper (default)")
register_engine("timeloop", "coopt.backends.timeloop:TimeloopBackend",
                "the real timeloop-model / timeloop-mapper binaries", takes_bin=True)
register_engine("accelforge", "coopt.backends.accelforge_backend:AccelForgeBackend",
                "AccelForge (optional extra: pip install 'coopt[accelforge]')")


def engine_names() -> list[str]:
    return list(ENGINES)


def engine_help(names=None) -> str:
    return "; ".join(f"{n}: {ENGINES[n].help}" for n in (names or ENGINES))


def get_backend(name: str, *, timeloop_bin: str | None = None) -> Backend:
    """An instance of the engine registered as ``name``."""
    info = ENGINES.get(name)
    if info is None:
        raise CooptError(f"unknown engine {name!r}", key="--engine", expected=f"one of {engine_names()}")
    module, _, cls = info.target.partition(":")
    factory = getattr(importlib.import_module(module), cls)
    return factory(bin_dir=timeloop_bin) if info.takes_bin else factory()
