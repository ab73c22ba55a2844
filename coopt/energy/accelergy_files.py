"""Accelergy-format files (ERT, ART, compound component classes) for an exported design.

Why: an exported design must run in real Timeloop with exactly the energies
and areas coopt used, so coopt's tables are written as Accelergy 0.4 would
write them -- one table per component, named by its full Accelergy path
(``system_top_level.shared_glb[1..1]``), which Timeloop reduces to the leaf
as ``coopt.energy.accelergy_io`` does -- and, for runs that let Accelergy
estimate instead, the compound classes it needs next to the architecture.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources

import yaml

from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.energy import aladdin_table
from coopt.energy.accelergy_io import leaf_name
from coopt.energy.tables import EnergyTables

__all__ = ["PRIMITIVES", "art_yaml", "component_path", "components_yaml", "dumps_accelergy", "ert_yaml",
           "with_numeric_version",
           "shipped_classes_needed", "unknown_classes", "with_required_actions", "write_energy_files"]

VERSION = "0.4"            # ERT/ART: as Accelergy writes them (a string); Timeloop reads them
COMPONENTS_VERSION = 0.4   # components.yaml: a number, like arch.yaml's 0.3 (Accelergy compares the two)
# Classes Accelergy knows without a compound definition (its plug-ins' primitives) or that
# need none (dummy_storage is Timeloop's zero-cost placeholder); Aladdin_table's names (regfile, intmac, ...)
# are primitives too wherever the classes written do not define them.
PRIMITIVES = frozenset({"DRAM", "SRAM", "dummy_storage", "intadder", "aladdin_adder", "aladdin_register",
                        "aladdin_comparator", "aladdin_multiplier", "aladdin_counter", *aladdin_table.CLASSES})
_ACTION_ORDER = ("compute", "read", "write", "update", "leak")


def _components(arch: Architecture) -> list[StorageLevel | ArithmeticLevel]:
    """Outermost first, as Accelergy lists them (DRAM ... MACs)."""
    return [*reversed(arch.storage), arch.arithmetic]


def component_path(arch: Architecture, comp: StorageLevel | ArithmeticLevel) -> str:
    """The component's Accelergy name; built as ``<arch>.<name>[1..instances]`` when unknown."""
    if comp.path and leaf_name(comp.path) == comp.name:
        return comp.path
    return f"{arch.name or 'system'}.{comp.name}[1..{comp.instances}]"


def _names(arch: Architecture, leaves) -> list[tuple[str, str]]:
    """(leaf, table name) for every leaf of ``leaves``: the arch's components in order, then extras."""
    out, seen = [], set()
    for comp in _components(arch):
        if comp.name in leaves:
            out.append((comp.name, component_path(arch, comp)))
            seen.add(comp.name)
    out += [(leaf, f"{arch.name or 'system'}.{leaf}") for leaf in leaves if leaf not in seen]
    return out


def _ordered(actions: dict[str, float]) -> list[tuple[str, float]]:
    rank = {a: i for i, a in enumerate(_ACTION_ORDER)}
    return sorted(actions.items(), key=lambda kv: rank.get(kv[0], len(rank)))


def ert_yaml(arch: Architecture, tables: EnergyTables) -> dict:
    """``{"ERT": {version, tables}}``: pJ per action, one entry per action (read back exactly)."""
    out = [{"name": name,
            "actions": [{"name": a, "arguments": {}, "energy": float(e)} for a, e in _ordered(tables.ert[leaf])]}
           for leaf, name in _names(arch, tables.ert)]
    return {"ERT": {"version": VERSION, "tables": out}}


def art_yaml(arch: Architecture, tables: EnergyTables) -> dict:
    """``{"ART": {version, tables}}``: um^2 per instance."""
    out = [{"name": name, "area": float(tables.art[leaf])} for leaf, name in _names(arch, tables.art)]
    return {"ART": {"version": VERSION, "tables": out}}


@lru_cache(maxsize=1)
def _library() -> tuple[dict, ...]:
    text = resources.files("coopt.energy").joinpath("data/compound_components.yaml").read_text("utf-8")
    return tuple(yaml.safe_load(text)["compound_components"]["classes"])


