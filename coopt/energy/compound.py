"""Accelergy compound components: attribute expressions, subcomponents, action expansion.

Why: Accelergy's energy for a buffer or a MAC is not one model call but a tree
of primitive calls described in the user's component classes; to give its
numbers we evaluate those classes as it does:

* a component's attributes are the instance's values, then the class
  defaults, evaluated in order as Python expressions over the attributes
  already known (``widthscale * (depthscale ** (1.56 / 2))``, ``max``,
  ``ceil``, ``log2``, conditionals); a plain word (``LPDDR4``, ``22nm``) is a
  string; ``must_specify`` left unset is an error;
* ``technology`` and ``global_cycle_seconds`` pass down to subcomponents;
  everything else a subcomponent sees is what its entry sets;
* ``name[lo..hi]`` is ``hi - lo + 1`` instances; an action's reference
  ``storage[1..width]`` acts on that many of them;
* an action's energy is the sum over its references of instances x the
  subcomponent action's energy x ``energy_scale`` x ``repeat`` x
  ``action_share``; the area is the sum over subcomponents of instances x
  area x the entry's ``area_scale``.
"""
from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from coopt.energy import bounds
from coopt.energy.primitives import TABLE_PRIMITIVES, estimate_primitive, is_primitive, table_primitive
from coopt.errors import SpecError

INHERITED = ("technology", "global_cycle_seconds")
_FUNCS = {"max": max, "min": min, "ceil": math.ceil, "floor": math.floor, "log2": math.log2,
          "log": math.log, "log10": math.log10, "sqrt": math.sqrt, "exp": math.exp, "abs": abs,
          "round": round, "int": int, "float": float, "pow": pow, "True": True, "False": False}
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call,
            ast.Name, ast.Load, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
            ast.Pow, ast.unaryop, ast.boolop, ast.cmpop)
_RANGE = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<lo>[^\]]*?)\.\.(?P<hi>[^\]]*)\]$")
_INDEX = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<i>[^\].]*)\]$")


class ComponentError(SpecError):
    """A compound component file is malformed (unknown class, unset attribute, bad expression, cycle)."""


class UnknownNames(ComponentError):
    """An expression names attributes not (yet) defined."""

    def __init__(self, *args, names=(), **kw):
        super().__init__(*args, **kw)
        self.names = tuple(names)


@dataclass
class ClassDef:
    name: str
    spec: dict
    file: str
    index: int

    @property
    def key(self) -> str:
        return f"compound_components.classes[{self.index}]({self.name})"


@dataclass
class Result:
    """pJ per action and µm² of one component instance; ``estimators``: (subcomponent path, estimator).

    ``energy_of(action, arguments)``: set for an Aladdin_table primitive, which answers any action name and
    whose energy depends on the action's arguments (``action_latency_cycles``, ``data_delta``, ...)."""

    actions: dict[str, float]
    area: float
    estimators: list[tuple[str, str]] = field(default_factory=list)
    energy_of: Callable[[str, dict], float] | None = None


class _Bounded(ast.NodeTransformer):
    """``a ** b`` and ``a * b`` become calls of the bounded ``_pow``/``_mul`` (``pow`` is ``_pow`` too)."""

    def visit_BinOp(self, node):
        self.generic_visit(node)
        fn = {ast.Pow: "_pow", ast.Mult: "_mul"}.get(type(node.op))
        if fn is None:
            return node
        return ast.copy_location(ast.Call(ast.Name(fn, ast.Load()), [node.left, node.right], []), node)


_BOUNDED = {"_pow": bounds.power, "_mul": bounds.times, "pow": bounds.power}


@lru_cache(maxsize=4096)
def _compiled(text: str):
    """(code, names, bare word?) of an expression; (None, problem, None) when it cannot be one.

    Cached: a study evaluates the same few hundred expressions for every design.
    """
    try:
        tree = bounds.parse(text)
    except SyntaxError:
        return None, "syntax", None
    except bounds.TooBig as e:
        return None, str(e), None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            return None, type(node).__name__, None
    names = frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))
    bounded = ast.fix_missing_locations(_Bounded().visit(tree))
    return compile(bounded, "<attribute>", "eval"), names, isinstance(tree.body, ast.Name)


