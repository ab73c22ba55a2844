"""The lease row of a study in its RDB storage, timed by the database's own clock.

Why the database's clock: runs on different machines compare heartbeats, and
hosts' clocks need not agree; every timestamp here (``since``, ``heartbeat``
and "now" when judging staleness) is computed by the database server in the
statement itself, so only one clock is ever read.  ``beat`` counts renewals:
a takeover is a compare-and-swap on ``(holder, beat)``, so of two runs that
find the same stale row only one update matches, whatever the timestamp
resolution.  The table is ``coopt_run_lease``; Optuna's tables are not
touched.
"""
from __future__ import annotations

import uuid

from coopt.errors import CooptError
from coopt.study.holder import LEASE_TTL_S, RENEW_S, Renewal, busy, holder_info, pid_dead_here

LEASE_TABLE = "coopt_run_lease"


def db_clock(dialect: str):
    """SQL for the server's current time in epoch seconds (float), per dialect."""
    import sqlalchemy as sa

    if dialect == "postgresql":
        return sa.type_coerce(sa.extract("epoch", sa.func.clock_timestamp()), sa.Double)
    if dialect in ("mysql", "mariadb"):      # UNIX_TIMESTAMP is UTC whatever the session's time zone
        return sa.func.unix_timestamp(sa.func.now(6), type_=sa.Double)
    if dialect == "sqlite":                  # one file on one host: its clock is the only one anyway
        return sa.type_coerce((sa.func.julianday("now") - 2440587.5) * 86400.0, sa.Double)
    raise CooptError(f"the run lease has no clock for database dialect {dialect!r}", key="--storage",
                     expected="postgresql://, mysql:// or sqlite:/// storage")


class DatabaseLease:
    """A row ``(study, holder, host, pid, since, heartbeat, beat)`` renewed by a thread every ``renew`` s;
    a row whose heartbeat is older than ``ttl`` by the database's clock is taken over."""

    def __init__(self, study: str, url: str, ttl: float = LEASE_TTL_S, renew: float = RENEW_S,
                 label: str | None = None):
        import sqlalchemy as sa

        self.study, self.ttl, self.label = study, ttl, label
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.meta = sa.MetaData()
        self.table = sa.Table(LEASE_TABLE, self.meta,
                              sa.Column("study", sa.String(255), primary_key=True),
                              sa.Column("holder", sa.String(64), nullable=False),
                              sa.Column("host", sa.String(255), nullable=False),
                              sa.Column("pid", sa.Integer, nullable=False),
                              sa.Column("since", sa.Double, nullable=False),
                              sa.Column("heartbeat", sa.Double, nullable=False),
                              sa.Column("beat", sa.Integer, nullable=False))
        self.now = db_clock(self.engine.dialect.name)
        self.token = uuid.uuid4().hex
        self.renewal = Renewal(self._beat, renew)
        self.lost = self.renewal.lost

    def _mine(self) -> dict:
        info = holder_info()
        return {"holder": self.token, "host": info["host"], "pid": info["pid"], "since": self.now,
                "heartbeat": self.now, "beat": 0}

    def _create_table(self) -> None:
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

    def observe(self) -> dict | None:
        """The study's lease row with ``age`` (seconds since its heartbeat, by the database's clock)."""
        import sqlalchemy as sa

        t = self.table
        with self.engine.begin() as c:
            row = c.execute(sa.select(t, (self.now - t.c.heartbeat).label("age"))
                            .where(t.c.study == self.study)).mappings().first()
        return dict(row) if row is not None else None

    def stale(self, row: dict) -> bool:
        return float(row["age"]) > self.ttl or pid_dead_here(row)

    def take_over(self, row: dict) -> bool:
        """Compare-and-swap: replace ``row`` by this run's lease only if nobody renewed or took it since."""
        t = self.table
        with self.engine.begin() as c:
            return c.execute(t.update().where((t.c.study == self.study) & (t.c.holder == row["holder"])
                                              & (t.c.beat == row["beat"])).values(**self._mine())).rowcount == 1

    def acquire(self) -> None:
        import sqlalchemy as sa

        self._create_table()
        for _ in range(5):
            try:
                with self.engine.begin() as c:
                    c.execute(self.table.insert().values(study=self.study, **self._mine()))
                break
            except sa.exc.IntegrityError:
                pass
            row = self.observe()
            if row is None:
                continue                             # released in between: try the insert again
            if not self.stale(row):
                raise busy(self.study, row, "lease in the storage database")
            if self.take_over(row):
                break
        else:
            raise CooptError(f"could not take the lease of study '{self.study}'", key="--study",
                             expected="fewer runs starting this study at the same moment")
        self.renewal.start()

    def _beat(self) -> bool:
        t = self.table
        with self.engine.begin() as c:
            return c.execute(t.update().where((t.c.study == self.study) & (t.c.holder == self.token))
                             .values(heartbeat=self.now, beat=t.c.beat + 1)).rowcount == 1

    def release(self) -> None:
        self.renewal.stop()
        try:
            with self.engine.begin() as c:
                c.execute(self.table.delete().where((self.table.c.study == self.study)
                                                    & (self.table.c.holder == self.token)))
        finally:
            self.engine.dispose()