def _closure(classes: set[str], library: tuple[dict, ...] | None = None) -> set[str]:
    """The classes plus every library class their subcomponents use, transitively."""
    lib = {c["name"]: c for c in (library if library is not None else _library())}
    todo, found = [c for c in classes if c in lib], set()
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        todo += [s.get("class") for s in lib[name].get("subcomponents", []) if s.get("class") in lib]
    return found


def _used(arch: Architecture) -> set[str]:
    return {c.cls for c in _components(arch)}


def _check_dram_types(arch: Architecture) -> None:
    """Accelergy's DRAM model knows a fixed set of types; anything else would crash it later."""
    from coopt.energy.library import DRAM_PJ_PER_BIT
    from coopt.errors import SpecError
    for level in arch.storage:
        if level.cls.upper() == "DRAM":
            kind = str((level.attributes or {}).get("type", "LPDDR4"))
            if kind not in DRAM_PJ_PER_BIT:
                raise SpecError(f"DRAM type {kind!r} is not one Accelergy's DRAM model knows",
                                key=f"architecture.{level.name}.attributes.type",
                                expected=f"one of {sorted(DRAM_PJ_PER_BIT)}")


def _own(user_classes) -> list[dict]:
    own = []
    for c in user_classes:
        node = c[0] if isinstance(c, tuple) else c
        cc = node.get("compound_components", node) if isinstance(node, dict) else {}
        own += cc.get("classes", []) if isinstance(cc, dict) and "classes" in cc else [node]
    return own


def _shipped_for(own: list[dict], given: bool) -> tuple[dict, ...]:
    """The shipped classes the estimate used next to ``own``: those the user did not define, and, when the
    input brought classes (``given``), not those named like a primitive (``Library.as_accelergy_sees_it``:
    Accelergy takes the primitive there, and so did coopt)."""
    names = {c.get("name") for c in own}
    return tuple(c for c in _library()
                 if c["name"] not in names and not (given and c["name"] in PRIMITIVES))


def components_yaml(arch: Architecture, user_classes=()) -> dict:
    """``{"compound_components": ...}`` with every compound class ``arch`` needs (library order).

    ``user_classes``: the design's own classes (dicts, or ``(node, file)`` as ``design.component_classes``
    returns), which replace shipped classes of the same name -- the ones its energies were computed with.
    With any, a shipped class named like a primitive (regfile, intmac) is not written: Accelergy then takes
    the primitive, as coopt's estimate did (``Library.as_accelergy_sees_it``)."""
    _check_dram_types(arch)
    own = _own(user_classes)
    library = tuple(own) + _shipped_for(own, bool(own))
    need = _closure(_used(arch), library)
    return {"compound_components": {"version": COMPONENTS_VERSION,
                                     "classes": [copy.deepcopy(c) for c in library if c["name"] in need]}}


def shipped_classes_needed(arch: Architecture, user_classes=()) -> list[dict]:
    """The shipped classes (copies) ``arch`` uses that ``user_classes`` does not define, transitively: what an
    export of the user's own files must add so that real Accelergy accepts it and estimates what coopt did
    (names of primitives are left to the primitives when the user brings classes)."""
    own = _own(user_classes)
    shipped = _shipped_for(own, bool(own))
    need = _closure(_used(arch) | {s.get("class") for c in own for s in c.get("subcomponents") or []
                                   if isinstance(s, dict)}, (*own, *shipped))
    return [copy.deepcopy(c) for c in shipped if c["name"] in need]


def with_numeric_version(arch_yaml: dict) -> dict:
    """``arch_yaml`` with its ``architecture.version`` a number, as components.yaml's (``COMPONENTS_VERSION``).

    Why: Accelergy 0.4 compares the two versions; a v4 spec's processed form writes ``'0.4'`` as a string,
    and Accelergy then stops with "'<' not supported between ... str and float"."""
    arch = arch_yaml.get("architecture")
    version = arch.get("version") if isinstance(arch, dict) else None
    if isinstance(version, str):
        try:
            return {**arch_yaml, "architecture": {**arch, "version": float(version)}}
        except ValueError:
            pass
    return arch_yaml


STORAGE_ACTIONS = ("update", "read", "write", "leak")     # what Timeloop asks of a buffer
COMPUTE_ACTIONS = ("compute", "leak")                    # ... and of an arithmetic unit


