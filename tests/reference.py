"""Where the real-Timeloop reference runs live, and how to read what they printed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# A verbatim copy of ../shared/reference lives in tests/reference_data so that CI on a
# clean clone runs the fidelity tests; COOPT_REFERENCE points elsewhere if wanted.
REFERENCE = Path(os.environ.get("COOPT_REFERENCE", Path(__file__).resolve().parent / "reference_data"))


def cases(kind: str) -> list[Path]:
    """Reference case folders of one kind ('model' or 'mapper'); empty when absent."""
    root = REFERENCE / kind
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def need_reference():
    if not REFERENCE.is_dir():
        pytest.skip(f"reference runs not found at {REFERENCE} (set COOPT_REFERENCE)")


def stats_file(case: Path) -> Path:
    for name in ("timeloop-model.stats.txt", "timeloop-mapper.stats.txt"):
        if (case / name).exists():
            return case / name
    raise FileNotFoundError(case)
