"""Engines: one interface (``Backend``), a registry by name, and whole-network mapping on one engine."""
from coopt.backends.base import (ENGINES, Backend, EngineInfo, MapperOptions, engine_help, engine_names,
                                 get_backend, register_engine)

__all__ = ["Backend", "EngineInfo", "ENGINES", "MapperOptions", "register_engine", "engine_names", "engine_help",
           "get_backend"]
