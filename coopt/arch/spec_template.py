"""A user's timeloopfe v4 spec used as a search template, carried as data.

Why: a search space may name a spec (a Jinja2 top file, or an architecture
file with its component files) instead of a built-in template.  Its knobs are
the spec's own ``variables:`` (set as ``--set`` sets them) and the top file's
Jinja2 variables (``--var``).  Ray workers need not share the driver's disk,
so the spec travels as the texts of every file it reads
(:class:`SpecTemplate` pickles like a parsed template does; every trial record
keeps it, for export); a worker writes
them once into a private temporary folder and reads them with the same v4
reader (:func:`coopt.arch.v4_spec.load_spec`).  The spec's inline
constraints, component classes and settings hold in every trial because every
trial reads the whole spec.

Limits: the files read with the space's ``vars:`` are the ones sent (an
include that only another value of a searched Jinja2 variable reaches, or one
by ``include_text``, is missing in the copy: the space's check, which reads the
copy at both ends of every range, says so); at most ``MAX_FILES`` files and
``MAX_BYTES`` in all.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from coopt.arch.v4_files import Quoted, V4State, is_jinja, load_v4_file
from coopt.arch.v4_spec import load_spec
from coopt.errors import SpecError
from coopt.yamlio import read_text

__all__ = ["SpecTemplate", "bundle_spec", "restore", "write_files"]

MAX_FILES = 256
MAX_BYTES = 2 ** 20
# Accelergy's Jinja2 helpers (coopt.arch.v4_files): names a template uses that are not its variables.
_HELPERS = {"cwd", "include", "include_all", "include_text", "find_path", "find_paths", "path_exists",
            "add_to_path", "setenv"}
_RESTORED: dict[str, str] = {}          # bundle digest -> folder holding its files (one per process)


class _Free:
    """A spec variable as a search parameter: any value the spec's expressions accept (checked by loading)."""

    def check(self, value):
        return value


@dataclass(frozen=True)
class SpecTemplate:
    """A v4 spec as data: ``files`` (relative path -> text) read from ``entry`` with Jinja2 ``jinja``."""

    name: str
    files: dict
    entry: tuple
    jinja: dict
    variables: tuple                      # names under the spec's variables:
    jinja_names: tuple                    # Jinja2 variables the entry files use
    path: str = ""                        # where it was read from (messages)
    digest: str = ""

    # -- what a Template offers the study (screening, space checks) ---------------------------------
    @property
    def parameters(self) -> dict:
        return {n: _Free() for n in (*self.variables, *self.jinja_names)}

    @property
    def constraint_options(self) -> list:
        return []

    def unknown(self, name: str) -> SpecError:
        return SpecError(f"no variable '{name}' in the spec {self.path}: neither under its variables: nor a "
                         "Jinja2 variable of its top file", expected=f"one of {sorted(self.parameters)}")

    def resolve(self, params: dict | None = None) -> dict:
        """The values set by ``params`` (every name checked); unset variables keep the spec's own."""
        for k in params or {}:
            if k not in self.parameters:
                raise self.unknown(k)
        return dict(params or {})

    def split(self, values: dict) -> tuple[dict, dict]:
        """``values`` -> (Jinja2 variables, overrides of ``variables:``); a name under both is a variable."""
        jinja, over = dict(self.jinja), {}
        for k, v in self.resolve(values).items():
            if k in self.variables:
                over[k] = Quoted(v) if isinstance(v, str) else v     # a categorical string stays a string
            else:
                jinja[k] = v
        return jinja, over

    def load(self, values: dict | None = None, *, size_one_dims: bool = False) -> tuple[dict, dict]:
        """The processed spec for ``values`` (as ``coopt network --arch SPEC --set/--var`` reads it)."""
        jinja, over = self.split(values or {})
        root = restore(self)
        try:
            return load_spec([os.path.join(root, e) for e in self.entry], jinja or None,
                             size_one_dims=size_one_dims, overrides=over or None)
        except SpecError as e:            # name the user's file, not this process's copy of it
            raise SpecError(e.message, file=self.user_file(e.file), key=e.key, expected=e.expected) from None

    def user_file(self, file: str | None) -> str | None:
        """``file`` with this process's copy of the spec replaced by the user's folder."""
        if not file or not self.path:
            return file
        return file.replace(restore(self), str(Path(self.path).parent))

    def instantiate(self, values: dict | None = None):
        from coopt.arch.yaml_io import arch_from_yaml

        raw, sources = self.load(values)
        return arch_from_yaml(raw["architecture"], file=sources.get("architecture"))

    def to_json(self) -> dict:
        return {"name": self.name, "files": dict(self.files), "entry": list(self.entry), "jinja": dict(self.jinja),
                "variables": list(self.variables), "jinja_names": list(self.jinja_names), "path": self.path,
                "digest": self.digest}

    @staticmethod
    def from_json(d: dict) -> "SpecTemplate":
        return SpecTemplate(name=d["name"], files=dict(d["files"]), entry=tuple(d["entry"]), jinja=dict(d["jinja"]),
                            variables=tuple(d["variables"]), jinja_names=tuple(d["jinja_names"]),
                            path=d.get("path", ""), digest=d.get("digest", ""))


