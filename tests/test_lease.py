"""Run leases other machines can see: a row timed by the database's clock (PostgreSQL, MariaDB), and a
companion study through Optuna's gRPC storage proxy.  Holders are real processes: stopped with SIGSTOP
(alive, heartbeat frozen) or killed with SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coopt.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "search_spaces" / "tiny.yaml")

HOLDER = """
import sys, time
from pathlib import Path
kind, study, url = sys.argv[1:4]
if kind == "db":
    from coopt.study.db_lease import DatabaseLease
    from coopt.study.storage import normalize_url
    lease = DatabaseLease(study, normalize_url(url), renew=0.2)
else:
    from coopt.study.storage import open_storage
    from coopt.study.storage_lease import StorageLease
    lease = StorageLease(study, open_storage(url, Path(".")), renew=0.2)
lease.acquire()
print("held", flush=True)
while not lease.lost.wait(0.05):
    pass
print("lost", flush=True)
time.sleep(60)
"""


def _holder(kind, study, url):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, kind, study, url], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


def _end(p):
    p.send_signal(signal.SIGCONT)
    p.kill()
    p.wait()


def _db_lease(url, study, **kw):
    from coopt.study.db_lease import DatabaseLease
    from coopt.study.storage import normalize_url
    return DatabaseLease(study, normalize_url(url), **{"renew": 0.2, **kw})


def _grpc_lease(url, study, **kw):
    from coopt.study.storage import open_storage
    from coopt.study.storage_lease import StorageLease
    return StorageLease(study, open_storage(url, Path(".")), poll=0.1, renew=0.2, **kw)


@pytest.fixture(params=["postgresql", "mariadb"])
def db_url(request):
    return request.getfixturevalue("pg_db" if request.param == "postgresql" else "mariadb_db")


def _skew_clock(monkeypatch, seconds):
    """This process's wall clock off by ``seconds`` (the holder's is not): the lease must not care."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


def _try_for(lease, seconds):
    """Try to take ``lease`` again and again for ``seconds``; the time it was taken, or None."""
    from coopt.study.lock import StudyBusy
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            lease.acquire()
            return time.monotonic()
        except StudyBusy:
            time.sleep(0.1)
    return None


