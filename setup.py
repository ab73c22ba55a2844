"""Package discovery plus the two data-only packages that pyproject.toml maps to top-level folders.

``arch_base/`` and ``search_spaces/`` stay top-level folders that users see and
edit in a checkout; pyproject.toml maps them to ``coopt._shipped.<folder>``
with their YAML files as package data (see ``coopt/shipped.py``).  setuptools
cannot add packages to the discovered ones in pyproject.toml alone, hence this
file.
"""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["coopt", "coopt.*"])
      + ["coopt._shipped.arch_base", "coopt._shipped.search_spaces"])
