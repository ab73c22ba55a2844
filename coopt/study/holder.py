"""Who holds a study's run, and the renewal thread every lease shares.

Why a module of its own: the file lock (``coopt.study.lock``) and the storage
leases (``db_lease``, ``storage_lease``) all describe a holder the same way
and renew the same way; keeping that here lets ``lock`` choose a lease
without the leases importing ``lock`` back (no import cycle).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime

from coopt.errors import CooptError

LEASE_TTL_S = 30.0
RENEW_S = 5.0


class StudyBusy(CooptError):
    """Another run holds the study."""


def holder_info() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def busy(study: str, info: dict, where: str) -> StudyBusy:
    try:
        since = datetime.fromtimestamp(float(info.get("since") or 0), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError):
        since = "an unknown time"
    return StudyBusy(f"study '{study}' is being run by pid {info.get('pid')} on {info.get('host')} since {since} "
                     f"({where})", key="--study", expected="one run per study: wait for it, or stop it")


def pid_dead_here(info: dict) -> bool:
    """True when the holder was a process of this host that no longer exists (its lease is free at once)."""
    if info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError, TypeError):
        return False
    return False


class Renewal:
    """A daemon thread calling ``beat()`` every ``every`` seconds until stopped; ``beat`` returns False
    when the lease turns out to be someone else's (``lost`` is then set)."""

    def __init__(self, beat, every: float):
        self.beat, self.every = beat, every
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coopt-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.beat():
                    self.lost.set()
                    return
            except Exception:        # a blip of the server: try again at the next beat
                continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