def evaluate(value, ns: dict, *, file: str | None, key: str):
    """The value of one attribute: a Python expression over ``ns``, or a plain string."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    code, names, bare = _compiled(text)
    if code is None and names == "syntax":
        if re.search(r"[()*/+]|\*\*", text):
            raise ComponentError(f"cannot parse expression {value!r}", file=file, key=key,
                                 expected="a Python arithmetic expression over the attributes")
        return value                                   # '22nm', 'must specify', ...: a string
    if code is None:
        raise ComponentError(f"{names} is not allowed in {value[:200]!r}", file=file, key=key,
                             expected="arithmetic, comparisons, conditionals and math functions")
    unknown = sorted(n for n in names if n not in ns and n not in _FUNCS)
    if unknown:
        if bare:
            return value                               # a bare word (LPDDR4, must_specify): a string
        raise UnknownNames(f"{value!r} uses {', '.join(unknown)}, which is not an attribute here",
                           file=file, key=key, expected=f"names among {sorted(ns)}", names=unknown)
    try:
        result = eval(code, {"__builtins__": {}}, {**_FUNCS, **ns, **_BOUNDED})
    except Exception as e:  # noqa: BLE001 -- arithmetic errors of the user's expression
        raise ComponentError(f"evaluating {value[:200]!r} failed: {str(e)[:200]}", file=file, key=key) from None
    try:
        return bounds.check_value(result)
    except (ArithmeticError, ValueError) as e:
        raise ComponentError(f"{value[:200]!r}: {e}", file=file, key=key) from None


def _count(name: str, ns: dict, *, file, key) -> tuple[str, int]:
    """(base name, number of instances) of ``name``, ``name[i]`` or ``name[lo..hi]``."""
    m = _RANGE.match(name.strip())
    if m:
        lo = evaluate(m["lo"], ns, file=file, key=key)
        hi = evaluate(m["hi"], ns, file=file, key=key)
        try:
            n = int(hi) - int(lo) + 1
        except (TypeError, ValueError):
            raise ComponentError(f"range {name!r} is not numeric", file=file, key=key) from None
        return m["base"], max(n, 0)
    m = _INDEX.match(name.strip())
    if m:
        return m["base"], 1
    return name.strip(), 1


def _number(value, *, file, key) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ComponentError(f"{str(value)[:200]!r} is not a number", file=file, key=key,
                             expected="a number or an expression over numeric attributes") from None
    if not math.isfinite(x):
        raise ComponentError(f"{value!r} is not finite", file=file, key=key, expected="a finite number")
    return x


class Library:
    """Compound classes by name, from one or more Accelergy components files."""

    def __init__(self):
        self.classes: dict[str, ClassDef] = {}
        self._users: set[str] = set()       # classes the user defined (shipped ones may be replaced once)

    def add(self, node: dict, file: str, *, shipped: bool = False) -> None:
        """The classes of one components file; a user's class replaces a shipped one of the same name,
        but a class the user defines twice is an error (which one would win is not obvious)."""
        cc = node.get("compound_components", node) if isinstance(node, dict) else None
        classes = cc.get("classes") if isinstance(cc, dict) else None
        if not isinstance(classes, list):
            raise ComponentError("no class list", file=file, key="compound_components.classes",
                                 expected="compound_components: {version: 0.4, classes: [...]}")
        for i, spec in enumerate(classes):
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise ComponentError("a class needs a name", file=file, key=f"compound_components.classes[{i}]")
            name = spec["name"]
            if not shipped and name in self._users:
                first = self.classes[name]
                raise ComponentError(f"class {name!r} is defined twice (first in {first.file}, "
                                     f"{first.key})", file=file, key=f"compound_components.classes[{i}]",
                                     expected="one definition per class name")
            if not shipped:
                self._users.add(name)
            self.classes[name] = ClassDef(name, spec, file, i)

    def as_accelergy_sees_it(self) -> None:
        """When the input brings classes of its own, a shipped class named like a primitive gives way to it.

        Why: Accelergy 0.4 knows only the classes in the files it is given; any other name is a primitive
        estimated by a plug-in (``regfile``, ``intmac``: Aladdin_table's).  Shipped classes still fill names
        no plug-in knows (``smartbuffer_SRAM``, ``smartbuffer_RF``), which every export then carries.  An input
        without classes (coopt's own templates; also ``classes: []``, though Accelergy would take the
        primitives there too) keeps all shipped ones, as before."""
        if self._users:
            for name in [n for n in self.classes if n not in self._users and is_primitive(n)]:
                del self.classes[name]

    def attributes(self, cdef: ClassDef, given: dict, inherited: dict, where: str) -> dict:
        """The class's attributes for one instance: given values, then defaults, evaluated in order."""
        ns = dict(inherited)
        pending = []
        for k, v in given.items():
            pending.append((k, v, f"{where}.attributes.{k}", None))
        defaults = cdef.spec.get("attributes") or {}
        for k, v in defaults.items():
            if k not in given:
                pending.append((k, v, f"{cdef.key}.attributes.{k}", cdef.file))
        while pending:                                 # in file order; a forward reference waits its turn
            waiting, first_error = [], None
            todo = {k for k, *_ in pending}
            for k, v, key, file in pending:
                if isinstance(v, str) and v.strip() == "must_specify":
                    if k in ns and ns[k] != "must_specify":
                        continue                       # inherited (technology, global_cycle_seconds)
                    raise ComponentError(f"attribute {k!r} of class {cdef.name} must be specified for {where}",
                                         file=cdef.file, key=key, expected=f"a value for {k} on the component")
                if isinstance(v, str) and v.strip() in todo - {k}:
                    waiting.append((k, v, key, file))  # a bare reference to an attribute still to come
                    continue
                try:
                    ns[k] = evaluate(v, ns, file=file, key=key)
                    todo.discard(k)
                except UnknownNames as e:
                    if not set(e.names) & (todo - {k}):
                        raise
                    waiting.append((k, v, key, file))
                    first_error = first_error or e
            if len(waiting) == len(pending):
                k, v, key, file = waiting[0]
                raise first_error or ComponentError(f"attributes refer to each other in a cycle through {k!r}",
                                                    file=file or cdef.file, key=key)
            pending = waiting
        return ns

    def expand(self, cls: str, given: dict, inherited: dict, where: str, stack: tuple = ()) -> Result:
        """Energy per action and area of one instance of ``cls`` (compound or primitive)."""
        if cls in self.classes:
            cdef = self.classes[cls]
            if cls in stack:
                raise ComponentError(f"class cycle {' -> '.join((*stack, cls))}", file=cdef.file,
                                     key=f"{cdef.key}.subcomponents", expected="subcomponents that end in primitives")
            return self._compound(cdef, given, inherited, where, (*stack, cls))
        if cls in TABLE_PRIMITIVES:
            energy_of, area = table_primitive(cls, {**inherited, **given}, key=where)
            return Result({}, area, [("", "Aladdin_table")], energy_of=energy_of)
        if is_primitive(cls):
            attrs = {**inherited, **given}
            est = estimate_primitive(cls, attrs, key=where)
            return Result(dict(est.actions), est.area, [("", est.estimator)])
        raise ComponentError(f"unknown component class {cls!r}", key=f"{where}.class",
                             expected="a class defined in a components file or an estimator primitive")

    def _compound(self, cdef: ClassDef, given: dict, inherited: dict, where: str, stack: tuple) -> Result:
        ns = self.attributes(cdef, given, inherited, where)
        f = cdef.file
        subs: dict[str, tuple[int, Result]] = {}
        area, estimators = 0.0, []
        child_inherited = {k: ns[k] for k in INHERITED if k in ns}
        for j, sub in enumerate(cdef.spec.get("subcomponents") or []):
            skey = f"{cdef.key}.subcomponents[{j}]"
            if not isinstance(sub, dict) or "name" not in sub or "class" not in sub:
                raise ComponentError("a subcomponent needs a name and a class", file=f, key=skey)
            base, n = _count(str(sub["name"]), ns, file=f, key=f"{skey}.name")
            sattrs = dict(sub.get("attributes") or {})
            scale_expr = sub.get("area_scale", sattrs.pop("area_scale", 1))
            values = {k: evaluate(v, ns, file=f, key=f"{skey}.attributes.{k}") for k, v in sattrs.items()}
            res = self.expand(str(sub["class"]), values, child_inherited, f"{where}.{base}", stack)
            subs[base] = (n, res)
            area += n * res.area * _number(evaluate(scale_expr, ns, file=f, key=f"{skey}.area_scale"),
                                           file=f, key=f"{skey}.area_scale")
            estimators += [(f"{sub['name']}" + (f".{p}" if p else ""), e) for p, e in res.estimators]
        actions = {}
        for j, act in enumerate(cdef.spec.get("actions") or []):
            akey = f"{cdef.key}.actions[{j}]"
            total = 0.0
            for r, ref in enumerate(act.get("subcomponents") or []):
                rkey = f"{akey}.subcomponents[{r}]"
                base, n = _count(str(ref.get("name", "")), ns, file=f, key=f"{rkey}.name")
                if base not in subs:
                    raise ComponentError(f"action {act.get('name')} refers to unknown subcomponent {base!r}",
                                         file=f, key=rkey, expected=f"one of {sorted(subs)}")
                res = subs[base][1]
                for s, sa in enumerate(ref.get("actions") or []):
                    name = sa.get("name")
                    if res.energy_of is not None:
                        energy = res.energy_of(str(name), self._arguments(sa, ns, f, f"{rkey}.actions[{s}]"))
                    elif name not in res.actions:
                        raise ComponentError(f"subcomponent {base} has no action {name!r}", file=f,
                                             key=f"{rkey}.actions[{s}]", expected=f"one of {sorted(res.actions)}")
                    else:
                        energy = res.actions[name]
                    factor = 1.0
                    for k in ("energy_scale", "repeat", "action_share"):
                        if k in sa:
                            factor *= _number(evaluate(sa[k], ns, file=f, key=f"{rkey}.actions[{s}].{k}"),
                                              file=f, key=f"{rkey}.actions[{s}].{k}")
                    total += n * energy * factor
            actions[str(act.get("name"))] = total
        return Result(actions, area, estimators)

    @staticmethod
    def _arguments(sa: dict, ns: dict, file, key: str) -> dict:
        """An action reference's ``arguments``, evaluated over the class's attributes (Accelergy passes them
        to the plug-in; only Aladdin_table's primitives read them here)."""
        args = sa.get("arguments")
        if not isinstance(args, dict):
            return {}
        return {k: evaluate(v, ns, file=file, key=f"{key}.arguments.{k}") for k, v in args.items()}