def _digest(files: dict, entry, jinja: dict) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + files[rel].encode() + b"\0")
    h.update(repr((tuple(entry), sorted(jinja.items(), key=str))).encode())
    return h.hexdigest()


def _jinja_names(path: Path, text: str) -> set[str]:
    import jinja2
    from jinja2 import meta

    try:
        return set(meta.find_undeclared_variables(jinja2.Environment().parse(text))) - _HELPERS
    except jinja2.TemplateSyntaxError as exc:
        raise SpecError(f"line {exc.lineno}: Jinja2 syntax error: {exc.message}", file=str(path)) from None


def _read(paths: list[Path], jinja: dict, probes=()) -> tuple[list[str], list[str], list[dict]]:
    """(every file the spec reads, in order; the names under its ``variables:``; the Jinja2 values read
    with) -- the entry files loaded as timeloopfe loads them, includes followed, with ``jinja`` and with
    each of ``probes`` over it."""
    read, names, wanted = [os.path.realpath(p) for p in paths], [], set()
    for p in paths:
        text = read_text(p, what="spec file")
        wanted |= _jinja_names(p, text) if is_jinja(p, text) else set()
    # only the Jinja2 variables the entry files use (a probe of a spec variable renders nothing new)
    runs = list({repr(sorted(d.items(), key=str)): d for d in
                 ({k: v for k, v in probe.items() if k in wanted} for probe in probes)}.values()) or [{}]
    for i, probe in enumerate(runs):
        state = V4State({**jinja, **probe})
        for p in paths:
            try:
                data = load_v4_file(p, state)
            except SpecError as e:
                if not probe:
                    raise
                raise SpecError(f"{e.message} [with {probe}]", file=e.file, key=e.key, expected=e.expected) from None
            node = data.get("variables") if isinstance(data, dict) else None
            if isinstance(node, dict) and i == 0:
                names += [str(k) for k in node if k != "version" and str(k) not in names]
        read += state.files
    return list(dict.fromkeys(read)), names, runs


