"""Accelergy 0.4's Aladdin_table plug-in: its primitives' energies and areas, computed as it computes them.

Why: when a user's input brings its own component classes, Accelergy knows only those; any other class
name (``regfile``, ``intmac``, ...) is a primitive, estimated by the plug-in with the highest accuracy that
supports it.  For the names below that is accelergy-aladdin-plug-in (commit 5e2e126, ``aladdin_table.py``,
accuracy 70, 40/45 nm only; Library 90 and CACTI 80 know none of them but SRAM, NeuroSim 70 only intadder).
Followed line for line, its quirks included:

* a table row is chosen by latency = ``global_cycle_seconds`` x ``action_latency_cycles`` (default 1), rounded
  up to whole ns (0.5 ns at or below 0.75 ns, 10 ns above 10, 6 ns above 6) and matched as text
  (``f"{ns:g}"``); no match takes the first row and its latency; ``leak`` is the row's idle energy x
  ``global_cycle_seconds`` / latency, every other action its dynamic energy;
* ``regfile``: one register's entry (NOT times width, the plug-in's "naive" vector model) plus
  comparator(width = ceil(log2 depth)) x depth; ``data_delta: 0`` drops the register, ``address_delta: 0``
  the comparators; its area's comparators are read at the default 5 ns (the plug-in passes them no cycle);
* ``intmac`` = intadder (linear in width from 32 bits) + intmultiplier (quadratic), ``mac_gated`` costs the
  multiplier's idle energy, ``mac_reused`` 0.85 of it; ``fpmac`` adds the multiplier of its own action;
* ``FIFO``'s energy fails inside the plug-in (its comparator query has no arguments), so Accelergy fails.

The tables are the plug-in's ``data/*.csv`` (MIT, Yannan Nellie Wu), in ``data/aladdin_table/``.
"""
from __future__ import annotations

import csv
import math
from functools import lru_cache
from importlib import resources

from coopt.errors import SpecError

NAME = "Aladdin_table"
ACCURACY = 70
CLASSES = ("regfile", "SRAM", "counter", "comparator", "crossbar", "wire", "FIFO", "bitwise", "intadder",
           "intmultiplier", "intmac", "fpadder", "fpmultiplier", "fpmac", "reg")
TECHNOLOGIES = (40, "40", "40nm", 45, "45", "45nm")      # compared as the plug-in does: the raw value


@lru_cache(maxsize=None)
def _rows(table: str) -> tuple[dict, ...]:
    text = resources.files("coopt.energy").joinpath(f"data/aladdin_table/{table}.csv").read_text("utf-8")
    return tuple(csv.DictReader(text.splitlines()))


def _rounded(latency: float) -> float:
    latency = math.ceil(latency * 1e9) / 1e9 if latency > 0.75e-9 else 0.5e-9
    if latency > 10e-9:
        latency = 10e-9
    elif latency > 6e-9:
        latency = 6e-9
    return latency


def _row(table: str, latency: float) -> tuple[dict, float]:
    rows = _rows(table)
    for row in rows:
        if row["latency(ns)"] == f"{(latency * 1e9):g}":
            return row, latency
    return rows[0], float(rows[0]["latency(ns)"]) * 1e-9


def _table_energy(table: str, action: str, attrs: dict, args: dict) -> float:
    """``query_csv_using_latency``."""
    gcs = attrs.get("global_cycle_seconds", 5e-9)
    row, latency = _row(table, _rounded(gcs * args["action_latency_cycles"]))
    energy = float(row["idle energy(pJ)" if action == "leak" else "dynamic energy(pJ)"])
    if action == "leak":
        energy *= gcs / latency
    return energy


def _table_area(table: str, attrs: dict) -> float:
    """``query_csv_area_using_latency``: the latency is the cycle alone."""
    row, _ = _row(table, _rounded(attrs.get("global_cycle_seconds", 5e-9)))
    return float(row["area(um^2)"])


