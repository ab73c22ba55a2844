"""YAML reading and writing for every coopt input file.

Why a module of its own: Timeloop/Accelergy inputs carry things plain
``yaml.safe_load`` gets wrong or rejects -- timeloopfe's ``!Container`` /
``!Component`` tags, YAML 1.2 floats such as ``1e-9`` (a *string* under
PyYAML's YAML 1.1 rules) -- and users need errors that name the file and
line instead of a PyYAML traceback.
"""
from __future__ import annotations

import errno
import re
import stat
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from coopt.errors import SpecError

__all__ = ["TolerantLoader", "load_yaml", "loads_yaml", "load_merged", "dump_yaml", "dumps_yaml", "read_text",
           "check_shape", "MAX_FILE_BYTES", "MAX_DEPTH", "MAX_NODES"]

# Limits on what an input file may be: far above any real Timeloop/Accelergy/coopt file, far below what
# makes a parser hang or run out of memory (alias bombs, 20,000-deep nesting, /dev/zero).
MAX_FILE_BYTES = 16 * 2**20
MAX_DEPTH = 200
MAX_NODES = 1_000_000          # after expanding every *alias


def read_text(path: str | Path, *, what: str = "file") -> str:
    """A user's text file, read safely: bounded size, UTF-8 only, every OS error one SpecError."""
    file = str(path)
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SpecError("symbolic link loop (the link points back to itself)", file=file) from None
        if exc.errno == errno.ENOENT:
            if p.is_symlink():
                raise SpecError(f"dangling symbolic link (to {p.readlink()})", file=file) from None
            raise SpecError(f"{what} not found", file=file) from None
        raise SpecError(f"cannot read {what}: {exc.strerror or exc}", file=file) from None
    if stat.S_ISDIR(st.st_mode):
        raise SpecError("is a directory", file=file, expected=f"a {what}")
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):     # opening a FIFO waits for a writer
        raise SpecError("is a named pipe or socket, not a file", file=file, expected=f"a {what}")
    try:
        with open(p, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read {what}: {exc.strerror or exc}", file=file) from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(f"larger than {MAX_FILE_BYTES // 2**20} MiB", file=file, expected=f"a {what} of text")
    if b"\0" in data:
        raise SpecError("binary content (NUL bytes)", file=file, expected=f"a {what} of UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=file,
                        expected=f"a {what} of UTF-8 text") from None


class TolerantLoader(yaml.SafeLoader):
    """SafeLoader that ignores unknown ``!Tags``, reads ``1e-9`` as a float, rejects duplicate keys."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            "while reading a mapping", node.start_mark,
                            f"found duplicate key {key!r}", key_node.start_mark)
                    seen[key] = True
                except TypeError:  # unhashable key: let PyYAML report it
                    pass
        return super().construct_mapping(node, deep=deep)


def _construct_tagged(loader: TolerantLoader, tag_suffix: str, node: yaml.Node) -> Any:
    """Build a ``!Tag``-ged node as if it had no tag (tags carry no meaning for coopt)."""
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))
    plain = yaml.ScalarNode(tag, node.value, node.start_mark, node.end_mark, node.style)
    return loader.construct_object(plain, deep=True)


TolerantLoader.add_multi_constructor("!", _construct_tagged)
# YAML 1.2 core-schema floats: "1e-9", "3E5" (PyYAML 1.1 rules need a dot).
TolerantLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def check_shape(text: str, file: str | None) -> None:
    """Refuse nesting deeper than MAX_DEPTH and documents over MAX_NODES once aliases are expanded.

    One pass over the parser's events (PyYAML's parser is iterative, its composer recursive):
    each collection's expanded size is summed as it closes, an alias counts its anchor's size.
    """
    sizes: dict[str, int] = {}
    stack: list[list] = []             # [anchor, expanded size so far] per open collection
    total = 0

    def add(n: int, mark) -> None:
        nonlocal total
        if stack:
            stack[-1][1] += n
        else:
            total += n
        if n > MAX_NODES or total > MAX_NODES or (stack and stack[-1][1] > MAX_NODES):
            raise SpecError(f"line {mark.line + 1}: more than {MAX_NODES:,} values once aliases (*name) are "
                            "expanded", file=file, expected="a document without alias bombs")

    for ev in yaml.parse(text, Loader=TolerantLoader):
        if isinstance(ev, _OPEN):
            if len(stack) >= MAX_DEPTH:
                raise SpecError(f"line {ev.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep",
                                file=file, expected=f"at most {MAX_DEPTH} levels of nesting")
            stack.append([ev.anchor, 1])
        elif isinstance(ev, _CLOSE):
            anchor, n = stack.pop()
            if anchor:
                sizes[anchor] = n
            add(n, ev.start_mark)
        elif isinstance(ev, yaml.ScalarEvent):
            if ev.anchor:
                sizes[ev.anchor] = 1
            add(1, ev.start_mark)
        elif isinstance(ev, yaml.AliasEvent):
            add(sizes.get(ev.anchor, 1), ev.start_mark)


def loads_yaml(text: str, *, file: str | None = None) -> Any:
    """Parse YAML text with :class:`TolerantLoader`; syntax errors become SpecError with a line."""
    try:
        check_shape(text, file)
        return yaml.load(text, Loader=TolerantLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError(f"not valid YAML at {where}{problem}", file=file) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", file=file) from None


def load_yaml(path: str | Path) -> dict:
    """Read one YAML file whose top level must be a mapping."""
    file = str(path)
    data = loads_yaml(read_text(path, what="YAML file"), file=file)
    if data is None:
        raise SpecError("file is empty", file=file, expected="a YAML mapping at the top level")
    if not isinstance(data, dict):
        raise SpecError(f"top level is a {type(data).__name__}", file=file,
                        expected="a YAML mapping (key: value) at the top level")
    return data


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (list, dict)) and not value)


def _extend(merged: dict, key: str, value: Any, inner: str) -> bool:
    a, b = merged[key], value
    if not (isinstance(a, dict) and isinstance(b, dict) and isinstance(a.get(inner), list)
            and isinstance(b.get(inner), list)):
        return False
    merged[key] = {**a, **{k: v for k, v in b.items() if k not in a}, inner: [*a[inner], *b[inner]]}
    return True


def load_merged(paths: Iterable[str | Path], read=None, combine: Mapping[str, str] | None = None
                ) -> tuple[dict, dict[str, str]]:
    """Merge the top-level keys of several files (Timeloop style); return (merged, {key: file}).

    ``read`` reads one file (default :func:`load_yaml`).  A key given empty in one file (timeloopfe's
    processed inputs carry ``mapping: []``) gives way to the file that fills it.  ``combine`` names keys
    whose list (``{"compound_components": "classes"}``) several files may each extend, as Accelergy and
    timeloopfe read one component class file after another.
    """
    merged: dict = {}
    origin: dict[str, str] = {}
    for path in paths:
        data = (read or load_yaml)(path)
        for key, value in data.items():
            if key in origin and _empty(value):
                continue
            inner = (combine or {}).get(key)
            if key in origin and inner and _extend(merged, key, value, inner):
                continue
            if key in origin and not _empty(merged[key]):
                raise SpecError(f"top-level key '{key}' appears in both {origin[key]} and {path}",
                                file=str(path), key=str(key), expected="each top-level key in one file")
            merged[key] = value
            origin[key] = str(path)
    return merged, origin


class _Dumper(yaml.SafeDumper):
    """SafeDumper that also writes tuples, dict subclasses, Paths and numpy scalars."""

    def ignore_aliases(self, data):  # never emit &anchors: Timeloop's parser dislikes them
        return True


def _represent_other(dumper: _Dumper, data: Any):
    if isinstance(data, Mapping):
        return dumper.represent_dict(dict(data))
    if isinstance(data, str):          # str subclasses (a v4 file's quoted strings)
        return dumper.represent_str(str(data))
    if isinstance(data, list):
        return dumper.represent_list(list(data))
    if isinstance(data, (tuple, set, frozenset)):
        return dumper.represent_list(list(data))
    if isinstance(data, Path):
        return dumper.represent_str(str(data))
    if hasattr(data, "item") and callable(data.item):  # numpy scalar
        return dumper.represent_data(data.item())
    if hasattr(data, "tolist") and callable(data.tolist):  # numpy array
        return dumper.represent_data(data.tolist())
    raise yaml.representer.RepresenterError(f"cannot write a {type(data).__name__} to YAML", data)


_Dumper.add_representer(None, _represent_other)
_Dumper.add_representer(tuple, lambda d, x: d.represent_list(list(x)))


def dumps_yaml(obj: Any) -> str:
    """YAML text for ``obj`` (block style, key order kept)."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


def dump_yaml(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as YAML to ``path`` (parent folders are created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dumps_yaml(obj), encoding="utf-8")
