"""Read and check a problem's ``densities`` and a ``sparse_optimizations`` block.

The keys are Timeloop's (src/model/sparse-optimization-parser.cpp,
src/workload/density-models/density-distribution-factory.cpp):
``densities: {Tensor: {distribution, density}}`` under ``problem.instance``,
and ``sparse_optimizations: {targets: [{name, action_optimization: [{type,
options: [{target, condition_on}]} | {type, target, condition_on}],
representation_format: {data_spaces: [{name, ranks}]}, compute_optimization:
[{type}]}]}``.  A mistake (a density outside 0-1, a level or tensor that does
not exist, a format with more ranks than its tensor has dimensions) raises
``SpecError`` naming file and key; a valid input the engine does not model
yet raises ``SparseUnsupported`` -- never a silently wrong number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coopt.errors import CooptError, SpecError
from coopt.workload.densities import checked_densities, split_densities

ACTION_TYPES = ("gating", "skipping", "spatial_skipping")
FORMATS = ("UOP", "CP", "RLE", "B", "UB")
COMPUTE_TYPES = {"gating": "gate_on_zero_operand", "gate_on_zero_operand": "gate_on_zero_operand",
                 "skipping": "skip_on_not_aligned_operands",
                 "skip_on_not_aligned_operands": "skip_on_not_aligned_operands"}


class SparseUnsupported(CooptError):
    """Valid Sparseloop input whose accounting coopt does not reproduce exactly yet."""

    def format(self) -> str:
        text = super().format()
        return text if self.message.startswith("not modelled yet") else text.replace(
            self.message, f"not modelled yet: {self.message}", 1)


@dataclass(frozen=True)
class Density:
    distribution: str
    density: float


@dataclass(frozen=True)
class ActionOpt:
    """One storage action optimisation: ``kind`` reads of ``target`` at ``level`` when ``condition_on`` is empty."""

    level: str
    kind: str                     # gating | skipping | spatial_skipping
    target: str
    condition_on: tuple[str, ...]


@dataclass(frozen=True)
class FormatRank:
    """One rank of a tensor's representation format (outermost rank first, as written)."""

    format: str                          # UOP, CP, RLE, B, UB
    metadata_word_bits: int | None = None    # None: the level's metadata_datawidth
    payload_word_bits: int | None = None
    flattened: tuple[str, ...] | None = None   # flattened_rankIDs: dimensions this rank may hold


@dataclass(frozen=True)
class LevelMetadata:
    """A storage level's metadata attributes (Timeloop's BufferLevel::ParseSpecs)."""

    word_bits: int = 0                   # metadata_datawidth / metadata_word_bits
    storage_width: int = 0               # metadata_storage_width / metadata_width, bits per access
    storage_depth: int | None = None     # metadata_storage_depth / metadata_depth
    decompression_supported: bool = False    # may decompress what a compressed parent sends
    compression_supported: bool = False      # may compress updates for a compressed parent


@dataclass(frozen=True)
class SparseSpec:
    densities: dict = field(default_factory=dict)          # tensor -> Density
    actions: tuple[ActionOpt, ...] = ()
    formats: dict = field(default_factory=dict)            # (level, tensor) -> tuple of FormatRank
    compute: frozenset = frozenset()                       # gate_on_zero_operand / skip_on_not_aligned_operands
    metadata: dict = field(default_factory=dict)           # level -> LevelMetadata

    def density(self, tensor: str) -> float:
        d = self.densities.get(tensor)
        return 1.0 if d is None else d.density


def _fail(msg, file, key, expected=None):
    return SpecError(msg, file=file, key=key, expected=expected)


def _list(v, file, key, what):
    if not isinstance(v, list):
        raise _fail(f"is {v!r}", file, key, what)
    return v


def _tensor(v, tensors, file, key):
    if v not in tensors:
        raise _fail(f"{v!r} is not a tensor of the problem", file, key, f"one of {list(tensors)}")
    return v


def parse_densities(node: Any, tensors: tuple[str, ...], *, file: str | None = None,
                    key: str = "problem.instance.densities") -> dict:
    """``{tensor: Density}`` from Timeloop's ``densities`` block (a number means fixed-structured)."""
    return {name: Density(dist, dens)
            for name, (dist, dens) in checked_densities(node, tensors, file=file, key=key).items()}


