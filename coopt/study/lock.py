"""One run per study: a file lock on the study folder, plus a lease in the storage other machines share.

Why both: the file lock (``flock``) excludes runs on this machine and dies
with its process, so a killed holder never blocks anyone; runs on other
machines share only the storage, so there the run also holds a lease that it
renews every few seconds: a row in the database for RDB storage
(``coopt.study.db_lease``, judged by the database's clock), a companion study
for a gRPC storage proxy (``coopt.study.storage_lease``, judged by a renewal
counter seen to stop).  A refused run gets one line naming the holder: host,
pid and since when.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
from pathlib import Path

from coopt.study.holder import StudyBusy, busy, holder_info

__all__ = ["StudyBusy", "FileLock", "StudyLock", "storage_lease", "store_init_lock"]


class FileLock:
    """``flock`` on ``<study dir>/run.lock``; the file also says who holds it."""

    lost = threading.Event()          # never set: the kernel holds a file lock for as long as the process lives

    def __init__(self, study: str, sdir: Path):
        self.study, self.path, self.fd = study, Path(sdir) / "run.lock", None

    def acquire(self) -> None:
        from coopt.errors import CooptError
        from coopt.outputs import os_reason

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:       # a folder, a link or a device where the lock file belongs
            why = "is not a plain file" if e.errno in (errno.EISDIR, errno.ELOOP, errno.ENOTDIR, errno.EEXIST) \
                else os_reason(e)
            raise CooptError(why, file=str(self.path), key="run.lock",
                             expected="the study's lock file (coopt creates it; remove what is there)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:
                info = {}
            os.close(fd)
            raise busy(self.study, info, f"lock {self.path}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_info()).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def storage_lease(study: str, storage: str | None):
    """The lease the storage needs besides the file lock: a database row, a companion study, or none."""
    from coopt.study.storage import grpc_address, rdb_url

    url = rdb_url(storage)
    if url is not None:
        from coopt.study.db_lease import DatabaseLease
        return DatabaseLease(study, url, label=storage)
    if grpc_address(storage) is not None:
        from coopt.study.storage import open_storage
        from coopt.study.storage_lease import StorageLease
        return StorageLease(study, open_storage(storage, Path(".")), where=f"lease study in {storage}")
    return None


class StudyLock:
    """The file lock, plus the storage's lease when other machines share the storage."""

    def __init__(self, study: str, sdir: Path, storage: str | None = None):
        lease = storage_lease(study, storage)
        self.parts = [FileLock(study, sdir)] + ([lease] if lease is not None else [])

    @property
    def lost(self) -> bool:
        return any(p.lost.is_set() for p in self.parts)

    def __enter__(self) -> StudyLock:
        taken = []
        try:
            for p in self.parts:
                p.acquire()
                taken.append(p)
        except BaseException:
            for p in reversed(taken):
                p.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for p in reversed(self.parts):
            try:
                p.release()
            except Exception:
                pass


def store_init_lock(path: Path):
    """An exclusive ``flock`` around first use of a local MLflow sqlite store (its migrations are not
    safe when two processes create the schema at once)."""
    import contextlib

    @contextlib.contextmanager
    def held():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
    return held()
