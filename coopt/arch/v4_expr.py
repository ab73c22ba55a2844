"""Expressions in v4 specifications (``depth: buf_words // 2``), evaluated as Accelergy evaluates them.

Follows ``accelergy/parsing_utils.py`` ``parse_expression_for_arithmetic``,
which timeloopfe calls for ``variables:`` and every node's ``attributes:``
(``timeloopfe/common/nodes.py`` ``_parse_expression``): a quoted string
stays a string; ``true``/``false`` and numbers are cast; anything else is a
Python expression over the symbols in scope and Accelergy's math functions,
without builtins -- and, in v0.4, a failure is an error, never a string.
Here the expression is also refused if it reaches for attributes or
dunder names (the sandbox ``__builtins__ = None`` alone does not give).
"""
from __future__ import annotations

import ast
import math

from coopt.arch.v4_files import Quoted
from coopt.errors import SpecError

__all__ = ["evaluate", "evaluate_all"]

# accelergy parsing_utils.MATH_FUNCS (getcwd and map left out: no file system, no lazy iterators).
_FUNCS = {name: getattr(math, name) for name in (
    "ceil", "comb", "copysign", "fabs", "factorial", "floor", "fmod", "frexp", "fsum", "gcd", "isclose",
    "isfinite", "isinf", "isnan", "isqrt", "ldexp", "modf", "perm", "prod", "remainder", "trunc", "exp",
    "expm1", "log", "log1p", "log2", "log10", "sqrt", "acos", "asin", "atan", "atan2", "cos", "dist",
    "hypot", "sin", "tan", "degrees", "radians", "acosh", "asinh", "atanh", "cosh", "sinh", "tanh", "erf",
    "erfc", "gamma", "lgamma", "pi", "e", "tau", "inf", "nan")}
_FUNCS.update(abs=abs, round=round, pow=pow, sum=sum, range=range, len=len, min=min, max=max, float=float,
              int=int, str=str, bool=bool, list=list, tuple=tuple, enumerate=enumerate)


def _cast(text: str):
    """accelergy parsing_utils.cast_to_numeric."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if float(text) == int(text):
        return int(text)
    return float(text)


def evaluate(value, table: dict, *, file: str | None, key: str):
    """``value`` evaluated over ``table``; strings that are not quoted are expressions."""
    if not isinstance(value, str) or isinstance(value, Quoted):
        return value
    try:
        return _cast(value)
    except (ValueError, OverflowError):
        pass
    text = value.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise SpecError(f"cannot evaluate {value!r}: not a Python expression", file=file, key=key,
                        expected="an expression, or a quoted string such as \"LPDDR4\"") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) or (isinstance(node, ast.Name) and node.id.startswith("__")):
            raise SpecError(f"cannot evaluate {value!r}: attribute access is not allowed", file=file, key=key,
                            expected="arithmetic over variables and math functions")
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    missing = sorted(n for n in names if n not in table and n not in _FUNCS)
    if missing:
        raise SpecError(f"expression {value!r} uses undefined {', '.join(missing)}", file=file, key=key,
                        expected="names defined under variables:, in an enclosing container's attributes, "
                                 "or earlier in the same attributes (quote a string: \"...\")")
    try:
        out = eval(compile(tree, "<expression>", "eval"), {"__builtins__": None, **_FUNCS}, dict(table))  # noqa: S307
    except Exception as exc:  # an arithmetic error in the user's expression
        raise SpecError(f"cannot evaluate {value!r}: {type(exc).__name__}: {exc}", file=file, key=key) from None
    return Quoted(out) if isinstance(out, str) else out


def evaluate_all(node: dict, table: dict, *, file: str | None, key: str) -> dict:
    """A mapping evaluated key by key, each later key seeing the earlier ones (timeloopfe's symbol table)."""
    scope = dict(table)
    out = {}
    for k, v in node.items():
        out[k] = scope[k] = evaluate(v, scope, file=file, key=f"{key}.{k}")
    return out
