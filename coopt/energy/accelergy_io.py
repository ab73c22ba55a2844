"""Read Accelergy's ERT (energy per action) and ART (area) files into leaf-keyed dicts.

Why: a user who has run real Accelergy should get Timeloop's exact energies,
so we read its tables the way Timeloop's ``Topology::Specs::ParseAccelergyERT``
does, and key them by leaf name as the model does.

Layouts accepted:

* version 0.3 / 0.4 (what Accelergy writes today)::

      ERT:
        version: '0.4'
        tables:
          - name: system.PE[0..167].spad
            actions:
              - {name: read, arguments: {}, energy: 0.25}

  An action name may appear several times with different ``arguments``
  (0.3 tables list e.g. every ``data_delta``/``address_delta`` combination).
* version 0.2: ``tables`` is a mapping ``{name: {action: entry or [entries]}}``.

When one action has several entries we keep the LARGEST energy, exactly as
Timeloop does (it takes ``max`` over the entries).  We do not use "the entry
whose arguments are the defaults, else the first": the aim is to reproduce
Timeloop, and in Accelergy's tables the largest entry is the default
random access anyway (``data_delta=1, address_delta=1``).

Names are reduced to the leaf: ``system_top_level.DRAM[1..1]`` -> ``DRAM``,
``sys.PE[0..15].buf[0..3]`` -> ``buf``.  Two tables with the same leaf: the
later one wins (Timeloop updates the level once per table, in file order),
with a one-line warning.

Energies are pJ, areas um^2.  PyYAML reads ``1e-5`` (no dot) as a string, so
numeric strings are accepted.  Anything else malformed raises ``SpecError``
naming the file and the key (``ERT.tables[2].actions[0].energy``).
"""
from __future__ import annotations

import os
import re
from typing import Any

from coopt.energy.notice import warn_once
from coopt.energy.tables import EnergyTables
from coopt.errors import SpecError
from coopt.yamlio import loads_yaml, read_text

_RANGE = re.compile(r"\[[^\]]*\]")


def leaf_name(name: str) -> str:
    """``a.b[0..3].c[1..1]`` -> ``c``: strip every ``[...]`` range, keep the last dotted part."""
    return _RANGE.sub("", str(name)).strip().split(".")[-1].strip()


def _load(path_or_dict: Any, root: str, file: str | None) -> tuple[Any, str | None]:
    """Return (the node under ``root``, the file name to blame)."""
    if isinstance(path_or_dict, (str, os.PathLike)):
        file = file or os.fspath(path_or_dict)
        data = loads_yaml(read_text(path_or_dict, what=f"{root} file"), file=file)
    else:
        data = path_or_dict
    if not isinstance(data, dict):
        raise SpecError(f"top level is {type(data).__name__}", file=file, key=root,
                        expected=f"a mapping with a '{root}' key")
    if root in data:
        data = data[root]
    elif "tables" not in data:
        raise SpecError(f"no '{root}' key", file=file, key=root, expected=f"'{root}: {{version, tables}}'")
    if not isinstance(data, dict) or "tables" not in data:
        raise SpecError("missing 'tables'", file=file, key=f"{root}.tables",
                        expected="a list of {name, ...} entries")
    return data, file