def bundle_spec(spec, jinja: dict | None = None, *, file: str | None = None, key: str = "spec",
                probes=()) -> SpecTemplate:
    """Read a spec (one path or a list: top file, or architecture + component files) into a SpecTemplate
    holding the texts of every file it reads (their common folder is the bundle's root), also with each
    of ``probes`` (Jinja2 values a search will set, which may include other files)."""
    paths = [Path(p) for p in ([spec] if isinstance(spec, (str, Path)) else spec)]
    for p in paths:
        if not p.is_file():
            raise SpecError(f"no such spec file {p}", file=file, key=key,
                            expected="a timeloopfe v4 top file or architecture file")
    jinja = dict(jinja or {})
    if jinja and not any(is_jinja(p, read_text(p, what="spec file")) for p in paths):
        raise SpecError(f"Jinja2 variables given, but {paths[0]} is not a Jinja2 template", file=file, key="vars",
                        expected="vars: only with a Jinja2 top file (such as top.yaml.jinja2)")
    read, variables, runs = _read(paths, jinja, probes)
    if len(read) > MAX_FILES:
        raise SpecError(f"the spec reads {len(read)} files", file=str(paths[0]), key=key,
                        expected=f"at most {MAX_FILES} (they are sent to every worker)")
    root = Path(os.path.commonpath([os.path.dirname(f) for f in read]))
    files, total = {}, 0
    for f in read:
        text = read_text(f, what="spec file")
        total += len(text.encode())
        files[Path(f).relative_to(root).as_posix()] = text
    if total > MAX_BYTES:
        raise SpecError(f"the spec's files hold {total // 1024} KiB", file=str(paths[0]), key=key,
                        expected=f"at most {MAX_BYTES // 2 ** 20} MiB (they are sent to every worker)")
    entry = [Path(os.path.realpath(p)).relative_to(root).as_posix() for p in paths]
    jnames = set()             # included Jinja2 files render with the same variables (accelergy's include)
    for rel, text in files.items():
        if is_jinja(rel, text):
            jnames |= _jinja_names(root / rel, text)
    name = re.sub(r"\.(ya?ml|jinja2?|j2)$", "", paths[0].name)
    if name in ("top", "top.yaml", "arch", "architecture"):
        name = paths[0].resolve().parent.name
    t = SpecTemplate(name=name, files=files, entry=tuple(entry), jinja=jinja, variables=tuple(variables),
                     jinja_names=tuple(sorted(jnames - set(variables))), path=str(paths[0]),
                     digest=_digest(files, entry, jinja))
    for probe in runs:
        _check_self_contained(t, paths, jinja, probe)
    return t


def _check_self_contained(t: SpecTemplate, paths: list[Path], jinja: dict, probe: dict) -> None:
    """The copy the workers get reads exactly as the original: nothing else is needed."""
    try:
        here, _ = load_spec(paths, {**jinja, **probe} or None, size_one_dims=False)
    except SpecError as e:
        raise SpecError(e.message, file=e.file or str(paths[0]), key=e.key, expected=e.expected) from None
    try:
        there, _ = t.load(probe)
    except SpecError as e:
        raise SpecError(f"the spec's folder copied alone does not read: {e.message}", file=str(paths[0]),
                        expected="includes inside the spec's folder, by relative paths") from None
    if here != there:
        raise SpecError("the spec reads differently once its folder is copied elsewhere", file=str(paths[0]),
                        expected="includes inside the spec's folder, by relative paths")


def restore(t: SpecTemplate) -> str:
    """The folder holding ``t``'s files in this process (written once, removed at exit)."""
    key = t.digest or _digest(t.files, t.entry, t.jinja)
    root = _RESTORED.get(key)
    if root and os.path.isdir(root):
        return root
    root = tempfile.mkdtemp(prefix="coopt-spec-")
    atexit.register(shutil.rmtree, root, True)
    write_files(root, t.files)
    _RESTORED[key] = root
    return root


def write_files(root: str | Path, files: dict[str, Any]) -> None:
    """Write relative posix paths under ``root``, refusing any that would leave it."""
    base = Path(root).resolve()
    for rel, text in files.items():
        pure = PurePosixPath(rel)
        target = (base / pure).resolve()
        if pure.is_absolute() or ".." in pure.parts or not target.is_relative_to(base):
            raise SpecError(f"spec file name {rel!r} leaves its folder", expected="relative paths inside the spec")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
