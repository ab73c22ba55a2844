"""coopt: hardware-mapping co-optimization for small DNN accelerators."""

__version__ = "0.1.0"
