"""Packaging beyond pyproject.toml: ship the top-level ``arch_base/`` and ``search_spaces/``.

They stay top-level folders that users see and edit in a checkout; the wheel
carries them as package data of ``coopt._shipped.<folder>`` (see
``coopt/shipped.py``).  setuptools cannot combine package discovery with such
a folder mapping in pyproject.toml alone, hence this file.
"""
from setuptools import find_packages, setup

SHIPPED = ("arch_base", "search_spaces")

setup(
    packages=find_packages(include=["coopt", "coopt.*"]) + [f"coopt._shipped.{f}" for f in SHIPPED],
    package_dir={f"coopt._shipped.{f}": f for f in SHIPPED},
    package_data={"coopt": ["export/data/*.yaml"], **{f"coopt._shipped.{f}": ["*.yaml"] for f in SHIPPED}},
)
