"""timeloopfe's v4 input files read as timeloopfe reads them: Jinja2, includes, ``!Tags``.

Why a module of its own: a v4 top file (``top.yaml.jinja2``) is a Jinja2
template before it is YAML, and its ``include``/``include_all`` helpers
splice other files' parsed contents in.  This follows Accelergy's loader,
which timeloopfe calls for every file (``accelergy/utils/yaml.py``:
``load_file_and_includes`` -- the helpers ``cwd``, ``include``,
``include_all``, ``include_text``, ``find_path``, ``find_paths``,
``path_exists``, ``add_to_path``, ``setenv``; ``load_yaml`` -- the
``!include_loaded``/``!include``/``!includedir``/``!nomerge`` tags and the
``<<``/``<<<`` merge keys).  Variables (``architecture``, ``problem``...) are
timeloopfe's ``jinja_parse_data`` (``--jinja_parse_data KEY=VALUE`` there,
``--var KEY=VALUE`` here).  Differences: templates run in Jinja's sandbox,
``setenv`` is refused (it would change this process's environment), and a
file is rendered only when it contains Jinja markup (rendering plain YAML is
the identity).

Architecture tags are kept: a mapping tagged ``!Container`` etc. becomes a
:class:`Tagged` dict (its ``tag`` and ``line``), so the v4 reader can tell a
``!Parallel`` from a ``!Hierarchical``.  An unknown tag is an error with its
line; quoted strings stay :class:`Quoted` so that expressions can tell
``"LPDDR4"`` (a string) from ``LPDDR4`` (an undefined name), as Accelergy does.
"""
from __future__ import annotations

import glob
import os
import re
import traceback
from pathlib import Path
from typing import Any

import yaml

from coopt.errors import SpecError
from coopt.yamlio import MAX_FILE_BYTES, TolerantLoader, check_shape, read_text

__all__ = ["ARCH_TAGS", "Quoted", "Tagged", "TaggedList", "V4State", "is_jinja", "load_v4_file"]

# timeloopfe/v4/arch.py ArchNodes.declare_attrs: the tags an architecture node list may carry.
ARCH_TAGS = ("!Component", "!Container", "!Hierarchical", "!Parallel", "!Pipelined", "!Nothing")
_JINJA_MARK = re.compile(r"\{\{|\{%|\{#")
_INCLUDED = "__coopt_included__"


class Quoted(str):
    """A string written in quotes: never an expression (accelergy parsing_utils.is_quoted_string)."""


class Tagged(dict):
    """A mapping written with a ``!Tag``; ``tag`` and ``line`` (1-based) say which and where."""

    tag: str = ""
    line: int = 0


class TaggedList(list):
    tag: str = ""
    line: int = 0


class _Multi(list):
    """Several files' contents from one ``include_all`` (accelergy MultiIncludeWrapper)."""


def is_jinja(path: str | Path, text: str | None = None) -> bool:
    p = str(path)
    if p.endswith((".jinja", ".jinja2")):
        return True
    return text is not None and bool(_JINJA_MARK.search(text))


class _Loader(TolerantLoader):
    """TolerantLoader that keeps architecture tags and quoting and resolves Accelergy's include tags."""

    included: dict = {}
    here: str = "."
    v4state: "V4State | None" = None

    def _quoted_str(self, node):
        value = self.construct_scalar(node)
        return Quoted(value) if node.style in ("'", '"') else value


def _tagged(loader: _Loader, suffix: str, node: yaml.Node) -> Any:
    tag = "!" + suffix
    line = node.start_mark.line + 1
    if tag in ARCH_TAGS:
        if isinstance(node, yaml.MappingNode):
            out = Tagged(loader.construct_mapping(node, deep=True))
        elif isinstance(node, yaml.SequenceNode):
            out = TaggedList(loader.construct_sequence(node, deep=True))
        elif tag == "!Nothing" and not node.value:
            out = Tagged()
        else:
            raise yaml.constructor.ConstructorError(None, None, f"{tag} on a scalar", node.start_mark)
        out.tag, out.line = tag, line
        return out
    if tag == "!include_loaded":
        return _resolve_included(loader, str(loader.construct_scalar(node)), line)
    if tag in ("!include", "!includedir"):
        target = str(loader.construct_scalar(node)).rstrip(",")
        full = os.path.join(loader.here, target)
        if tag == "!include":
            return load_v4_file(full, loader.v4state)
        return [load_v4_file(f, loader.v4state) for f in sorted(glob.glob(full + "/*.yaml"))]
    if tag == "!nomerge":
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
    raise yaml.constructor.ConstructorError(
        None, None, f"unknown tag {tag} (timeloopfe knows {', '.join(ARCH_TAGS)} and Accelergy's "
                    "!include, !includedir, !include_loaded, !nomerge)", node.start_mark)


