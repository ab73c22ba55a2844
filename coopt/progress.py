"""Progress of long work on stderr: a live bar (rich) on a terminal, one line per finished item otherwise.

Why lines: with stderr sent to a file or a pipe (a batch job, ``nohup``, CI) a bar prints nothing,
and a search said nothing for ten minutes.  A line per finished trial (or layer) says what was done,
how long it has taken and about how long is left.
"""
from __future__ import annotations

import sys
import time

from coopt.numbers import fmt


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class _Eta:
    """Elapsed time and a remaining-time estimate from the items finished since the start."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.first: int | None = None        # items already done when counting began (a resumed study)

    def text(self, done: int, total: int) -> str:
        if self.first is None:
            self.first = done
        elapsed = time.monotonic() - self.t0
        new = done - self.first
        left = f", about {duration(elapsed / new * (total - done))} left" if new > 0 and done < total else ""
        return f"{duration(elapsed)} elapsed{left}"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class LayerProgress:
    def __init__(self, total: int, description: str, enabled: bool = True):
        self.total, self.description = total, description
        self.enabled = enabled and sys.stderr.isatty()
        self.lines = enabled and not self.enabled
        self._progress = None
        self._task = None
        self._done = 0
        self._eta = _Eta()

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            from rich.console import Console
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total)
        elif self.lines:
            self._eta.text(0, self.total)       # the header waits for the first layer: input refused before
        return self                             # any work stays the one line of its error

    def advance(self, item=None):
        self._done += 1
        if self._progress is not None:
            self._progress.advance(self._task)
        elif self.lines:
            if self._done == 1:
                _say(f"{self.description}: {self.total} layers")
            what = ""
            if item is not None:
                found = getattr(item, "found", False)
                energy = f"{item.eval.energy_pj / 1e6:,.4g} µJ" if found else "no valid mapping"
                what = f" {item.name}: {energy}, {item.seconds:.1f} s;"
            _say(f"layer {self._done}/{self.total}{what} {self._eta.text(self._done, self.total)}")

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False


class StudyBar:
    """Trials done, feasible, front size and hypervolume, live on stderr (a line per trial off a terminal)."""

    def __init__(self, total: int, description: str, enabled: bool = True, describe=None):
        """``describe(progress)``: the line for a finished trial, without the times (off a terminal)."""
        self.total, self.description = total, description
        self.enabled = enabled and sys.stderr.isatty()
        self.lines = enabled and not self.enabled
        self.describe = describe or (lambda p: f"trial {p.done}/{p.total}: front {p.front_size}")
        self._progress = None
        self._eta = _Eta()

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("feasible {task.fields[feasible]}  front {task.fields[front]}  "
                                                 "HV {task.fields[hv]}"), TimeElapsedColumn(),
                                      console=Console(stderr=True))
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, feasible=0, front=0, hv="-")
        return self

    def update(self, p):
        if self._progress is not None:
            self._progress.update(self._task, completed=p.done, total=p.total, feasible=p.feasible,
                                  front=p.front_size, hv=fmt(p.hypervolume))
        elif self.lines:
            if getattr(p, "last", None) is None:
                self._eta.text(p.done, p.total)              # the start (trials a resumed study already has)
            else:
                _say(f"{self.describe(p)}; {self._eta.text(p.done, p.total)}")

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False
