"""Where the shipped templates (``arch_base/``) and search spaces (``search_spaces/``) live.

Why: users see and edit the top-level folders of the checkout; a built wheel
carries the same files inside the package as ``coopt/_shipped/<folder>/``
(``setup.py`` maps them there).  Both places are known, so nothing is found by
walking the file system: an installed package reads its own copy, a checkout
(editable install or ``PYTHONPATH``) reads the top-level folders.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["FOLDERS", "shipped_dir", "shipped_names", "shipped_file"]

FOLDERS = ("arch_base", "search_spaces")
_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(folder: str) -> Path:
    """The folder of shipped YAML files: the wheel's copy, else the checkout's top-level folder."""
    if folder not in FOLDERS:
        raise ValueError(f"unknown shipped folder {folder!r}")
    installed = _PACKAGE / "_shipped" / folder
    return installed if installed.is_dir() else _PACKAGE.parent / folder


def shipped_names(folder: str) -> list[str]:
    """Names (file stems) of the shipped YAML files in ``folder``."""
    d = shipped_dir(folder)
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def shipped_file(folder: str, name: str) -> Path | None:
    """``<folder>/<name>.yaml`` if it is shipped, else None."""
    p = shipped_dir(folder) / f"{name}.yaml"
    return p if p.is_file() else None
