"""The run lease of a study kept in the study's Optuna storage itself, through Optuna's public storage API.

Why: a client of Optuna's gRPC storage proxy cannot reach the database behind
it, so the lease must be something the proxy can store: a companion study
named ``coopt-lease.<study>`` (user studies may not start with that prefix).
Creating a study is atomic in every Optuna storage (a second create raises
``DuplicatedStudyError``), so exactly one run creates the lease.  The holder
writes ``{holder, host, pid, since, beat}`` into its user attributes and
bumps ``beat`` every few seconds.  Clocks are never compared: a taker watches
the lease with its own monotonic clock and calls it stale only when ``beat``
has not moved for ``ttl`` seconds (or the holder is a dead process of this
host); ``since`` is the holder's clock, shown to people only.

Taking over a stale lease deletes that lease study *by its id* and creates a
new one.  Two takers that both judged it stale: both may delete (the second
delete finds nothing), then only one create succeeds; the other sees the
winner's lease, watches it, and is refused.  A taker deletes only after
re-reading the same id with the same holder and beat, and the new holder
re-reads its lease after claiming it.  Remaining window: a storage that reuses
a deleted study's id (SQLite behind the proxy gives the next study the
highest id plus one) lets a taker that stalls between its re-read and its
delete remove a lease created in that instant; that holder finds its lease
gone at its next renewal (``lost``) and stops before telling further
trials.  PostgreSQL and MySQL never reuse ids.
"""
from __future__ import annotations

import time
import uuid

from coopt.errors import CooptError
from coopt.study.lock import LEASE_TTL_S, Renewal, busy, holder_info, pid_dead_here
from coopt.study.storage import LEASE_PREFIX

LEASE_ATTR = "coopt.lease"
RENEW_S = 2.0          # a refused run waits for one renewal to see the holder alive: keep it short


class StorageLease:
    """A companion study as the lease; ``acquire`` refuses with one line naming a live holder."""

    def __init__(self, study: str, storage, ttl: float = LEASE_TTL_S, renew: float = RENEW_S,
                 poll: float = 0.25, where: str = "lease study in the storage"):
        self.study, self.storage, self.ttl, self.poll, self.where = study, storage, ttl, poll, where
        self.name = LEASE_PREFIX + study
        self.token = uuid.uuid4().hex
        self.study_id: int | None = None
        self.renewal = Renewal(self._beat, renew)
        self.lost = self.renewal.lost

    def read(self) -> tuple[int, dict | None] | None:
        """(id, holder info) of the lease study, or None when there is none."""
        try:
            sid = self.storage.get_study_id_from_name(self.name)
            return sid, self.storage.get_study_user_attrs(sid).get(LEASE_ATTR)
        except KeyError:
            return None

    def watch(self) -> tuple[int, dict | None] | None:
        """Watch the lease: raise StudyBusy once its holder shows it is alive, return it once it is stale,
        None when it went away (released)."""
        first = self.read()
        start = time.monotonic()
        while first is not None:
            info = first[1]
            if info is not None and pid_dead_here(info):
                return first
            if time.monotonic() - start > self.ttl:
                return first
            time.sleep(self.poll)
            now = self.read()
            if now != first:
                if now is not None and now[1] is not None:
                    raise busy(self.study, now[1], self.where)
                first, start = now, time.monotonic()     # gone, or a new lease not yet claimed
        return None

    def remove_stale(self, seen: tuple[int, dict | None]) -> None:
        """Delete the stale lease study ``seen`` by id, only if it is still exactly what was judged stale."""
        if self.read() != seen:
            return
        try:
            self.storage.delete_study(seen[0])
        except KeyError:                     # another taker deleted it first
            pass

    def acquire(self) -> None:
        from optuna.exceptions import DuplicatedStudyError
        from optuna.study import StudyDirection

        for _ in range(5):
            try:
                sid = self.storage.create_new_study([StudyDirection.MINIMIZE], self.name)
            except DuplicatedStudyError:
                seen = self.watch()
                if seen is not None:
                    self.remove_stale(seen)
                continue
            mine = {**holder_info(), "holder": self.token, "beat": 0}
            try:
                self.storage.set_study_user_attr(sid, "coopt.role", f"run lease of study {self.study}")
                self.storage.set_study_user_attr(sid, LEASE_ATTR, mine)
            except KeyError:                 # deleted by a taker that judged an older lease with this id
                continue
            if self.read() == (sid, mine):
                self.study_id = sid
                self.renewal.start()
                return
        raise CooptError(f"could not take the lease of study '{self.study}'", key="--study",
                         expected="fewer runs starting this study at the same moment")

    def _beat(self) -> bool:
        now = self.read()
        if now is None or now[0] != self.study_id or (now[1] or {}).get("holder") != self.token:
            return False
        self.storage.set_study_user_attr(self.study_id, LEASE_ATTR, {**now[1], "beat": now[1]["beat"] + 1})
        return True

    def release(self) -> None:
        self.renewal.stop()
        now = self.read()
        if self.study_id is not None and now is not None and now[0] == self.study_id \
                and (now[1] or {}).get("holder") == self.token:
            try:
                self.storage.delete_study(self.study_id)
            except KeyError:
                pass
