"""``coopt doctor STUDY``: find what is damaged in a study's folder and storage, and (``--repair``)
recover what can be recovered; never drop a trial silently.

Why: the study folder is a cache of the storage (records, settings, the
space) plus, for the default journal storage, the study itself.  A crash,
a full disk or a hand edit can leave a record, ``study.json``, the journal
or ``run.lock`` damaged; every other command then stops with one line
naming the file, and this command says what each damaged file means and
rebuilds it from the other copy where there is one.  Repairs keep the
damaged original next to it (``*.damaged``); a trial that cannot be
recovered is named.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from coopt.errors import CooptError
from coopt.outputs import atomic_write_text
from coopt.study.records import load_record_file, record_files, record_from_attrs, trials_dir, write_record
from coopt.study.storage import check_study_name, describe, journal_path, open_storage, quiet_optuna, study_dir
from coopt.study.stored import SETTINGS_ATTR, SPACE_ATTR, read_local_meta, space_digest


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)     # what is wrong (and stays wrong)
    repaired: list[str] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"ok: {m}" for m in self.ok] + [f"repaired: {m}" for m in self.repaired]
                + [f"problem: {m}" for m in self.problems])


def _keep(path: Path) -> Path:
    """Move a damaged file aside (never deleted) and return where it went."""
    dst = path.with_name(f"{path.name}.damaged-{int(time.time())}")
    shutil.move(str(path), dst)
    return dst


def _journal(path: Path, report: Report, repair: bool) -> None:
    """A journal's lines are JSON operations: a damaged line stops Optuna's replay of every later one.
    Repair keeps the lines before the first damaged one (the original is kept aside)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    lines = data.split(b"\n")
    good = 0
    for i, line in enumerate(lines):
        if i == len(lines) - 1 and line == b"":
            break
        try:
            json.loads(line)
        except ValueError:
            break
        good += 1
    total = len(lines) - (1 if lines and lines[-1] == b"" else 0)
    if good == total:
        report.ok.append(f"journal {path} ({total} operations)")
        return
    what = f"journal {path}: operation {good + 1} of {total} is damaged"
    if not repair:
        report.problems.append(f"{what} (--repair keeps the {good} before it)")
        return
    kept = _keep(path)
    atomic_write_text(path, b"\n".join(lines[:good]).decode("utf-8", "replace") + ("\n" if good else ""),
                      key=None)
    report.repaired.append(f"{what}: kept the {good} operations before it (the original is {kept})")


def diagnose(name: str, storage: str | None = None, *, repair: bool = False,
             root: str | Path | None = None) -> Report:
    """Check (and with ``repair`` mend) study ``name``'s folder and storage."""
    check_study_name(name)
    quiet_optuna()
    import optuna
    from optuna.trial import TrialState

    report = Report()
    sdir = study_dir(name, root)
    if sdir.exists() and not sdir.is_dir():
        report.problems.append(f"{sdir} is not a folder (move it away; nothing of the study is in it)")
        return report
    lock = sdir / "run.lock"
    if lock.is_symlink() or (lock.exists() and not lock.is_file()):
        report.problems.append(f"{lock} is not a plain file (remove it; coopt creates the lock itself)")
    for tmp in list(sdir.glob("**/.*.tmp")) + list(trials_dir(sdir).glob("*.json.tmp")):
        if repair:
            tmp.unlink()
            report.repaired.append(f"removed {tmp} (a write a crash or a full disk interrupted)")
        else:
            report.problems.append(f"{tmp} is left from an interrupted write (--repair removes it)")
    try:
        meta = read_local_meta(sdir)
    except CooptError:
        meta = None
        if repair:
            report.repaired.append(f"{sdir / 'study.json'} was damaged: kept as {_keep(sdir / 'study.json')}")
        else:
            report.problems.append(f"{sdir / 'study.json'} is damaged (--repair rebuilds it from the storage)")
    spec = storage if storage is not None else ((meta or {}).get("settings") or {}).get("storage")
    if spec is not None and "***" in spec:
        report.problems.append(f"the study is stored in {spec}: give --storage with the full URL")
        return report
    journal = journal_path(spec, sdir)
    if journal is not None:
        _journal(journal, report, repair)
        if not journal.is_file():
            report.problems.append(f"no journal at {journal}: the study's storage is elsewhere (--storage URL)")
            return report
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(spec, sdir, create=False))
        trials = study.get_trials(deepcopy=False)
    except KeyError:
        report.problems.append(f"no study '{name}' in {describe(spec)}")
        return report
    except CooptError as e:
        report.problems.append(str(e))
        return report
    except Exception as e:
        report.problems.append(f"the storage {describe(spec)} cannot be read ({type(e).__name__}: {e})"[:300])
        return report
    settings = study.user_attrs.get(SETTINGS_ATTR)
    space = study.user_attrs.get(SPACE_ATTR)
    if meta is None and isinstance(settings, dict):
        if repair:
            sdir.mkdir(parents=True, exist_ok=True)
            if isinstance(space, str):
                atomic_write_text(sdir / "search_space.yaml", space, key=None)
            atomic_write_text(sdir / "study.json", json.dumps(
                {"space_sha256": space_digest(space) if isinstance(space, str) else None,
                 "settings": settings, "created": time.time()}, indent=1), key=None)
            report.repaired.append(f"{sdir / 'study.json'} rebuilt from the storage's settings")
        elif sdir.is_dir():
            report.problems.append(f"{sdir / 'study.json'} is missing (--repair rebuilds it from the storage)")
    files = record_files(sdir)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for t in complete:
        try:
            stored = record_from_attrs(t.user_attrs)
        except CooptError:
            stored = None
            report.problems.append(f"trial {t.number}: its record in the storage is damaged")
        path = files.get(t.number)
        damaged = False
        if path is not None:
            try:
                load_record_file(path)
            except CooptError:
                damaged = True
        if damaged and stored is not None:
            if repair:
                kept = _keep(path)
                write_record(sdir, stored)
                report.repaired.append(f"trial {t.number}: record file rebuilt from the storage (the damaged "
                                       f"one is {kept})")
            else:
                report.problems.append(f"trial {t.number}: record file {path} is damaged (--repair rebuilds "
                                       "it from the storage)")
        elif damaged or (stored is None and path is None):
            report.problems.append(f"trial {t.number}: no readable record anywhere; its design is "
                                   f"{dict(t.params)} (run it again with a new study, or enqueue it)")
    told = {t.number for t in complete}
    orphans = sorted(n for n in files if n not in told)
    if orphans:
        report.problems.append(f"record files of trials {orphans} have no COMPLETE trial in the storage "
                               "(a crash between writing and telling, or a journal repaired above): they are "
                               "kept, and not counted")
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    if running:
        report.ok.append(f"trials {running} are RUNNING: a run holds the study, or the next run re-runs them")
    report.ok.append(f"study '{name}' in {describe(spec)}: {len(complete)} complete trials of {len(trials)}")
    return report


def run_doctor(name: str, storage: str | None, repair: bool) -> int:
    """Print the report; exit 0 when nothing is left wrong, 1 otherwise."""
    report = diagnose(name, storage, repair=repair)
    for line in report.lines():
        print(line)
    return 1 if report.problems else 0

