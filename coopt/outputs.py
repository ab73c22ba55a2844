"""Where commands write: refuse to clobber, never write through a link, every OS error one line.

Why: ``--out`` of ``arch``, ``map`` and ``network`` names a file or folder
the user may already have; writing over it, or through a symbolic link to
somewhere else, must be asked for (``--force``), and a failed write (a
read-only folder, a parent that is a file) is a user-facing error naming the
path, not a traceback.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from coopt.errors import CooptError

__all__ = ["output_file", "output_dir", "write_text", "atomic_write_text", "atomic_write_bytes", "os_reason"]


def _link_text(p: Path) -> str:
    """How to name a link in a message: a loop as such, else where it points."""
    try:
        p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
    try:
        return f"is a symbolic link (to {p.readlink()})"
    except OSError:
        return "is a symbolic link"


def output_file(path: str | Path, *, force: bool = False, key: str = "--out") -> Path:
    """A file path that may be written: not a folder; an existing file or link only with ``force``.

    With ``force`` a link is replaced by a plain file (never written through).
    """
    p = Path(path)
    if p.is_symlink():
        if not force:
            raise CooptError(f"{_link_text(p)}; refusing to write through it",
                             file=str(p), key=key, expected="a new path, or --force to replace the link")
        if p.is_dir():
            raise CooptError("is a link to a folder", file=str(p), key=key, expected="a file path")
        _unlink(p, key)
    elif p.is_dir():
        raise CooptError("is a folder", file=str(p), key=key, expected="a file path")
    elif p.exists() and not force:
        raise CooptError("exists", file=str(p), key=key, expected="a new file, or --force to replace it")
    _mkdir(p.parent, key)
    return p


def output_dir(path: str | Path, *, force: bool = False, key: str = "--out") -> Path:
    """A folder to write into: created if missing; an existing non-empty folder or a link only with ``force``."""
    p = Path(path)
    if p.is_symlink():
        text = _link_text(p)
        if not force or text.endswith("loop"):
            raise CooptError(f"{text}; refusing to write through it", file=str(p), key=key,
                             expected="a new folder, or --force to write where it points")
    if p.exists() and not p.is_dir():
        raise CooptError("exists and is not a folder", file=str(p), key=key, expected="a folder path")
    if p.is_dir() and not force:
        try:
            busy = any(p.iterdir())
        except OSError as exc:
            raise CooptError(f"cannot list the folder: {exc.strerror or exc}", file=str(p), key=key) from None
        if busy:
            raise CooptError("is a folder that is not empty", file=str(p), key=key,
                             expected="a new or empty folder, or --force to write into it")
    _mkdir(p, key)
    return p


def write_text(path: str | Path, text: str, *, key: str = "--out") -> Path:
    """Write ``text`` (UTF-8) atomically; an OS error becomes one CooptError naming the file."""
    return atomic_write_text(path, text, key=key)


def os_reason(exc: OSError) -> str:
    """An OS error in words a user acts on (a full disk, a size limit) rather than errno text."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device (free some, then run again)"
    if exc.errno == errno.EFBIG:
        return "file too large for this file system or the file size limit (ulimit -f)"
    return str(exc.strerror or exc)


def atomic_write_bytes(path: str | Path, data: bytes, *, key: str | None = "--out") -> Path:
    """Write a file whole or not at all: a temporary file next to it, flushed to disk, renamed over it
    (a link at ``path`` is replaced, never written through).  A full disk leaves neither a partial file
    nor the temporary one, and is one CooptError naming the file."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CooptError(f"cannot write: {os_reason(exc)}", file=str(p), key=key) from None
    return p


def atomic_write_text(path: str | Path, text: str, *, key: str | None = "--out") -> Path:
    """``atomic_write_bytes`` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), key=key)


def _mkdir(p: Path, key: str) -> None:
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "a parent is not a folder" if exc.errno in (errno.ENOTDIR, errno.EEXIST) else exc.strerror or exc
        raise CooptError(f"cannot create the folder: {why}", file=str(p), key=key) from None


def _unlink(p: Path, key: str) -> None:
    try:
        os.unlink(p)
    except OSError as exc:
        raise CooptError(f"cannot replace the link: {exc.strerror or exc}", file=str(p), key=key) from None
