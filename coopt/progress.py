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