def _number(value: Any, *, file: str | None, key: str, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise SpecError(f"{what} is {value!r}", file=file, key=key, expected="a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{what} is {value!r}", file=file, key=key, expected="a number") from None
    if x != x or x in (float("inf"), float("-inf")) or x < 0:
        raise SpecError(f"{what} is {value!r}", file=file, key=key, expected="a finite number >= 0")
    return x


def _name(entry: Any, *, file: str | None, key: str) -> str:
    if not isinstance(entry, dict):
        raise SpecError(f"entry is {type(entry).__name__}", file=file, key=key, expected="a mapping")
    name = entry.get("name")
    if not isinstance(name, str) or not leaf_name(name):
        raise SpecError(f"name is {name!r}", file=file, key=f"{key}.name", expected="a component name")
    return name


def _entry_energy(entry: Any, *, file: str | None, key: str) -> float:
    if not isinstance(entry, dict) or "energy" not in entry:
        raise SpecError("action has no energy", file=file, key=f"{key}.energy", expected="energy: <pJ>")
    return _number(entry["energy"], file=file, key=f"{key}.energy", what="energy")


def _once(out: dict, name: str, file: str | None, key: str) -> None:
    """A second table for one component: Timeloop keeps the later one; say so rather than drop one silently."""
    if leaf_name(name) in out:
        warn_once(f"{file or 'tables'}: {key}: a second table for {leaf_name(name)!r}; the later one is used, "
                  f"as in Timeloop")


def read_ert(path_or_dict: Any, *, file: str | None = None) -> dict[str, dict[str, float]]:
    """``{leaf: {action: pJ}}`` from an Accelergy ERT file (path) or its parsed YAML (dict)."""
    data, file = _load(path_or_dict, "ERT", file)
    tables = data["tables"]
    out: dict[str, dict[str, float]] = {}
    if isinstance(tables, list):                       # version 0.3 / 0.4
        for i, table in enumerate(tables):
            tkey = f"ERT.tables[{i}]"
            name = _name(table, file=file, key=tkey)
            actions = table.get("actions")
            if not isinstance(actions, list):
                raise SpecError(f"actions of {name} is {type(actions).__name__}", file=file,
                                key=f"{tkey}.actions", expected="a list of {name, energy}")
            energies: dict[str, float] = {}
            for j, action in enumerate(actions):
                akey = f"{tkey}.actions[{j}]"
                aname = _name(action, file=file, key=akey)
                e = _entry_energy(action, file=file, key=akey)
                energies[aname] = max(e, energies.get(aname, 0.0))
            _once(out, name, file, tkey)
            out[leaf_name(name)] = energies
    elif isinstance(tables, dict):                     # version 0.2
        for name, actions in tables.items():
            tkey = f"ERT.tables.{name}"
            if not isinstance(actions, dict):
                raise SpecError(f"actions of {name} is {type(actions).__name__}", file=file, key=tkey,
                                expected="a mapping {action: {energy}}")
            energies = {}
            for aname, entries in actions.items():
                akey = f"{tkey}.{aname}"
                entries = entries if isinstance(entries, list) else [entries]
                if not entries:
                    raise SpecError("action has no entries", file=file, key=akey, expected="energy: <pJ>")
                energies[str(aname)] = max(_entry_energy(e, file=file, key=f"{akey}[{k}]")
                                           for k, e in enumerate(entries))
            out[leaf_name(name)] = energies
    else:
        raise SpecError(f"tables is {type(tables).__name__}", file=file, key="ERT.tables",
                        expected="a list of {name, actions}")
    return out


def read_art(path_or_dict: Any, *, file: str | None = None) -> dict[str, float]:
    """``{leaf: um^2 per instance}`` from an Accelergy ART file (path) or its parsed YAML."""
    data, file = _load(path_or_dict, "ART", file)
    tables = data["tables"]
    out: dict[str, float] = {}
    if isinstance(tables, list):
        for i, table in enumerate(tables):
            tkey = f"ART.tables[{i}]"
            name = _name(table, file=file, key=tkey)
            if "area" not in table:
                raise SpecError(f"{name} has no area", file=file, key=f"{tkey}.area", expected="area: <um^2>")
            _once(out, name, file, tkey)
            out[leaf_name(name)] = _number(table["area"], file=file, key=f"{tkey}.area", what="area")
    elif isinstance(tables, dict):
        for name, area in tables.items():
            area = area.get("area") if isinstance(area, dict) else area
            out[leaf_name(name)] = _number(area, file=file, key=f"ART.tables.{name}", what="area")
    else:
        raise SpecError(f"tables is {type(tables).__name__}", file=file, key="ART.tables",
                        expected="a list of {name, area}")
    return out


def read_tables(ert_path: Any, art_path: Any = None) -> EnergyTables:
    """Both tables from Accelergy's output files (ART optional), source ``"accelergy"``."""
    ert = read_ert(ert_path)
    art = read_art(art_path) if art_path is not None else {}
    return EnergyTables(ert=ert, art=art, source="accelergy")
