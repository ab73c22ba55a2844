"""Limits on the expressions users write (component classes, templates): size, nesting, results.

Why: an attribute like ``2 ** 2 ** 40``, ``'x' * 10 ** 10`` or a thousand nested
brackets must fail in one line within milliseconds, not hang, exhaust memory or
end in a RecursionError (issue 20, item 7); NaN and infinities must not enter
tables.  Both evaluators (``energy/compound.py`` and ``arch/template.py``) use
these, so the two places agree.
"""
from __future__ import annotations

import ast
import math

MAX_TEXT = 2000            # characters of one expression
MAX_DEPTH = 40             # nesting of its syntax tree
MAX_BITS = 4096            # an integer's size
MAX_STR = 10_000           # a string's length
MAX_EXPONENT = 1024


class TooBig(ArithmeticError):
    """An expression or its value is beyond the limits above."""


def parse(text: str) -> ast.Expression:
    """The syntax tree of ``text``, refused (TooBig) when too long or nested too deep; SyntaxError as usual."""
    if len(text) > MAX_TEXT:
        raise TooBig(f"an expression of {len(text)} characters (at most {MAX_TEXT})")
    try:
        tree = ast.parse(text, mode="eval")
    except (RecursionError, MemoryError):
        raise TooBig("nesting too deep") from None
    if depth(tree) > MAX_DEPTH:
        raise TooBig(f"nesting deeper than {MAX_DEPTH}")
    return tree


def depth(node: ast.AST) -> int:
    """Nesting depth of a syntax tree, iteratively (a deep tree must not exhaust the stack)."""
    stack, deepest = [(node, 1)], 0
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > MAX_DEPTH:
            break
        stack.extend((c, d + 1) for c in ast.iter_child_nodes(n))
    return deepest


def power(a, b):
    """``a ** b`` unless the result would exceed MAX_BITS (or the exponent MAX_EXPONENT)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if abs(b) > MAX_EXPONENT or (abs(a) > 1 and abs(b) * math.log2(abs(a)) > MAX_BITS):
            raise TooBig(f"{a!r} ** {b!r} is too large")
    return a ** b


def times(a, b):
    """``a * b`` unless it repeats text beyond MAX_STR or multiplies integers beyond MAX_BITS."""
    if isinstance(a, (str, list, tuple)) or isinstance(b, (str, list, tuple)):
        seq, n = (a, b) if isinstance(a, (str, list, tuple)) else (b, a)
        if isinstance(n, int) and n * len(seq) > MAX_STR:
            raise TooBig(f"repeated text of {n * len(seq)} characters (at most {MAX_STR})")
    elif isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_BITS:
        raise TooBig("the product is too large")
    return a * b


def check_value(result):
    """``result`` if finite and small enough, else a one-line reason (TooBig, ValueError for NaN/inf)."""
    if isinstance(result, float) and not math.isfinite(result):
        raise ValueError(f"the value is {result}; expected a finite number")
    if isinstance(result, int) and not isinstance(result, bool) and result.bit_length() > MAX_BITS:
        raise TooBig(f"an integer of {result.bit_length()} bits (at most {MAX_BITS})")
    if isinstance(result, str) and len(result) > MAX_STR:
        raise TooBig(f"a string of {len(result)} characters (at most {MAX_STR})")
    return result
