"""Parameterised architecture templates (``arch_base/*.yaml``).

Why: a design-space search varies a handful of knobs (array size, buffer
depths, word widths, ...) of one Timeloop architecture.  A template is that
architecture written once, in the v0.3 tree form Timeloop + Accelergy read,
with ``${expr}`` placeholders over typed, range-checked parameters, plus
named sets of Timeloop mapping constraints (dataflows).

Placeholders are evaluated by a small AST walker (numbers, parameter names,
+ - * / // % **, comparisons, ``a if c else b``, min max ceil floor log2 int
float abs round) -- never by ``eval``.  A value that is exactly one
``${...}`` takes the expression's type (integral floats become ints, so
Timeloop's integer attributes stay integers); elsewhere results are
spliced into the string.
"""
from __future__ import annotations

import ast
import copy
import math
import operator
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from coopt.arch.spec import Architecture
from coopt.arch.yaml_io import arch_from_yaml
from coopt.energy import bounds
from coopt.errors import SpecError
from coopt.shipped import shipped_dir, shipped_names
from coopt.yamlio import load_yaml

__all__ = ["ParamSpec", "Template", "load_template", "available_templates", "templates_dir",
           "evaluate_expression", "substitute"]

PARAM_TYPES = ("int", "float", "choice", "bool")
_TEMPLATE_KEYS = ("name", "description", "parameters", "architecture", "constraints", "sparse_optimizations")
_PARAM_KEYS = ("type", "default", "min", "max", "choices", "description", "power_of_two")
_NO_DEFAULT = object()
_KIND = {"int": "an integer", "float": "a number"}


def templates_dir() -> Path:
    """The shipped templates: ``arch_base/`` of the checkout, or the installed package's copy."""
    return shipped_dir("arch_base")


def available_templates() -> list[str]:
    """The registry of templates: the names of the shipped ``arch_base/*.yaml``."""
    return shipped_names("arch_base")


# ---------------------------------------------------------------------------
# safe expressions
# ---------------------------------------------------------------------------
_FUNCS = {"min": min, "max": max, "ceil": math.ceil, "floor": math.floor, "log2": math.log2,
          "int": int, "float": float, "abs": abs, "round": round}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.Eq: operator.eq, ast.NotEq: operator.ne}
_UNOPS = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}


class _ExprError(Exception):
    pass


def _eval(node: ast.AST, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, names)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise _ExprError(f"unknown name '{node.id}' (parameters: {sorted(names)})")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, names), _eval(node.right, names)
        if isinstance(node.op, ast.Pow) and (abs(right) > 256 or abs(left) > 2 ** 64):
            raise _ExprError("power too large")
        if isinstance(node.op, ast.Mult):
            return bounds.times(left, right)      # 'x' * 10**9 refused, not allocated
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
        return _UNOPS[type(node.op)](_eval(node.operand, names))
    if isinstance(node, ast.Compare) and all(type(o) in _CMPOPS for o in node.ops):
        left = _eval(node.left, names)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, names)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BoolOp):
        vals = (_eval(v, names) for v in node.values)
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, names) else node.orelse, names)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
            and not node.keywords):
        return _FUNCS[node.func.id](*[_eval(a, names) for a in node.args])
    what = type(node).__name__
    if isinstance(node, ast.Call):
        what = f"call of {ast.unparse(node.func)}()"
    raise _ExprError(f"'{what}' is not allowed (use numbers, parameter names, + - * / // % **, "
                     f"comparisons, 'a if c else b' and {', '.join(_FUNCS)})")


def evaluate_expression(expr: str, names: dict[str, Any], *, key: str | None = None,
                        file: str | None = None) -> Any:
    """Evaluate one placeholder expression safely; errors are SpecErrors at ``key``."""
    shown = expr if len(expr) <= 200 else expr[:200] + "..."
    try:
        tree = bounds.parse(expr.strip())          # length and nesting bounded (coopt/energy/bounds.py)
    except SyntaxError as exc:
        raise SpecError(f"syntax error in expression '{shown}': {exc.msg}", file=file, key=key) from None
    except bounds.TooBig as exc:
        raise SpecError(f"expression '{shown}': {exc}", file=file, key=key) from None
    try:
        return bounds.check_value(_eval(tree, names))
    except _ExprError as exc:
        raise SpecError(f"in expression '{shown}': {exc}", file=file, key=key) from None
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise SpecError(f"cannot evaluate '{shown}': {exc}", file=file, key=key) from None


_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def substitute(value: Any, names: dict[str, Any], *, key: str, file: str | None = None) -> Any:
    """Resolve ``${...}`` in every string of a nested dict/list structure."""
    if isinstance(value, dict):
        return {k: substitute(v, names, key=f"{key}.{k}", file=file) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, names, key=f"{key}[{i}]", file=file) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _PLACEHOLDER.fullmatch(value.strip())
    if whole:
        out = evaluate_expression(whole.group(1), names, key=key, file=file)
        return int(out) if isinstance(out, float) and out.is_integer() else out
    text = _PLACEHOLDER.sub(lambda m: _fmt(evaluate_expression(m.group(1), names, key=key, file=file)),
                            value)
    if "${" in text:
        raise SpecError(f"unterminated placeholder in '{value}'", file=file, key=key,
                        expected="${expression}")
    return text