_Loader.add_multi_constructor("!", _tagged)
_Loader.add_constructor("tag:yaml.org,2002:str", _Loader._quoted_str)


def _resolve_included(loader: _Loader, ref: str, line: int) -> Any:
    """``!include_loaded NAME.key.key`` -> the included file's value at that key path (per file for include_all)."""
    name, *keys = [k for k in ref.split(".") if k]
    if name not in loader.included:
        raise yaml.constructor.ConstructorError(None, None, f"!include_loaded {ref}: nothing included under that name",
                                                None)
    found, file = loader.included[name]
    parts = list(found) if isinstance(found, _Multi) else [found]
    files = file if isinstance(found, _Multi) else [file]
    for i, part in enumerate(parts):
        for k in keys:
            if not isinstance(part, dict) or k not in part:
                have = list(part) if isinstance(part, dict) else type(part).__name__
                raise SpecError(f"include(..., '{'.'.join(keys)}'): no key '{k}' (found {have})",
                                file=files[i], key=".".join(keys))
            part = part[k]
        parts[i] = part
        if loader.v4state is not None:
            loader.v4state.origin[id(part)] = files[i]
    return parts if isinstance(found, _Multi) else parts[0]


class V4State:
    """What one top-level load shares across its includes: variables, include folders, files being read."""

    def __init__(self, variables: dict | None):
        self.variables = dict(variables or {})
        self.include_dirs: list[str] = []
        self.stack: list[str] = []
        self.files: list[str] = []
        self.rendered = False           # some file had Jinja markup (so --var values were used)
        self.origin: dict[int, str] = {}  # id of an included value -> the file it came from


def _find_paths(p: str, here: str, state: V4State, *, glob_ok: bool = True) -> list[str]:
    """accelergy utils/yaml.py find_paths: absolute, else relative to the including file, then add_to_path folders."""
    bases = [""] if os.path.isabs(p) else [os.path.dirname(here)] + state.include_dirs
    found, searched = [], []
    for d in bases:
        s = os.path.abspath(os.path.realpath(os.path.join(d, p)))
        searched.append(s)
        found.extend(sorted(glob.glob(s)) if glob_ok else ([s] if os.path.exists(s) else []))
    unique = list(dict.fromkeys(os.path.realpath(f) for f in found))
    if not unique:
        raise FileNotFoundError(f"cannot find {p!r} (searched {', '.join(searched)})")
    return unique


