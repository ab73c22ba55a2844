"""coopt: hardware-mapping co-optimization for small DNN accelerators.

Packages, from the bottom up (each imports only from those before it):
``workload``, ``arch``, ``energy`` -> ``model`` -> ``mapper`` -> ``backends``
(engines) -> ``study`` -> ``tracking`` / ``export`` -> ``cli``.  See
docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
