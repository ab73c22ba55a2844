"""A study as its storage records it: the truth every continuation follows.

Why: a study lives in its Optuna storage, which other machines share; the
study folder under ``mlruns/studies`` is a local cache of it.  A run that
continues a study from any folder with ``--storage`` alone must take the
search space (its content, not a local file), sampler, seed, energy
estimator and MLflow store the study was started with; a run whose
``--storage`` is not the study's own store would split it, and is refused
unless ``--copy-to`` asks for a copy.  Study-level user attributes hold the
record: ``coopt.settings`` and ``coopt.space`` (the space's YAML text).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from coopt.errors import CooptError
from coopt.study.storage import StorageError, describe, journal_path, open_storage, probe_storage

SETTINGS_ATTR = "coopt.settings"
SPACE_ATTR = "coopt.space"


@dataclass
class Stored:
    """What the storage records of a study (None for a study the storage does not hold)."""
    settings: dict
    space_text: str | None

    @property
    def space_sha256(self) -> str | None:
        return space_digest(self.space_text) if self.space_text is not None else None


def space_digest(text: str) -> str:
    """The digest of a search space's content: comments and layout may change, a study stays the same."""
    content = json.dumps(yaml.safe_load(text), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()


def read_local_meta(sdir: Path) -> dict | None:
    """``study.json`` of a study folder; a damaged one is one line naming it (``coopt doctor`` rebuilds it)."""
    path = Path(sdir) / "study.json"
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise CooptError("is not a plain file", file=str(path), key="study.json",
                         expected="the study's settings record written by coopt (remove it, then `coopt doctor "
                                  f"{Path(sdir).name}` rebuilds it from the storage)")
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("settings"), dict):
            raise ValueError("no settings")
        return meta
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise CooptError(f"is damaged ({type(e).__name__})", file=str(path), key="study.json",
                         expected=f"a JSON settings record: `coopt doctor {Path(sdir).name} --repair` rebuilds it "
                                  "from the storage") from None


def own_storage(name: str, asked: str | None, local: dict | None, copy_to: str | None) -> str | None:
    """The storage spec of the study's own store: the local record's unless ``--storage`` names another.

    A ``--storage`` that differs from the store the local record names would split the study: refused,
    unless ``--copy-to`` says the study moves (then ``--storage``, if given, must be its own store)."""
    recorded = (local or {}).get("settings", {}).get("storage") if local else None
    if local is None:
        return asked
    if asked is not None and describe(asked) != (recorded or describe(None)):
        raise CooptError(f"study '{name}' lives in {recorded or describe(None)}, not in {describe(asked)}",
                         key="--storage", expected="the study's own --storage (or none) to continue it; "
                                                   "--copy-to URL to copy it into another store; or a new "
                                                   "study name")
    if asked is None and recorded is not None:
        if "***" in recorded:
            raise CooptError(f"study '{name}' is stored in {recorded}", key="--storage",
                             expected="--storage with the full URL (the password is not kept)")
        return recorded
    return asked


def read_stored(name: str, spec: str | None, sdir: Path) -> Stored | None:
    """The study's record in its storage; None when the storage does not hold the study (a fresh one).
    An unreachable storage is one line (``probe_storage``)."""
    journal = journal_path(spec, sdir)
    if journal is not None and not journal.is_file():
        return None
    if not probe_storage(spec, sdir):          # a database without Optuna's tables: nothing stored yet
        return None
    store = open_storage(spec, sdir, create=False)
    try:
        try:
            sid = store.get_study_id_from_name(name)
        except KeyError:
            return None
        attrs = store.get_study_user_attrs(sid)
    except StorageError:
        raise
    except Exception as e:
        raise StorageError(f"cannot read study '{name}' from {describe(spec)}: {type(e).__name__}",
                           key="--storage", expected="a readable Optuna storage") from None
    finally:
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()
    settings = attrs.get(SETTINGS_ATTR)
    if not isinstance(settings, dict):
        return Stored({}, None)                # made by Optuna alone, or a run killed before its first write
    text = attrs.get(SPACE_ATTR)
    return Stored(settings, text if isinstance(text, str) else None)


def check_continuation(name: str, stored: Stored, *, space_text: str | None, sampler: str | None) -> None:
    """Refuse, in one line, a continuation that asks for another space or sampler than the stored ones."""
    settings = stored.settings
    if space_text is not None and stored.space_text is not None \
            and space_digest(space_text) != stored.space_sha256:
        raise CooptError(f"study '{name}' was started with a different search space "
                         f"({settings.get('space_file') or settings.get('space_name')})", key="--space",
                         expected="no --space (the study's own is kept in its storage), or a new study name")
    own = settings.get("sampler")
    if sampler is not None and own is not None and own != sampler:
        raise CooptError(f"study '{name}' uses the {own} sampler", key="--sampler",
                         expected=f"--sampler {own} (or no --sampler) to continue it, or a new study name")


def copy_study(name: str, source: str | None, sdir: Path, target: str) -> None:
    """Copy the study (settings, space, trials) from its own store into ``target``; the target must not
    hold it yet.  Called with the source's run lock held."""
    import optuna

    if read_stored(name, target, sdir) is not None:
        raise CooptError(f"study '{name}' already exists in {describe(target)}", key="--copy-to",
                         expected="a store that does not hold the study yet")
    src = open_storage(source, sdir, create=False)
    dst = open_storage(target, sdir, create=True)
    optuna.copy_study(from_study_name=name, from_storage=src, to_storage=dst, to_study_name=name)
    study = optuna.load_study(study_name=name, storage=dst)
    settings = dict(study.user_attrs.get(SETTINGS_ATTR) or {})
    settings["storage"] = describe(target)
    study.set_user_attr(SETTINGS_ATTR, settings)
    for s in (src, dst):
        engine = getattr(s, "engine", None)
        if engine is not None:
            engine.dispose()
