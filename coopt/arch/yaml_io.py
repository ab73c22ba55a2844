"""Architecture YAML <-> :class:`Architecture`: the public face of the reader and the writer.

Split by job: :mod:`coopt.arch.attrs` (Timeloop's attribute and naming
rules), :mod:`coopt.arch.reader` (the tree and ``nodes:`` forms in),
:mod:`coopt.arch.writer` (the v0.3 tree form out, read back and compared).
"""
from __future__ import annotations

from coopt.arch.attrs import BUFFER_CLASSES, COMPUTE_CLASSES, is_buffer_class, is_compute_class, split_path
from coopt.arch.reader import arch_from_yaml
from coopt.arch.writer import arch_to_yaml

__all__ = ["arch_from_yaml", "arch_to_yaml", "BUFFER_CLASSES", "COMPUTE_CLASSES",
           "is_buffer_class", "is_compute_class", "split_path"]
