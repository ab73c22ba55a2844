"""A progress bar on stderr for long work (rich), silent when disabled or not a terminal."""
from __future__ import annotations

import sys


class LayerProgress:
    def __init__(self, total: int, description: str, enabled: bool = True):
        self.total, self.description = total, description
        self.enabled = enabled and sys.stderr.isatty()
        self._progress = None
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            from rich.console import Console
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def advance(self, item=None):
        if self._progress is not None:
            self._progress.advance(self._task)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False


class StudyBar:
    """Trials done, feasible, front size and hypervolume, live on stderr."""

    def __init__(self, total: int, description: str, enabled: bool = True):
        self.total, self.description = total, description
        self.enabled = enabled and sys.stderr.isatty()
        self._progress = None

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
                                  front=p.front_size, hv=f"{p.hypervolume:.4g}")

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False
