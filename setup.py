"""Package discovery plus the two data-only packages that pyproject.toml maps to top-level folders.

``arch_base/`` and ``search_spaces/`` stay top-level folders that users see and
edit in a checkout; pyproject.toml maps them to ``coopt._shipped.<folder>``
with their YAML files as package data (see ``coopt/shipped.py``).  setuptools
cannot add packages to the discovered ones in pyproject.toml alone, hence this
file.
"""
import sys

# pip reads this file before it resolves any dependency: on an older Python, say what is needed here
# (otherwise pip stops later on a dependency that has no release for it, which names the wrong problem).
if sys.version_info < (3, 12):
    sys.exit(f"coopt needs Python >= 3.12 (this is Python {sys.version.split()[0]}): create the environment "
             "with python3.12 -m venv, e.g. python3.12 -m venv ~/coopt-venv")

from setuptools import find_packages, setup  # noqa: E402

setup(packages=find_packages(include=["coopt", "coopt.*"])
      + ["coopt._shipped.arch_base", "coopt._shipped.search_spaces"])
