"""One-line warnings on stderr, each said once per process.

Why: an input coopt reads as Timeloop does but that a user may not mean (a table
given twice, a name that matches nothing) must not pass silently, yet a network
maps every layer through the same inputs and must not repeat the line.
"""
from __future__ import annotations

import sys

_said: set[str] = set()


def warn_once(text: str) -> None:
    if text not in _said:
        _said.add(text)
        print(f"coopt: warning: {text}", file=sys.stderr)