# ---------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """One template knob: its type, default and allowed values."""

    name: str
    type: str
    default: Any = _NO_DEFAULT
    min: float | None = None
    max: float | None = None
    choices: tuple = ()
    description: str = ""
    power_of_two: bool = False
    file: str | None = field(default=None, compare=False, repr=False)

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT

    def _err(self, msg: str, expected: str | None = None) -> SpecError:
        return SpecError(f"parameter '{self.name}': {msg}", file=self.file, key=f"parameters.{self.name}",
                         expected=expected)

    def check(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise a SpecError naming it."""
        v = self._coerce(value)
        if self.type in ("int", "float"):
            bounds = " and ".join(t for t in (self.min is not None and f">= {self.min}",
                                               self.max is not None and f"<= {self.max}") if t)
            if self.min is not None and v < self.min:
                raise self._err(f"{v} is below the minimum {self.min}", f"a value {bounds}")
            if self.max is not None and v > self.max:
                raise self._err(f"{v} is above the maximum {self.max}", f"a value {bounds}")
            if self.power_of_two and not (v > 0 and float(v).is_integer() and int(v) & (int(v) - 1) == 0):
                raise self._err(f"{v} is not a power of two", "1, 2, 4, 8, ...")
        return v

    def _coerce(self, value: Any) -> Any:
        t = self.type
        if t == "choice":
            for c in self.choices:
                if type(c) is type(value) and c == value:
                    return c
            for c in self.choices:  # "8" from a command line matches 8
                if str(c) == str(value):
                    return c
            raise self._err(f"{value!r} is not one of the choices", f"one of {list(self.choices)}")
        if t == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise self._err(f"{value!r} is not a boolean", "true or false")
        if isinstance(value, bool):
            raise self._err(f"{value!r} is a boolean", _KIND[t])
        if isinstance(value, str):
            try:
                value = int(value) if t == "int" and re.fullmatch(r"\s*[-+]?\d+\s*", value) else float(value)
            except ValueError:
                raise self._err(f"{value!r} is not a number", _KIND[t]) from None
        if t == "int":
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, int):
                return value
            raise self._err(f"{value!r} is not an integer", "an integer")
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        raise self._err(f"{value!r} is not a number", "a number")

    @classmethod
    def from_dict(cls, name: str, d: Any, file: str | None) -> "ParamSpec":
        key = f"parameters.{name}"
        if not name.isidentifier() or name in _FUNCS:
            raise SpecError(f"parameter name '{name}' cannot be used in expressions", file=file, key=key,
                            expected=f"an identifier other than {list(_FUNCS)}")
        if not isinstance(d, dict):
            raise SpecError(f"parameter '{name}' is a {type(d).__name__}", file=file, key=key,
                            expected="a mapping with type, default, ...")
        extra = set(d) - set(_PARAM_KEYS)
        if extra:
            raise SpecError(f"parameter '{name}' has unknown keys {sorted(extra)}", file=file, key=key,
                            expected=f"keys among {list(_PARAM_KEYS)}")
        if d.get("type") not in PARAM_TYPES:
            raise SpecError(f"parameter '{name}' has type {d.get('type')!r}", file=file, key=f"{key}.type",
                            expected=f"one of {list(PARAM_TYPES)}")
        choices = d.get("choices") or ()
        if d["type"] == "choice" and not (isinstance(choices, list) and choices):
            raise SpecError(f"choice parameter '{name}' needs a non-empty 'choices' list", file=file,
                            key=f"{key}.choices")
        for bound in ("min", "max"):
            b = d.get(bound)
            if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))):
                raise SpecError(f"parameter '{name}': {bound} {b!r} is not a number", file=file,
                                key=f"{key}.{bound}")
        spec = cls(name=name, type=d["type"], min=d.get("min"), max=d.get("max"), choices=tuple(choices),
                   description=str(d.get("description") or ""), power_of_two=bool(d.get("power_of_two")),
                   file=file)
        if "default" in d and d["default"] is not None:
            spec = replace(spec, default=spec.check(d["default"]))
        return spec


# ---------------------------------------------------------------------------
# templates
# ---------------------------------------------------------------------------
@dataclass
class Template:
    """A parameterised architecture plus named constraint sets (dataflows)."""

    name: str
    description: str
    parameters: dict[str, ParamSpec]
    body: dict                                  # the ``architecture:`` value, unresolved
    constraint_sets: dict[str, list] = field(default_factory=dict)
    path: str | None = None
    sparse_sets: list = field(default_factory=list)   # sparse_optimizations targets, each 'when: <bool parameter>'

    @classmethod
    def from_dict(cls, data: dict, *, file: str | None = None) -> "Template":
        extra = set(data) - set(_TEMPLATE_KEYS)
        if extra:
            raise SpecError(f"unknown top-level keys {sorted(extra)}", file=file,
                            expected=f"keys among {list(_TEMPLATE_KEYS)}")
        body = data.get("architecture")
        if not isinstance(body, dict):
            raise SpecError("missing or not a mapping", file=file, key="architecture",
                            expected="a Timeloop v0.3 architecture body (version, subtree)")
        params = data.get("parameters") or {}
        if not isinstance(params, dict):
            raise SpecError("is not a mapping", file=file, key="parameters", expected="name: {type, default, ...}")
        cons = data.get("constraints") or {}
        if not isinstance(cons, dict) or not all(isinstance(v, list) for v in cons.values()):
            raise SpecError("must map option names to lists of constraint targets", file=file,
                            key="constraints", expected="{row_stationary: [{target, type, ...}], ...}")
        for opt, targets in cons.items():
            for i, t in enumerate(targets):
                if not isinstance(t, dict) or "target" not in t or "type" not in t:
                    raise SpecError("a constraint needs 'target' and 'type'", file=file,
                                    key=f"constraints.{opt}[{i}]", expected="{target, type, ...}")
        name = data.get("name") or (Path(file).stem if file else "template")
        parameters = {k: ParamSpec.from_dict(str(k), v, file) for k, v in params.items()}
        sparse = data.get("sparse_optimizations") or []
        for i, t in enumerate(sparse if isinstance(sparse, list) else [None]):
            when = t.get("when") if isinstance(t, dict) else None
            if not isinstance(t, dict) or when not in parameters or parameters[when].type != "bool":
                raise SpecError("a sparse optimisation needs 'when: <a bool parameter>' and 'name'", file=file,
                                key=f"sparse_optimizations[{i}]",
                                expected="{when: PARAMETER, name: LEVEL, action_optimization: ...}")
        return cls(name=str(name), description=str(data.get("description") or "").strip(),
                   parameters=parameters, body=body, constraint_sets=cons, path=file, sparse_sets=sparse)

    # -- parameters -----------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.parameters.items() if p.has_default}

    def resolve(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``params``, every value checked."""
        params = dict(params or {})
        for k in params:
            if k not in self.parameters:
                raise SpecError(f"unknown parameter '{k}' for template {self.name}", file=self.path,
                                key="parameters", expected=f"one of {sorted(self.parameters)}")
        values = {}
        for k, spec in self.parameters.items():
            if k in params:
                values[k] = spec.check(params[k])
            elif spec.has_default:
                values[k] = spec.default
            else:
                raise SpecError(f"parameter '{k}' is required (it has no default)", file=self.path,
                                key=f"parameters.{k}", expected=spec.type)
        return values

    # -- instantiation --------------------------------------------------------
    def instantiate_yaml(self, params: dict[str, Any] | None = None) -> dict:
        """The resolved ``{"architecture": ...}`` for ``params``."""
        values = self.resolve(params)
        return {"architecture": substitute(copy.deepcopy(self.body), values, key="architecture",
                                           file=self.path)}

    def instantiate(self, params: dict[str, Any] | None = None) -> Architecture:
        node = self.instantiate_yaml(params)["architecture"]
        try:
            return arch_from_yaml(node, file=self.path)
        except SpecError as err:
            changed = {k: v for k, v in (params or {}).items()}
            raise SpecError(f"{err.message} [template {self.name} with {changed or 'defaults'}]",
                            file=err.file, key=err.key, expected=err.expected) from None

    @property
    def constraint_options(self) -> list[str]:
        return list(self.constraint_sets)

    def constraints(self, option: str, params: dict[str, Any] | None = None) -> list[dict]:
        """The constraint targets of dataflow ``option``, placeholders resolved."""
        if option not in self.constraint_sets:
            raise SpecError(f"template {self.name} has no constraint option '{option}'", file=self.path,
                            key="constraints", expected=f"one of {self.constraint_options}")
        values = self.resolve(params)
        return substitute(copy.deepcopy(self.constraint_sets[option]), values,
                          key=f"constraints.{option}", file=self.path)

    def sparse_targets(self, params: dict[str, Any] | None = None) -> list[dict]:
        """Timeloop's ``sparse_optimizations: targets`` of the design: the entries whose ``when`` parameter is
        true, placeholders resolved (design options such as Eyeriss's zero gating)."""
        values = self.resolve(params)
        out = []
        for i, t in enumerate(self.sparse_sets):
            if values[t["when"]]:
                body = {k: v for k, v in t.items() if k != "when"}
                out.append(substitute(copy.deepcopy(body), values, key=f"sparse_optimizations[{i}]", file=self.path))
        return out


def load_template(name_or_path: str | Path) -> Template:
    """Load a template by bare name (``arch_base/<name>.yaml``) or by path."""
    text = str(name_or_path)
    p = Path(text)
    if not (p.suffix in (".yaml", ".yml") or "/" in text or "\\" in text):
        p = templates_dir() / f"{text}.yaml"
        if not p.is_file():
            raise SpecError(f"unknown architecture template '{text}'",
                            expected=f"one of {available_templates()} or a path to a template YAML")
    return Template.from_dict(load_yaml(p), file=str(p))
