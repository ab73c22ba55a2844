"""The run lease of a study kept in the study's Optuna storage itself, through Optuna's public storage API.

Why: a client of Optuna's gRPC storage proxy cannot reach the database behind
it, so the lease must be something the proxy can store: companion studies
named ``coopt-lease.<study>@<generation>`` (user studies may not start with
``coopt-lease.``).  Creating a study is atomic in every Optuna storage (a
second create of a name raises ``DuplicatedStudyError``), and that is the only
step that decides who holds the lease: the newest generation is the lease, and
taking it over means creating the next generation's study.  Of any number of
takers that judged generation ``n`` free, exactly one creates ``n + 1``; the
others see that study, watch it and are refused.

The holder writes ``{holder, host, pid, since, beat}`` into the study's user
attributes and bumps ``beat`` every few seconds; it checks at each beat that no
newer generation exists (else it has ``lost`` the lease and stops before
telling further trials).  Clocks are never compared: a taker watches the lease
with its own monotonic clock and calls it stale only when ``beat`` has not
moved for ``ttl`` seconds (or the holder is a dead process of this host);
``since`` is the holder's clock, shown to people only.  Ending a run marks its
generation ``released`` instead of deleting it, so a generation number is
never used twice; a new holder deletes the older generations (tidying only:
nothing depends on it).  Generations are found by name, never by study id,
so a storage that reuses deleted studies' ids cannot confuse them.
"""
from __future__ import annotations

import time
import uuid

from coopt.errors import CooptError
from coopt.study.holder import LEASE_TTL_S, Renewal, busy, holder_info, pid_dead_here
from coopt.study.storage import LEASE_PREFIX

LEASE_ATTR = "coopt.lease"
RENEW_S = 2.0          # a refused run waits for one renewal to see the holder alive: keep it short
GONE, FREE = "gone", "free"


class StorageLease:
    """Generations of a companion study as the lease; ``acquire`` refuses with one line naming a live holder."""

    def __init__(self, study: str, storage, ttl: float = LEASE_TTL_S, renew: float = RENEW_S,
                 poll: float = 0.25, where: str = "lease study in the storage"):
        self.study, self.storage, self.ttl, self.poll, self.where = study, storage, ttl, poll, where
        self.prefix = f"{LEASE_PREFIX}{study}@"
        self.token = uuid.uuid4().hex
        self.generation: int | None = None
        self.renewal = Renewal(self._beat, renew)
        self.lost = self.renewal.lost

    def name(self, generation: int) -> str:
        return f"{self.prefix}{generation}"

    def generations(self) -> list[int]:
        """The generation numbers of this study's lease studies now in the storage, oldest first."""
        tails = (s.study_name[len(self.prefix):] for s in self.storage.get_all_studies()
                 if s.study_name.startswith(self.prefix))
        return sorted(int(t) for t in tails if t.isdigit())

    def read(self, generation: int | None = None) -> tuple[int, dict | None] | None:
        """(study id, holder info) of a generation (default: the one held), or None when it does not exist."""
        try:
            sid = self.storage.get_study_id_from_name(self.name(self.generation if generation is None
                                                                else generation))
            return sid, self.storage.get_study_user_attrs(sid).get(LEASE_ATTR)
        except KeyError:
            return None

    def watch(self, generation: int) -> str:
        """Watch a generation: raise StudyBusy once its holder shows it is alive; FREE once it is released or
        stale; GONE when it was deleted (a newer generation exists)."""
        first, start = self.read(generation), time.monotonic()
        while first is not None:
            info = first[1]
            if info is not None and (info.get("released") or pid_dead_here(info)):
                return FREE
            if time.monotonic() - start > self.ttl:
                return FREE
            time.sleep(self.poll)
            now = self.read(generation)
            if now != first:
                if now is not None and now[1] is not None and not now[1].get("released"):
                    raise busy(self.study, now[1], self.where)
                first, start = now, time.monotonic()     # released, gone, or claimed only now
        return GONE

    def acquire(self) -> None:
        from optuna.exceptions import DuplicatedStudyError
        from optuna.study import StudyDirection

        deadline = time.monotonic() + 4 * self.ttl + 30.0
        while time.monotonic() < deadline:
            held = self.generations()
            if held and self.watch(held[-1]) == GONE:
                continue
            mine = held[-1] + 1 if held else 0
            try:
                sid = self.storage.create_new_study([StudyDirection.MINIMIZE], self.name(mine))
            except DuplicatedStudyError:     # another taker created it first: watch that one
                continue
            info = {**holder_info(), "holder": self.token, "beat": 0}
            try:
                self.storage.set_study_user_attr(sid, "coopt.role", f"run lease of study {self.study}")
                self.storage.set_study_user_attr(sid, LEASE_ATTR, info)
            except KeyError:                 # a newer generation's holder already tidied it away
                continue
            self.generation = mine
            self._tidy(held)
            self.renewal.start()
            return
        raise CooptError(f"could not take the lease of study '{self.study}'", key="--study",
                         expected="fewer runs starting this study at the same moment")

    def _tidy(self, older: list[int]) -> None:
        """Delete older generations (only the holder of a newer one does this)."""
        for generation in older:
            seen = self.read(generation)
            if seen is not None:
                try:
                    self.storage.delete_study(seen[0])
                except KeyError:
                    pass

    def _mine(self) -> tuple[int, dict] | None:
        """(study id, info) of the held generation while it is still the lease, else None."""
        if self.generation is None or self.read(self.generation + 1) is not None:
            return None
        now = self.read()
        return now if now is not None and (now[1] or {}).get("holder") == self.token else None

    def _beat(self) -> bool:
        held = self._mine()
        if held is None:
            return False
        sid, info = held
        self.storage.set_study_user_attr(sid, LEASE_ATTR, {**info, "beat": info["beat"] + 1})
        return True

    def release(self) -> None:
        self.renewal.stop()
        held = self._mine()
        if held is not None:
            sid, info = held
            self.storage.set_study_user_attr(sid, LEASE_ATTR, {**info, "released": True})