def _race(leases):
    """All of ``leases`` try to take the lease at the same moment, each in a thread; the winners."""
    from coopt.study.lock import StudyBusy
    won, gate = [], threading.Barrier(len(leases))

    def take(lease):
        gate.wait()
        try:
            lease.acquire()
            won.append(lease)
        except StudyBusy:
            pass
    threads = [threading.Thread(target=take, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


# -- the database lease ------------------------------------------------------------------------
@pytest.mark.db
def test_db_lease_live_holder_is_never_taken_even_by_a_clock_an_hour_ahead(db_url, monkeypatch):
    holder = _holder("db", "live", db_url)
    try:
        _skew_clock(monkeypatch, 3600.0)
        taker = _db_lease(db_url, "live", ttl=1.0)
        assert _try_for(taker, 3.0) is None                        # 3 TTLs of refusals
        with pytest.raises(Exception, match=f"pid {holder.pid} on {socket.gethostname()} since"):
            taker.acquire()
    finally:
        _end(holder)


@pytest.mark.db
def test_db_lease_stalled_holder_is_taken_over_after_ttl(db_url, monkeypatch):
    holder = _holder("db", "stalled", db_url)
    try:
        _skew_clock(monkeypatch, -3600.0)                        # a clock an hour behind still sees it stale
        taker = _db_lease(db_url, "stalled", ttl=1.5)
        holder.send_signal(signal.SIGSTOP)                       # alive (pid exists) but no heartbeat
        stopped = time.monotonic()
        taken = _try_for(taker, 15.0)
        assert taken is not None and taken - stopped >= 1.5 - 0.2 - 0.1   # not before the TTL (less one beat)
        assert taker.observe()["holder"] == taker.token
        holder.send_signal(signal.SIGCONT)                       # the old holder finds out at its next beat
        assert holder.stdout.readline().strip() == "lost"
        taker.release()
    finally:
        _end(holder)


@pytest.mark.db
def test_db_lease_takeover_is_a_compare_and_swap(db_url):
    from coopt.study.lock import StudyBusy
    old = _db_lease(db_url, "cas", renew=0.2)
    old.acquire()
    old.renewal.stop()                                           # its heartbeat stops here
    a, b = _db_lease(db_url, "cas", ttl=0.5), _db_lease(db_url, "cas", ttl=0.5)
    time.sleep(0.8)
    seen_a, seen_b = a.observe(), b.observe()                   # both judge the same row stale
    assert a.stale(seen_a) and b.stale(seen_b)
    assert a.take_over(seen_a) is True
    assert b.take_over(seen_b) is False                          # the row changed under it
    with pytest.raises(StudyBusy):
        b.acquire()
    assert a.observe()["holder"] == a.token
    # and racing for real: threads that start together, over rounds, one winner each
    for round_ in range(3):
        a.renewal.stop()
        time.sleep(0.8)
        rivals = [_db_lease(db_url, "cas", ttl=0.5) for _ in range(3)]
        won = _race(rivals)
        assert len(won) == 1, f"round {round_}: {len(won)} winners"
        assert a.observe()["holder"] == won[0].token
        for r in rivals:
            r.renewal.stop()
        a = won[0]
    a.release()


# -- the lease through Optuna's gRPC storage proxy --------------------------------------------
def test_grpc_lease_live_holder_refused_stalled_holder_taken(grpc_proxy):
    from coopt.study.lock import StudyBusy
    url, backend = grpc_proxy
    holder = _holder("grpc", "g", url)
    try:
        taker = _grpc_lease(url, "g", ttl=1.0)
        start = time.monotonic()
        with pytest.raises(StudyBusy, match=f"pid {holder.pid} on {socket.gethostname()} since"):
            taker.acquire()
        assert time.monotonic() - start < 1.0                    # it saw the holder's beat move: refused
        holder.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        taken = _try_for(taker, 15.0)
        assert taken is not None and taken - stopped >= 1.0 - 0.2
        holder.send_signal(signal.SIGCONT)
        assert holder.stdout.readline().strip() == "lost"
        rival = _grpc_lease(url, "g", ttl=1.0)
        assert _try_for(rival, 2.5) is None                      # the new holder is live
        taker.release()
        import optuna
        # released: only the newest generation is left, marked released, and the next run takes it at once
        assert optuna.get_all_study_names(backend) == ["coopt-lease.g@1"]
        assert taker.read(1)[1]["released"] is True
        start = time.monotonic()
        rival.acquire()
        assert time.monotonic() - start < 0.5 and rival.generation == 2
        assert optuna.get_all_study_names(backend) == ["coopt-lease.g@2"]
        rival.release()
    finally:
        _end(holder)


def test_grpc_lease_stale_takeover_has_one_winner(grpc_proxy):
    url, _ = grpc_proxy
    holder = _holder("grpc", "race", url)
    holder.send_signal(signal.SIGSTOP)
    try:
        for round_ in range(3):
            rivals = [_grpc_lease(url, "race", ttl=1.0) for _ in range(3)]
            won = _race(rivals)
            assert len(won) == 1, f"round {round_}: {len(won)} winners"
            assert won[0].generation == round_ + 1 and won[0].read()[1]["holder"] == won[0].token
            assert won[0].generations() == [round_ + 1]         # older generations tidied away
            won[0].renewal.stop()                                # it stalls too: the next round takes it
        holder.send_signal(signal.SIGCONT)                      # the first holder wakes: it has lost
        assert holder.stdout.readline().strip() == "lost"
    finally:
        _end(holder)


def test_grpc_taker_that_stalls_after_judging_never_takes_a_new_live_lease(grpc_proxy):
    """A taker judges the lease free, stalls, and meanwhile another takes it over: the stalled one is then
    refused (claiming is creating the next generation, which exists by then), never a second holder."""
    from coopt.study.lock import StudyBusy
    from coopt.study.storage_lease import FREE
    url, _ = grpc_proxy
    holder = _holder("grpc", "stall", url)
    holder.send_signal(signal.SIGSTOP)
    slow, quick = _grpc_lease(url, "stall", ttl=1.0), _grpc_lease(url, "stall", ttl=1.0)
    judge = slow.watch

    def judge_then_stall(generation):
        verdict = judge(generation)
        if verdict == FREE and quick.generation is None:
            quick.acquire()                                     # takes generation 1 while slow stalls
        return verdict
    slow.watch = judge_then_stall
    try:
        with pytest.raises(StudyBusy, match=f"pid {os.getpid()} on "):
            slow.acquire()
        assert quick.generation == 1 and quick.read()[1]["holder"] == quick.token and not quick.lost.is_set()
        assert slow.generation is None
    finally:
        quick.release()
        _end(holder)


@pytest.mark.slow
def test_grpc_second_run_exits_2_naming_the_holder_and_takes_over_after_sigkill(grpc_proxy, tmp_path,
                                                                               monkeypatch, capsys):
    """Two "machines" (two working folders, so the local file lock is not what excludes them)."""
    import optuna
    url, backend = grpc_proxy
    holder = _holder("grpc", "g", url)
    here = tmp_path / "second"
    here.mkdir()
    monkeypatch.chdir(here)
    try:
        assert "coopt-lease.g@0" in optuna.get_all_study_names(backend)
        args = ["search", "--space", TINY, "--trials", "1", "--workers", "1", "--sampler", "random",
                "--study", "g", "--storage", url]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pid {holder.pid} on {socket.gethostname()} since" in err[0], err
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert main(args) == 0                                   # a dead holder's lease is taken over
    finally:
        _end(holder)
    study = optuna.load_study(study_name="g", storage=backend)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"]
    # the lease of the run that took over is left released: one companion study, never listed as a study
    assert sorted(optuna.get_all_study_names(backend)) == ["coopt-lease.g@1", "g"]
    capsys.readouterr()
    assert main(["pareto", "--study", "g", "--storage", url, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert main(["pareto", "--study", "coopt-lease.g", "--storage", url]) == 2   # never a user study
    assert "reserved for run leases" in capsys.readouterr().err
