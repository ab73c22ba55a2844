"""One interface, several engines: map a layer on a design and return a LayerResult.

The rest of coopt never knows which engine ran.  ``native`` is coopt's own
model and mapper (the default); ``timeloop`` drives the real binaries.
"""
from __future__ import annotations

from dataclasses import dataclass

from coopt.arch.spec import Architecture
from coopt.energy.tables import EnergyTables
from coopt.mapper.constraints import MapConstraints
from coopt.results import LayerResult
from coopt.workload.networks import NetworkLayer


@dataclass(frozen=True)
class MapperOptions:
    """How hard and by what to search: metric, evaluation budget, seed, strategy."""

    metric: tuple = ("edp",)
    budget: int = 6000
    seed: int = 0
    strategy: str = "hybrid"

    def key(self) -> tuple:
        return (tuple(self.metric), self.budget, self.seed, self.strategy)


class Backend:
    name = "abstract"

    def map_layer(self, layer: NetworkLayer, arch: Architecture, tables: EnergyTables,
                  constraints: MapConstraints, options: MapperOptions) -> LayerResult:
        raise NotImplementedError


ENGINES = ("native", "timeloop", "accelforge")


def get_backend(name: str, *, timeloop_bin: str | None = None) -> Backend:
    from coopt.errors import CooptError

    if name == "native":
        from coopt.backends.native import NativeBackend
        return NativeBackend()
    if name == "timeloop":
        from coopt.backends.timeloop import TimeloopBackend
        return TimeloopBackend(bin_dir=timeloop_bin)
    if name == "accelforge":
        from coopt.backends.accelforge_backend import AccelForgeBackend
        return AccelForgeBackend()
    raise CooptError(f"unknown engine {name!r}", key="--engine", expected=f"one of {list(ENGINES)}")