def with_required_actions(arch_yaml: dict, arch: Architecture, compound=None) -> dict:
    """A copy of an architecture tree in which every component of a primitive class (DRAM, SRAM, ...)
    lists ``required_actions``, as Timeloop's own front end writes them.  ``compound``: the names of the
    classes written next to it (default: the shipped ones), which are not primitives there.

    Why: Accelergy 0.4 gives a primitive without a class definition only the actions named there; without
    them it leaves DRAM out of its ERT and Timeloop silently falls back to its internal DRAM model
    (12.5 pJ/bit instead of the plug-in's, e.g. 8 pJ/bit for LPDDR4).  Compound classes define their own
    actions and dummy_storage costs nothing, so they are left as they are.
    """
    arith = arch.arithmetic.name
    compound = frozenset(c["name"] for c in _library()) if compound is None else frozenset(compound)

    def walk(node):
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        cls = node.get("class")
        if (isinstance(cls, str) and cls in PRIMITIVES and cls not in compound and cls != "dummy_storage"
                and "name" in node and "required_actions" not in node):
            leaf = leaf_name(str(node["name"]))
            out["required_actions"] = list(COMPUTE_ACTIONS if leaf == arith else STORAGE_ACTIONS)
        return out

    return walk(copy.deepcopy(arch_yaml))


def unknown_classes(arch: Architecture) -> list[str]:
    """Classes of ``arch`` that are neither in the shipped library nor Accelergy primitives."""
    lib = {c["name"] for c in _library()}
    return sorted(c for c in _used(arch) if c not in lib and c not in PRIMITIVES)


def write_energy_files(arch: Architecture, estimation, out, *, force: bool = False) -> list:
    """``coopt energy --out``: ERT.yaml, ART.yaml and energy_summary.yaml in ``out``, as Accelergy names them.

    An existing non-empty folder or a link is written into only with ``force``; write errors are one line.
    """
    from coopt.energy.accelergy import summary_yaml
    from coopt.outputs import output_dir, write_text
    from coopt.yamlio import dumps_yaml
    out = output_dir(out, force=force)
    files = {"ERT.yaml": ert_yaml(arch, estimation.tables), "ART.yaml": art_yaml(arch, estimation.tables),
             "energy_summary.yaml": summary_yaml(estimation)}
    for name, node in files.items():
        write_text(out / name, dumps_yaml(node))
    return [out / name for name in files]


class _Quoted(str):
    """A string Accelergy must read as a literal, not evaluate as an expression."""


class _AccelergyDumper(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


_AccelergyDumper.add_representer(_Quoted, lambda d, x: d.represent_scalar("tag:yaml.org,2002:str", str(x),
                                                                           style='"'))
_AccelergyDumper.add_representer(tuple, lambda d, x: d.represent_list(list(x)))


def _is_literal(text: str, names: frozenset = frozenset()) -> bool:
    """True for words Accelergy 0.4 would fail to evaluate (``LPDDR4``, ``22nm``, ``must_specify``).

    A bare name that is an attribute in scope (``real_depth: depth``, ``width: memory_width``) is an
    expression: Accelergy binds it to that attribute's value, and quoting it would make it the string.
    """
    import ast
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return True
    return (isinstance(tree.body, ast.Name) and tree.body.id not in ("True", "False")
            and tree.body.id not in names)


def _quote_attributes(node, in_attributes=False, names: frozenset = frozenset()):
    """Quote literal strings under ``attributes``; the names in scope are the enclosing class's
    (or architecture node's) own attributes, which its subcomponents' attributes may refer to."""
    if isinstance(node, dict):
        if isinstance(node.get("attributes"), dict) and not in_attributes:
            names = names | frozenset(map(str, node["attributes"]))
        return {k: _quote_attributes(v, in_attributes or k == "attributes", names) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_quote_attributes(v, in_attributes, names) for v in node]
    if in_attributes and isinstance(node, str) and _is_literal(node, names):
        return _Quoted(node)
    return node


def dumps_accelergy(node) -> str:
    """YAML for Accelergy 0.4: literal strings in ``attributes`` double-quoted, expressions left bare."""
    return yaml.dump(_quote_attributes(node), Dumper=_AccelergyDumper, sort_keys=False,
                     default_flow_style=False, allow_unicode=True, width=100)
