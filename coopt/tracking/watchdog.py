"""Run a command in a process group of its own and stop that whole group when the given parent goes.

``python -m coopt.tracking.watchdog PARENT_PID -- COMMAND...``

Why: ``mlflow server`` forks uvicorn and huey workers that outlive it when it
is killed; a SIGKILL of ``coopt ui`` reaches none of them.  This watchdog
runs the command in a process group of its own, asks Linux for SIGTERM when
its parent dies (``prctl(PR_SET_PDEATHSIG)``),
polls its parent as well (other systems, or a parent that died before the
``prctl``), and on any of these, on SIGTERM/SIGINT, or when the command exits,
signals the command's whole group: SIGTERM, then SIGKILL after a grace period.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE_S = 8.0


def parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` when the parent exits (Linux only; False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _kill_group(child: subprocess.Popen) -> None:
    """SIGTERM to the command's group, SIGKILL to whatever is left of it after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGTERM:
            try:
                child.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)                                  # forked workers finishing their own exit


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m coopt.tracking.watchdog PARENT_PID -- COMMAND...", file=sys.stderr)
        return 2
    parent = int(argv[0])
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:                               # the parent died before prctl took effect
        return 0
    child = subprocess.Popen(argv[2:], process_group=0)     # its forks join that group
    while not stopping and child.poll() is None and os.getppid() == parent:
        time.sleep(0.25)
    code = child.poll()
    _kill_group(child)
    return code or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
