"""The read side: a study's settings and completed records, for ``pareto``, ``export`` and ``verify``.

Records come from the Optuna storage (each told trial carries its record), so
any machine that reaches the storage can read a study; the study folder's
files are the fallback for trials stored before records went into the
storage.  Only trials Optuna has as COMPLETE count (a crash can leave an
orphan record file).  Reading opens storage with ``create=False``: a wrong
``--storage`` is an error, never a new empty store.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coopt.errors import CooptError
from coopt.study.records import TrialRecord, read_records, trials_dir, write_record
from coopt.study.runner import SETTINGS_ATTR, completed_records, quiet_optuna, study_dir
from coopt.study.storage import DamagedStorage, StorageError, open_storage
from coopt.study.stored import read_local_meta


@dataclass
class StudyView:
    name: str
    folder: Path                    # the local study folder (may not exist on this machine)
    settings: dict
    records: list[TrialRecord]
    storage: str | None
    tracking_uri: str | None

    @property
    def objectives(self) -> list[tuple[str, str]]:
        return [tuple(o) for o in self.settings["objectives"]]


def _known(sdir: Path) -> list[str]:
    parent = sdir.parent
    return sorted(p.name for p in parent.glob("*") if (p / "study.json").exists()) if parent.is_dir() else []


def _open_study(name: str, storage: str | None, root: str | Path | None):
    """(Optuna study or None, study folder, local settings, storage spec) of study ``name``, read-only;
    None when there is only a hand-made study folder without a journal."""
    quiet_optuna()
    import optuna

    sdir = study_dir(name, root)
    meta = read_local_meta(sdir)
    local = (meta or {}).get("settings", {})
    spec = storage if storage is not None else local.get("storage")
    if spec is not None and "***" in spec:
        raise CooptError(f"study '{name}' is stored in {spec}", key="--storage",
                         expected="--storage with the full URL (the password is not kept)")
    if spec is None and meta is None:
        known = _known(sdir)
        raise CooptError(f"no study '{name}' under {sdir.parent}", key="--study",
                         expected=f"one of {known}, or --storage URL" if known else
                         "run coopt search first, or give --storage URL")
    try:
        store = open_storage(spec, sdir, create=False)
    except DamagedStorage:
        raise
    except StorageError:
        if spec is None:              # a study folder without a journal (made by hand): its record files
            return None, sdir, local, None
        raise
    try:
        study = optuna.load_study(study_name=name, storage=store)
    except KeyError:
        raise CooptError(f"no study '{name}' in storage {spec or sdir / 'optuna.journal'}", key="--study",
                         expected="the name given to coopt search") from None
    except Exception as e:            # e.g. an RDB without Optuna's tables
        raise CooptError(f"no study '{name}' in storage {spec}: {type(e).__name__}", key="--storage",
                         expected="the storage coopt search used") from None
    settings = study.user_attrs.get(SETTINGS_ATTR) or local
    if not settings:
        raise CooptError(f"study '{name}' has no coopt settings", key="--study",
                         expected="a study created by coopt search")
    return study, sdir, settings, spec


def load_study_settings(name: str, storage: str | None = None, root: str | Path | None = None) -> dict:
    """The settings record of study ``name`` (tracking URI, energy, ...), from ``storage`` or its folder."""
    return _open_study(name, storage, root)[2]


def load_study_view(name: str, storage: str | None = None, tracking_uri: str | None = None,
                    root: str | Path | None = None) -> StudyView:
    """Settings and COMPLETE records of study ``name``; ``storage``/``tracking_uri`` default to what the
    study's settings record says (a masked password there means: pass ``--storage``)."""
    study, sdir, settings, spec = _open_study(name, storage, root)
    if study is None:
        return StudyView(name, sdir, settings, read_records(sdir), None, tracking_uri or settings.get("tracking_uri"))
    records = completed_records(study, sdir if sdir.is_dir() else None)
    return StudyView(name, sdir, settings, [records[n] for n in sorted(records)], spec,
                     tracking_uri or settings.get("tracking_uri"))


@contextlib.contextmanager
def records_folder(view: StudyView):
    """A folder whose ``trials/`` holds the view's records: the study folder when it has them all,
    else a temporary copy (the records came from the storage)."""
    files = trials_dir(view.folder)
    if all((files / f"{r.number:06d}.json").is_file() for r in view.records):
        yield view.folder
        return
    with tempfile.TemporaryDirectory(prefix="coopt-records-") as tmp:
        for r in view.records:
            write_record(Path(tmp), r)
        # the settings (budgets, objectives) travel with the copy, as study.json does in a study folder
        (Path(tmp) / "study.json").write_text(json.dumps({"settings": view.settings}))
        yield Path(tmp)
