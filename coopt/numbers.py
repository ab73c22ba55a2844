"""Numbers for people: significant digits, thousands separators, energies in a fitting unit.

Why: MLflow pages, the front's table and exported summaries all showed raw
floats (12341.816315185482, 2.94896e+08 pJ); one set of rules keeps them
readable and consistent.
"""
from __future__ import annotations

import math

SIGNIFICANT = 4


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def round_sig(value: float, digits: int = SIGNIFICANT) -> float:
    """``value`` to ``digits`` significant digits (integers above that keep their units digit)."""
    if value == 0 or not math.isfinite(value):
        return value
    if float(value).is_integer() and abs(value) >= 10 ** (digits - 1):
        return float(value)
    return float(f"{value:.{digits}g}")


def fmt(value, digits: int = SIGNIFICANT) -> str:
    """A number for people: 12,340 / 0.03412 / 1.234e+07 (no 12341.816315185482)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        v = round_sig(value, digits)
        if v.is_integer() and abs(v) < 1e12:
            return f"{int(v):,}"
        if 1e-3 <= abs(v) < 1e6:
            return f"{v:,.{max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))}f}".rstrip("0").rstrip(".")
        return f"{v:.{digits - 1}e}"
    return " ".join(str(value).split()).replace("|", "\\|")


def energy(pj: float | None, digits: int = SIGNIFICANT) -> str:
    """An energy in pJ written in the unit that keeps it between 1 and 1000 (pJ, nJ, µJ, mJ, J)."""
    if pj is None or not finite(pj):
        return "–"
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{fmt(pj / scale, digits)} {unit}"
    return f"{fmt(float(pj), digits)} pJ"


def column_digits(values, digits: int = SIGNIFICANT, most: int = 12) -> int:
    """The fewest significant digits (at least ``digits``) at which a column's distinct values stay distinct.

    Why: at a fixed 4 digits 12.5208 and 12.5221 both read 12.52, and a table of a front then seems to
    hold a design that dominates others.  Rounding keeps order, so distinct values also stay ordered."""
    vals = sorted({float(v) for v in values if finite(v)})
    for d in range(digits, most):
        if len({round_sig(v, d) for v in vals}) == len(vals):
            return d
    return most
