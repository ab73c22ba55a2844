"""A user's network given as a path: an ONNX model, or a folder or list of Timeloop problem files.

``get_network`` sends anything that is not a built-in name here; the
readers load lazily (``onnx`` only for ``.onnx`` files).
"""
from __future__ import annotations

from pathlib import Path

from coopt.errors import SpecError

ONNX_SUFFIXES = (".onnx",)
YAML_SUFFIXES = (".yaml", ".yml")


def _resolve(name: str, base_dir: str | None) -> Path:
    p = Path(str(name)).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def is_network_path(name, base_dir: str | None = None) -> bool:
    """Whether ``name`` means a file or folder (it exists, or looks like a path)."""
    text = str(name)
    p = _resolve(text, base_dir)
    return p.exists() or "/" in text or text.lower().endswith(ONNX_SUFFIXES + YAML_SUFFIXES)


def parse_input_shapes(items) -> dict[str, tuple[int, ...]]:
    """``["x=1x3x224x224", ...]`` (``--input-shape``) or a mapping -> ``{input: dims}``."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, dict) else [_split(i) for i in items]
    out = {}
    for name, dims in pairs:
        text = str(dims).strip().lower()
        try:
            shape = tuple(int(d) for d in text.replace("*", "x").split("x"))
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise SpecError(f"shape {dims!r} of input {name!r}", key="--input-shape",
                            expected="positive sizes like NAME=1x3x224x224")
        out[str(name).strip()] = shape
    return out


def _split(item: str) -> tuple[str, str]:
    if "=" not in str(item):
        raise SpecError(f"{item!r}", key="--input-shape", expected="NAME=1x3x224x224")
    name, dims = str(item).split("=", 1)
    return name.strip(), dims


def load_user_network(name, batch: int = 1, *, input_shapes: dict | None = None, base_dir: str | None = None):
    """The Network in the file or folder ``name``."""
    p = _resolve(name, base_dir)
    if not p.exists():
        raise SpecError("no such file or folder", file=str(p), key="network",
                        expected="an .onnx model, a folder of Timeloop problem files, or a YAML list of them")
    if p.is_file() and p.suffix.lower() not in YAML_SUFFIXES:      # .onnx, or any other non-YAML file
        from coopt.workload.onnx_network import onnx_network
        return onnx_network(p, batch=batch, input_shapes=input_shapes or {})
    if input_shapes:
        raise SpecError(f"input shapes {sorted(input_shapes)} given for problem files", file=str(p),
                        key="--input-shape", expected="an ONNX model as --network")
    from coopt.workload.problem_files import problem_files_network
    return problem_files_network(p, batch=batch)