def _linear(x, y32):
    """``oneD_linear_interpolation(x, [(0, 0), (32, y)])`` as Accelergy computes it."""
    return (y32 - 0) / (32 - 0) * (x - 0) + 0


def _quadratic(x, y32):
    return (y32 - 0) / (32 ** 2 - 0 ** 2) * (x ** 2 - 0 ** 2) + 0


def _fp(attrs: dict, kind: str) -> tuple[float, str, int]:
    nbit = attrs["mantissa"] + attrs["exponent"]
    return nbit, (f"fp_sp_{kind}" if nbit <= 32 else f"fp_dp_{kind}"), (32 if nbit <= 32 else 64)


def _energy(cls: str, action: str, attrs: dict, args: dict) -> float:
    if cls in ("regfile", "SRAM"):
        depth = attrs["depth"]
        if depth == 0:
            return 0
        comparator = {**attrs, "width": math.ceil(math.log2(float(depth)))}
        if action == "leak":
            reg = _table_energy("reg", action, attrs, args)
            comp = _energy("comparator", "leak", comparator, args)
        else:
            reg = 0 if args.get("data_delta", 1) == 0 else _table_energy("reg", action, attrs, args)
            comp = 0 if args.get("address_delta", 1) == 0 else _energy("comparator", action, comparator, args)
        return reg + comp * depth
    if cls == "reg":
        return _table_energy("reg", action, attrs, args) * attrs["width"]
    if cls == "FIFO":
        raise KeyError("arguments")        # the plug-in's comparator query lacks them: its estimate fails
    if cls == "crossbar":
        e = _table_energy("crossbar", action, attrs, args)
        return e * attrs["n_inputs"] * (attrs["n_outputs"] / 4) * (attrs["width"] / 32)
    if cls == "counter":
        return _table_energy("counter", action, attrs, args) * (attrs["width"] / 32)
    if cls == "comparator":
        return _table_energy("comparator", action, attrs, args) * (attrs["width"] / 32)
    if cls == "bitwise":
        return _table_energy("bitwise", action, attrs, args) * attrs["width"]
    if cls == "wire":
        return _wire(action, attrs)
    if cls in ("intmac", "fpmac"):
        mult = {"mac_gated": "mult_gated", "mac_reused": "mult_reused", "leak": "leak"}.get(action, "mult_random")
        if cls == "intmac":
            return _energy("intadder", action, attrs, args) + _energy("intmultiplier", mult, attrs, args)
        return _energy("fpadder", action, attrs, args) + _energy("fpmultiplier", action, attrs, args)
    if cls == "intadder":
        e = _table_energy("adder", action, attrs, args)
        return e if attrs["width"] == 32 else _linear(attrs["width"], e)
    if cls == "fpadder":
        nbit, table, ref = _fp(attrs, "adder")
        e = _table_energy(table, action, attrs, args)
        return e if nbit == ref else (e - 0) / (ref - 0) * (nbit - 0) + 0
    if cls in ("intmultiplier", "fpmultiplier"):
        if cls == "intmultiplier":
            nbit, table, ref = attrs["width"], "multiplier", 32
        else:
            nbit, table, ref = _fp(attrs, "multiplier")
        e = _table_energy(table, "leak" if action == "mult_gated" else action, attrs, args)
        if nbit != ref:
            e = (e - 0) / (ref ** 2 - 0 ** 2) * (nbit ** 2 - 0 ** 2) + 0
        return 0.85 * e if action == "mult_reused" else e
    raise KeyError(cls)


def _wire(action: str, attrs: dict) -> float:
    if action not in ("transfer", "transfer_random"):
        return 0
    text = str(attrs["length"])
    if "m" not in text:
        um = float(text)
    elif "mm" in text:
        um = float(text.split("mm")[0]) * 10 ** 3
    elif "um" in text:
        um = float(text.split("um")[0])
    elif "nm" in text:
        um = float(text.split("nm")[0]) * 10 ** -3
    else:
        um = 0
    return attrs["width"] * 0.2 * (1.627 * 10 ** -15) * um * 1 ** 2 * 10 ** 12