def _render(path: str, text: str, state: V4State, included: dict) -> str:
    """Jinja2 with Accelergy's helpers; an error names the template line."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    counter = [0]
    stem = re.sub(r"\W+", "", os.path.basename(path).rsplit(".", 1)[0])

    def include(p, indices: str = "", single: bool = True) -> str:
        files = _find_paths(str(p), path, state)
        if single and len(files) > 1:
            raise jinja2.TemplateRuntimeError(f"include({p!r}) matches {len(files)} files; use include_all()")
        loaded = [load_v4_file(f, state) for f in files]
        name = f"{_INCLUDED}{stem}_{counter[0]}"
        counter[0] += 1
        included[name] = (loaded[0], files[0]) if single else (_Multi(loaded), files)
        ref = name + ("." + str(indices).lstrip(".") if str(indices).strip(".") else "")
        return f"!include_loaded {ref}"

    def include_text(p) -> str:
        out = []
        for f in _find_paths(str(p), path, state):
            sub = read_text(f, what="included file")
            out.append(_render(f, sub, state, included) if is_jinja(f, sub) else sub)
        return "\n".join(out)

    def path_exists(p) -> bool:
        try:
            _find_paths(str(p), path, state, glob_ok=False)
            return True
        except FileNotFoundError:
            return False

    def add_to_path(p) -> str:
        for f in _find_paths(str(p), path, state):
            if f not in state.include_dirs:
                state.include_dirs.append(f)
        return ""

    def setenv(key, value):
        raise jinja2.TemplateRuntimeError("setenv() is not supported by coopt (it would change the environment "
                                          "of every later command in this process)")

    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.globals.update(
        cwd=lambda: os.path.dirname(path), include=include,
        include_all=lambda p, indices="": include(p, indices, single=False), include_text=include_text,
        find_path=lambda p: _find_paths(str(p), path, state, glob_ok=False)[0],
        find_paths=lambda p: _find_paths(str(p), path, state), path_exists=path_exists,
        add_to_path=add_to_path, setenv=setenv)
    try:
        out = []
        size = 0
        for chunk in env.from_string(text).generate(state.variables):     # bounded like a file read
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise SpecError(f"renders to more than {MAX_FILE_BYTES // 2**20} MiB", file=path,
                                expected="a template of a file's size")
            out.append(chunk)
        return "".join(out)
    except jinja2.TemplateSyntaxError as exc:
        raise SpecError(f"line {exc.lineno}: Jinja2 syntax error: {exc.message}", file=path) from None
    except SpecError:
        raise
    except (jinja2.TemplateError, FileNotFoundError, TypeError, ValueError, ArithmeticError) as exc:
        line = _template_line(exc)
        msg = str(exc)
        if isinstance(exc, jinja2.UndefinedError):
            m = re.search(r"'(\w+)' is undefined", msg)
            if m:
                msg += f"; set it with --var {m.group(1)}=VALUE"
        raise SpecError(f"{'line ' + str(line) + ': ' if line else ''}Jinja2: {msg}", file=path) from None


def _template_line(exc: BaseException) -> int | None:
    """The template line Jinja reports in its rewritten traceback (frames named <template>)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == "<template>":
            line = frame.lineno
    return line


def load_v4_file(path: str | Path, state: V4State | None = None, *, variables: dict | None = None) -> Any:
    """One v4 file, rendered if it has Jinja markup, parsed with tags and includes resolved."""
    state = state or V4State(variables)
    file = os.path.realpath(os.path.abspath(str(path)))
    shown = str(path)
    if file in state.stack:
        raise SpecError("includes itself (through " + " -> ".join(state.stack) + ")", file=shown)
    text = read_text(path, what="YAML file")
    state.stack.append(file)
    state.files.append(file)
    try:
        included: dict = {}
        rendered = _render(file, text, state, included) if is_jinja(file, text) else text
        after = " (after Jinja2 rendering)" if rendered is not text else ""
        state.rendered = state.rendered or rendered is not text
        try:
            check_shape(rendered, shown)
            loader = _Loader(rendered)
            loader.included, loader.here, loader.v4state = included, os.path.dirname(file), state
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"line {mark.line + 1}{after}: " if mark else ""
            problem = " ".join(p for p in (exc.context, exc.problem) if p)
            raise SpecError(f"{where}{problem}", file=shown) from None
        except yaml.YAMLError as exc:
            raise SpecError(f"YAML error{after}: {exc}", file=shown) from None
        return _merge_keys(data)
    finally:
        state.stack.pop()


def _merge_keys(x: Any) -> Any:
    """Accelergy's ``<<<`` (recursive merge; lists concatenated) and ``<<`` with a plain mapping (merge_check)."""
    if isinstance(x, list):
        for i, v in enumerate(x):
            x[i] = _merge_keys(v)
        return x
    if not isinstance(x, dict):
        return x
    for k in list(x):
        x[k] = _merge_keys(x[k])
    for k in ("<<<", "<<"):
        if k in x:
            src = x.pop(k)
            for part in src if isinstance(src, list) else [src]:
                if isinstance(part, dict):
                    _merge_into(x, part, recursive=k == "<<<")
    return x


def _merge_into(into: dict, src: dict, *, recursive: bool) -> None:
    for k, v in src.items():
        if k not in into:
            into[k] = v
        elif recursive and isinstance(into[k], dict) and isinstance(v, dict):
            _merge_into(into[k], v, recursive=True)
        elif recursive and isinstance(into[k], list) and isinstance(v, list):
            into[k] = into[k] + v
