"""When the compiled kernels run: numba's first use in a process costs about half a second
(importing it and loading the cached machine code), which pays back only after some
10,000 mapping evaluations.  So a process starts on the numpy/Python reference paths (the
same numbers: the tests hold the two equal) and switches to the compiled ones once the
work it has asked for reaches ``MIN_WORK`` evaluations: a whole-network mapping or a
study's worker at once, a one-layer ``coopt map`` with a small budget never.

``COOPT_JIT=1`` forces the compiled kernels from the start, ``COOPT_JIT=0`` never uses them.

The machine code is cached on disk (``cache=True``) so that later processes load it instead of
compiling (tens of seconds): next to the sources, numba's default, or where the package folder
is not writable (a read-only install) in ``~/.cache/coopt/numba`` (``cache_dir``).
``NUMBA_CACHE_DIR`` in the environment overrides both.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

AVAILABLE = importlib.util.find_spec("numba") is not None
MIN_WORK = 10_000
# Single-mapping evaluations (a search's final, detailed one) load further kernels; worth it only in a
# process that has many more to do: a study worker from about its third design on.
MIN_WORK_SINGLE = 100_000

_state = {"on": False, "asked": 0}


def check_env() -> str:
    """``COOPT_JIT`` as given: "", "0" or "1"; anything else is refused (a typo must not silently pick a path)."""
    mode = os.environ.get("COOPT_JIT", "").strip()
    if mode not in ("", "0", "1"):
        from coopt.errors import CooptError
        raise CooptError(f"COOPT_JIT={mode[:40]!r}", key="COOPT_JIT", expected="0, 1 or unset")
    return mode


def enabled() -> bool:
    """Are the compiled kernels in use in this process?"""
    mode = check_env()
    if mode == "0" or not AVAILABLE:
        return False
    return _state["on"] or mode == "1"


def request(work: int) -> bool:
    """Tell the policy that ``work`` more evaluations are coming; returns whether they run compiled."""
    _state["asked"] += max(0, int(work))
    if _state["asked"] >= MIN_WORK:
        _state["on"] = True
    return enabled()


def single_evaluations_compiled() -> bool:
    """Should one-mapping evaluations run compiled too (see ``MIN_WORK_SINGLE``)?"""
    return enabled() and _state["asked"] >= MIN_WORK_SINGLE


def cache_dir() -> str | None:
    """The folder for numba's cache when it cannot live next to the sources, else None."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None                               # the user's choice; numba reads it itself
    package = Path(__file__).resolve().parent.parent
    if all(_writable(package / sub) for sub in ("model", "mapper")):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return str(base / "coopt" / "numba")


def _writable(folder: Path) -> bool:
    pycache = folder / "__pycache__"
    return os.access(pycache if pycache.is_dir() else folder, os.W_OK)


def enable() -> None:
    """Use the compiled kernels from now on (tests, long-lived workers)."""
    _state["on"] = True