def _area(cls: str, attrs: dict) -> float:
    if cls in ("regfile", "SRAM"):
        depth = attrs["depth"]
        if depth == 0:
            return 0
        comparator = {"width": math.ceil(math.log2(float(depth)))}      # no cycle: read at 5 ns
        return _table_area("reg", attrs) + _area("comparator", comparator) * depth
    if cls == "reg":
        return _table_area("reg", attrs) * attrs["width"]
    if cls == "FIFO":
        depth = attrs["depth"]
        if depth == 0:
            return 0
        return _table_area("reg", attrs) * attrs["width"] + _area("comparator", {"width": math.log2(float(depth))})
    if cls == "crossbar":
        return _table_area("crossbar", attrs) * attrs["n_inputs"] * (attrs["n_outputs"] / 4) * (attrs["width"] / 32)
    if cls in ("counter", "comparator"):
        return _table_area(cls, attrs) * (attrs["width"] / 32)
    if cls == "wire":
        return 0
    if cls == "bitwise":
        return _table_area("bitwise", attrs) * attrs["width"]
    if cls == "intmac":
        return _area("intadder", attrs) + _area("intmultiplier", attrs)
    if cls == "fpmac":
        return _area("fpadder", attrs) + _area("fpmultiplier", attrs)
    if cls == "intadder":
        a = _table_area("adder", attrs)
        return a if attrs["width"] == 32 else _linear(attrs["width"], a)
    if cls == "intmultiplier":
        a = _table_area("multiplier", attrs)
        return a if attrs["width"] == 32 else _quadratic(attrs["width"], a)
    if cls in ("fpadder", "fpmultiplier"):
        nbit, table, ref = _fp(attrs, cls[2:])
        a = _table_area(table, attrs)
        if nbit == ref:
            return a
        return ((a - 0) / (ref - 0) * (nbit - 0) + 0 if cls == "fpadder"
                else (a - 0) / (ref ** 2 - 0 ** 2) * (nbit ** 2 - 0 ** 2) + 0)
    raise KeyError(cls)


def supports(cls: str, attrs: dict, *, area: bool = False) -> bool:
    """``primitive_action_supported`` / ``primitive_area_supported``: the class, 40/45 nm, a small SRAM."""
    if cls not in CLASSES or attrs.get("technology") not in TECHNOLOGIES:
        return False
    if cls == "SRAM":
        return attrs["depth"] <= 128 and attrs["width"] <= (16 if area else 32)
    return True


def _failed(cls: str, what: str, e: Exception, key: str) -> SpecError:
    return SpecError(f"Accelergy's {NAME} plug-in cannot estimate the {what} of primitive {cls} "
                     f"({type(e).__name__}: {e}), so Accelergy stops", key=key,
                     expected=f"the attributes {NAME} reads for {cls}, or a class named {cls} in your components")


def energy(cls: str, action: str, attrs: dict, args: dict | None = None, *, key: str = "") -> float:
    """pJ of one ``action`` of primitive ``cls`` (``args``: the action's arguments), times ``n_instances`` for
    ``leak`` as Accelergy's ``get_energy_estimation`` does."""
    args = dict(args or {})
    args.setdefault("global_cycle_seconds", attrs.get("global_cycle_seconds"))
    args.setdefault("action_latency_cycles", attrs.get("action_latency_cycles", 1))
    try:
        e = _energy(cls, action, attrs, args)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        raise _failed(cls, f"energy of {action}", err, key) from None
    return e * attrs.get("n_instances", 1) if action == "leak" else e


def area(cls: str, attrs: dict, *, key: str = "") -> float:
    """µm² of primitive ``cls`` times ``n_instances`` (``get_area_estimation``)."""
    try:
        return _area(cls, attrs) * attrs.get("n_instances", 1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        raise _failed(cls, "area", err, key) from None