def _action(opt, level, kind, tensors, file, key) -> ActionOpt:
    if not isinstance(opt, dict) or "target" not in opt or "condition_on" not in opt:
        raise _fail(f"is {opt!r}", file, key, "{target: tensor, condition_on: [tensors]}")
    target = _tensor(opt["target"], tensors, file, f"{key}.target")
    cond = _list(opt["condition_on"], file, f"{key}.condition_on", "a list of tensors")
    return ActionOpt(level, kind, target,
                     tuple(_tensor(c, tensors, file, f"{key}.condition_on[{i}]") for i, c in enumerate(cond)))


def _actions(node, level, tensors, file, key) -> list[ActionOpt]:
    out = []
    for i, a in enumerate(_list(node, file, key, "a list of {type, options}")):
        k = f"{key}[{i}]"
        if not isinstance(a, dict) or a.get("type") not in ACTION_TYPES:
            raise _fail(f"type {a.get('type') if isinstance(a, dict) else a!r}", file, f"{k}.type",
                        f"one of {list(ACTION_TYPES)}")
        if "options" in a:
            opts = _list(a["options"], file, f"{k}.options", "a list of {target, condition_on}")
            if len(opts) != 1:
                raise SparseUnsupported(f"{len(opts)} options to choose from", file=file, key=f"{k}.options",
                                        expected="exactly one option (Sparseloop's choice among options "
                                                 "is not modelled)")
            out.append(_action(opts[0], level, a["type"], tensors, file, f"{k}.options[0]"))
        else:
            out.append(_action(a, level, a["type"], tensors, file, k))
    return out


def _formats(node, level, problem, file, key) -> dict:
    tensors = [ds.name for ds in problem.dataspaces]
    spaces = node.get("data_spaces") if isinstance(node, dict) else None
    out = {}
    for i, ds in enumerate(_list(spaces, file, f"{key}.data_spaces", "a list of {name, ranks}")):
        k = f"{key}.data_spaces[{i}]"
        if not isinstance(ds, dict):
            raise _fail(f"is {ds!r}", file, k, "{name, ranks}")
        name = _tensor(ds.get("name"), tensors, file, f"{k}.name")
        ranks = _list(ds.get("ranks"), file, f"{k}.ranks", "a list of {format}")
        if ds.get("rank_application_order", "outer_to_inner") != "outer_to_inner" or "compression_rate" in ds:
            raise SparseUnsupported("rank_application_order inner_to_outer or compression_rate", file=file, key=k,
                                    expected="the default outer-to-inner rank order without a compression rate")
        fmts = []
        for j, r in enumerate(ranks):
            f = r.get("format") if isinstance(r, dict) else None
            if f not in FORMATS:
                raise _fail(f"format {f!r}", file, f"{k}.ranks[{j}].format", f"one of {list(FORMATS)}")
            flat = None
            for group in r.get("flattened_rankIDs", []) or []:
                for dim in group if isinstance(group, list) else [group]:
                    if dim not in problem.dims:
                        raise _fail(f"rank {dim!r} does not exist", file, f"{k}.ranks[{j}].flattened_rankIDs",
                                    f"dimensions of the problem {list(problem.dims)}")
                    flat = (flat or ()) + (dim,)
            bits = {}
            for b in ("metadata_word_bits", "payload_word_bits"):
                v = r.get(b)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                    raise _fail(f"{b} {v!r}", file, f"{k}.ranks[{j}].{b}", "a whole number of bits")
                bits[b] = v
            fmts.append(FormatRank(f, bits["metadata_word_bits"], bits["payload_word_bits"], flat))
        compressed = [f.format in ("CP", "RLE", "B") for f in fmts]      # outermost first
        if any(compressed[i] and not compressed[j] for i in range(len(fmts)) for j in range(i + 1, len(fmts))):
            raise _fail(f"{[f.format for f in fmts]}: a compressed rank above an uncompressed one", file,
                        f"{k}.ranks", "uncompressed ranks (UOP, UB) above compressed ones, as Timeloop requires")
        out[(level, name)] = tuple(fmts)
    return out


def _leaf(name: str) -> str:
    return name.split("[", 1)[0]


