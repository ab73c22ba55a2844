"""One run per study: a file lock on the study folder, and a lease row for database storage.

Why both: the file lock (``flock``) excludes runs on this machine and dies
with its process, so a killed holder never blocks anyone; runs on other
machines share only the database, so there the run holds a lease row that it
renews every few seconds.  A lease whose holder stopped renewing (``ttl``), or
whose holder is a dead process on this very host, is taken over with a
compare-and-swap update, so two runs can never both win it.  A refused run
gets one line naming the holder: host, pid and since when.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from coopt.errors import CooptError

LEASE_TABLE = "coopt_study_lease"
LEASE_TTL_S = 30.0
RENEW_S = 5.0


class StudyBusy(CooptError):
    """Another run holds the study."""


def holder_info() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _busy(study: str, info: dict, where: str) -> StudyBusy:
    since = datetime.fromtimestamp(float(info.get("since", 0)), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return StudyBusy(f"study '{study}' is being run by pid {info.get('pid')} on {info.get('host')} since {since} "
                     f"({where})", key="--study", expected="one run per study: wait for it, or stop it")


def _pid_dead_here(info: dict) -> bool:
    if info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


class FileLock:
    """``flock`` on ``<study dir>/run.lock``; the file also says who holds it."""

    def __init__(self, study: str, sdir: Path):
        self.study, self.path, self.fd = study, Path(sdir) / "run.lock", None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:
                info = {}
            os.close(fd)
            raise _busy(self.study, info, f"lock {self.path}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_info()).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class DatabaseLease:
    """A row ``(study, holder, host, pid, since, heartbeat)`` in the study's database, renewed by a thread."""

    def __init__(self, study: str, url: str, ttl: float = LEASE_TTL_S, renew: float = RENEW_S,
                 label: str | None = None):
        import sqlalchemy as sa

        self.study, self.ttl, self.renew_s, self.label = study, ttl, renew, label
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        meta = sa.MetaData()
        self.table = sa.Table(LEASE_TABLE, meta,
                              sa.Column("study", sa.String(255), primary_key=True),
                              sa.Column("holder", sa.String(64), nullable=False),
                              sa.Column("host", sa.String(255), nullable=False),
                              sa.Column("pid", sa.Integer, nullable=False),
                              sa.Column("since", sa.Float, nullable=False),
                              sa.Column("heartbeat", sa.Float, nullable=False))
        self.meta = meta
        self.token = uuid.uuid4().hex
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        import sqlalchemy as sa

        try:
            try:
                self.meta.create_all(self.engine, checkfirst=True)
            except sa.exc.IntegrityError:       # another run created it at the same moment
                self.meta.create_all(self.engine, checkfirst=True)
        except sa.exc.SQLAlchemyError as e:     # unreachable server, bad credentials, no such database
            from coopt.study.storage import StorageError, describe
            first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
            raise StorageError(f"cannot open storage {describe(self.label or self.engine.url.render_as_string())}: "
                               f"{first[:300]}", key="--storage",
                               expected="a reachable database the user may write to") from None
        me = {**holder_info(), "holder": self.token, "study": self.study}
        me["heartbeat"] = me["since"]
        t = self.table
        for _ in range(3):
            try:
                with self.engine.begin() as c:
                    c.execute(t.insert().values(**me))
                break
            except sa.exc.IntegrityError:
                pass
            with self.engine.begin() as c:
                row = c.execute(sa.select(t).where(t.c.study == self.study)).mappings().first()
            if row is None:
                continue                             # released in between: try the insert again
            stale = time.time() - row["heartbeat"] > self.ttl or _pid_dead_here(dict(row))
            if not stale:
                raise _busy(self.study, dict(row), "lease in the storage database")
            with self.engine.begin() as c:           # compare-and-swap: only one taker wins
                won = c.execute(t.update().where((t.c.study == self.study) & (t.c.holder == row["holder"])
                                                 & (t.c.heartbeat == row["heartbeat"])).values(**me)).rowcount
            if won == 1:
                break
        else:
            raise CooptError(f"could not take the lease of study '{self.study}'", key="--study")
        self._thread = threading.Thread(target=self._renew, name="coopt-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        import sqlalchemy as sa

        t = self.table
        while not self._stop.wait(self.renew_s):
            try:
                with self.engine.begin() as c:
                    n = c.execute(t.update().where((t.c.study == self.study) & (t.c.holder == self.token))
                                  .values(heartbeat=time.time())).rowcount
                if n != 1:
                    self.lost.set()
                    return
            except sa.exc.SQLAlchemyError:
                continue                              # a blip: try again at the next beat

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with self.engine.begin() as c:
                c.execute(self.table.delete().where((self.table.c.study == self.study)
                                                    & (self.table.c.holder == self.token)))
        finally:
            self.engine.dispose()


class StudyLock:
    """The file lock, plus the database lease when the storage is a database."""

    def __init__(self, study: str, sdir: Path, rdb_url: str | None = None, label: str | None = None):
        self.parts = [FileLock(study, sdir)] + ([DatabaseLease(study, rdb_url, label=label)] if rdb_url else [])

    @property
    def lost(self) -> bool:
        return any(p.lost.is_set() for p in self.parts if isinstance(p, DatabaseLease))

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