def level_metadata(arch_node: Any, names: list[str]) -> dict:
    """``{level: LevelMetadata}`` from the architecture as written (any Timeloop tree form)."""
    out = {}

    def walk(node):
        if isinstance(node, dict):
            name, attrs = node.get("name"), node.get("attributes")
            if isinstance(name, str) and _leaf(name) in names and isinstance(attrs, dict):
                def pick(*keys):
                    for key in keys:
                        v = attrs.get(key)
                        if isinstance(v, int) and not isinstance(v, bool):
                            return v
                    return None
                out[_leaf(name)] = LevelMetadata(pick("metadata_datawidth", "metadata_word_bits") or 0,
                                                 pick("metadata_storage_width", "metadata_width") or 0,
                                                 pick("metadata_storage_depth", "metadata_depth"),
                                                 attrs.get("decompression_supported") is True,
                                                 attrs.get("compression_supported") is True)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(arch_node)
    return out


def sparse_spec_from_yaml(problem, arch, densities: Any, sparse_node: Any, *, arch_node: Any = None,
                          problem_file: str | None = None, sparse_file: str | None = None) -> SparseSpec:
    """Check densities and ``sparse_optimizations`` against ``problem`` and ``arch``."""
    tensors = tuple(ds.name for ds in problem.dataspaces)
    dens = parse_densities(densities, tensors, file=problem_file)
    actions, formats, compute = [], {}, set()
    if sparse_node not in (None, {}):
        key = "sparse_optimizations"
        if not isinstance(sparse_node, dict):
            raise _fail(f"is {sparse_node!r}", sparse_file, key, "a mapping with 'targets'")
        levels = [lvl.name for lvl in arch.storage]
        for i, t in enumerate(_list(sparse_node.get("targets", []), sparse_file, f"{key}.targets",
                                    "a list of {name, ...}")):
            k = f"{key}.targets[{i}]"
            if not isinstance(t, dict):
                raise _fail(f"is {t!r}", sparse_file, k, "{name, action_optimization, ...}")
            name = t.get("name")
            is_compute = name == arch.arithmetic.name
            if name not in levels and not is_compute:
                raise _fail(f"unknown level {name!r}", sparse_file, f"{k}.name",
                            f"one of {levels + [arch.arithmetic.name]}")
            for opt_key in t:
                if opt_key not in ("name", "action_optimization", "representation_format", "compute_optimization"):
                    raise _fail(f"unknown key {opt_key!r}", sparse_file, f"{k}.{opt_key}",
                                "action_optimization, representation_format or compute_optimization")
            if "action_optimization" in t:
                actions += _actions(t["action_optimization"], name, tensors, sparse_file, f"{k}.action_optimization")
            if "representation_format" in t:
                formats.update(_formats(t["representation_format"], name, problem, sparse_file,
                                        f"{k}.representation_format"))
            if "compute_optimization" in t:
                for j, c in enumerate(_list(t["compute_optimization"], sparse_file, f"{k}.compute_optimization",
                                            "a list of {type}")):
                    ctype = c.get("type") if isinstance(c, dict) else None
                    if ctype not in COMPUTE_TYPES:
                        raise _fail(f"type {ctype!r}", sparse_file, f"{k}.compute_optimization[{j}].type",
                                    f"one of {list(COMPUTE_TYPES)}")
                    compute.add(COMPUTE_TYPES[ctype])
    meta = level_metadata(arch_node, [lvl.name for lvl in arch.storage]) if formats else {}
    return SparseSpec(dens, tuple(actions), formats, frozenset(compute), meta)


def is_sparse(spec: SparseSpec) -> bool:
    """True when anything differs from the dense model (a density < 1 or any optimisation)."""
    return bool(any(d.density < 1 for d in spec.densities.values()) or spec.actions or spec.formats
                or spec.compute)


def split_problem_node(node: Any) -> tuple[Any, Any]:
    """``(problem node without densities, densities)``: the dense reader never sees a density."""
    rest, dens, _ = split_densities(node)
    return rest, dens
    if isinstance(node.get("instance"), dict) and "densities" in node["instance"]:
        inst = dict(node["instance"])
        dens = inst.pop("densities")
        return {**node, "instance": inst}, dens
    if "densities" in node and "instance" not in node:
        rest = dict(node)
        return rest, rest.pop("densities")
    return node, None
