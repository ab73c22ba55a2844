"""Table-based primitives as Accelergy 0.4's Library and CACTI-DRAM plug-ins estimate them.

Why tables here: Accelergy 0.4's Library plug-in (accelergy-library-plug-in,
``library/aladdin/*.csv`` and ``scaling.py``) anchors Aladdin's figures
(Shao et al., ISCA 2014) at 45 nm and scales them by matching attributes;
``hwcomponents-library`` re-anchors the same figures at 40 nm, which moves
every register and comparator by 10-45 %.  To give Accelergy's numbers we keep
the plug-in's entries and rules:

* an attribute scales an entry when its name is one of the entry's columns
  (``width|datawidth`` matches ``width`` or ``datawidth``; the tutorial's
  ``width_a`` on an ``aladdin_adder`` matches nothing, so that "multiplier"
  costs a full 32-bit add);
* width-like attributes scale energy, leakage and area linearly;
* technology scales by Stillmaker & Baas (Integration 58, 2017): energy by
  the a*V^2+b*V+c fits at 0.8 V, area by the 45 nm-row factors, both
  linearly interpolated on the *index* of the node list exactly as the
  plug-in's ``get_technology_node_index`` does (which places 22 nm at 1/6 of
  the way from 32 nm to 20 nm: the plug-in's arithmetic, kept);
* leakage scales with ``global_cycle_seconds`` (it is energy per cycle).

DRAM: pJ per bit by ``type`` from the Accelergy 0.4 CACTI plug-in's table
(LPDDR4 8, LPDDR 40, DDR3 70 -- Malladi et al., ISCA 2012; GDDR5 14, HBM2 3.9
-- Chatterjee et al., MICRO 2017); no area or leakage.
"""
from __future__ import annotations

from coopt.energy.scaling import AREA_FROM_45 as _AREA_FROM_45
from coopt.energy.scaling import ENERGY_POLY as _ENERGY_POLY
from coopt.energy.scaling import NODES_NM
from coopt.energy.scaling import VDD as _VDD
from coopt.errors import SpecError

TECH_NODES = NODES_NM

# Aladdin entries at 45 nm, 1 ns cycle: {class: (columns that scale, {action: pJ}, area um^2)}.
# Width-like columns: (column names, reference value).
ALADDIN = {
    "aladdin_adder": ((("width", "datawidth"), 32),),
    "aladdin_register": ((("width", "datawidth"), 1),),
    "aladdin_comparator": ((("width", "datawidth"), 32),),
    "aladdin_counter": ((("width", "datawidth"), 32),),
    "aladdin_multiplier": ((("width", "datawidth"), 32), (("width_a", "datawidth_a"), 32),
                           (("width_b", "datawidth_b"), 32)),
}
_ALADDIN_VALUES = {   # action names -> pJ; area um^2
    "aladdin_adder": ({("add", "read"): 0.21, ("leak",): 0.0024, ("update", "write"): 0.0}, 278.0),
    "aladdin_register": ({("read",): 0.009, ("write",): 0.0, ("leak", "update"): 0.0}, 5.98),
    "aladdin_comparator": ({("compare", "read"): 0.02947, ("leak",): 2.51e-5, ("update", "write"): 0.0}, 71.0),
    "aladdin_counter": ({("count", "read"): 0.25074, ("leak",): 0.0003213, ("update", "write"): 0.0}, 495.5),
    "aladdin_multiplier": ({("multiply", "read"): 12.68, ("leak",): 0.08, ("update", "write"): 0.0}, 6350.0),
}
_ALADDIN_NM, _ALADDIN_CYCLE = 45.0, 1e-9

DRAM_PJ_PER_BIT = {"LPDDR4": 8.0, "LPDDR": 40.0, "DDR3": 70.0, "GDDR5": 14.0, "HBM2": 3.9}


def _node_index(nm: float) -> float:
    if not TECH_NODES[-1] <= nm <= TECH_NODES[0]:
        raise SpecError(f"technology {nm:g} nm is outside the Library plug-in's 7..130 nm",
                        key="technology", expected="a node between 7nm and 130nm")
    larger = smaller = None
    for i, t in enumerate(TECH_NODES):
        if nm <= t:
            larger = i
        if nm >= t:
            smaller = i
            break
    if larger == smaller:
        return float(larger)
    interp = (nm - TECH_NODES[smaller]) / (TECH_NODES[larger] - TECH_NODES[smaller])
    return larger + (smaller - larger) * interp


def _energy_at(idx: float) -> float:
    lo, hi, f = int(idx), min(int(idx) + 1, len(TECH_NODES) - 1), idx % 1
    e = [a * _VDD ** 2 + b * _VDD + c for a, b, c in (_ENERGY_POLY[lo], _ENERGY_POLY[hi])]
    return e[0] * (1 - f) + e[1] * f


def energy_scale(from_nm: float, to_nm: float) -> float:
    return _energy_at(_node_index(to_nm)) / _energy_at(_node_index(from_nm))


def area_scale_from_45(to_nm: float) -> float:
    idx = _node_index(to_nm)
    lo, hi, f = int(idx), min(int(idx) + 1, len(TECH_NODES) - 1), idx % 1
    return _AREA_FROM_45[lo] * (1 - f) + _AREA_FROM_45[hi] * f


def _width_scale(cls: str, attrs: dict) -> float:
    scale = 1.0
    for names, ref in ALADDIN[cls]:
        for name in names:               # the first attribute naming a column claims it
            if name in attrs:
                scale *= float(attrs[name]) / ref
                break
    return scale


def aladdin(cls: str, attrs: dict, nm: float, cycle_s: float) -> tuple[dict[str, float], float]:
    """({action: pJ}, um^2) of a Library Aladdin primitive."""
    values, area = _ALADDIN_VALUES[cls]
    w = _width_scale(cls, attrs)
    es = energy_scale(_ALADDIN_NM, nm)
    actions = {}
    for names, pj in values.items():
        for name in names:
            actions[name] = pj * w * es * (cycle_s / _ALADDIN_CYCLE if name == "leak" else 1.0)
    return actions, area * w * area_scale_from_45(nm)


def dram(attrs: dict, key: str) -> tuple[dict[str, float], float]:
    kind = str(attrs.get("type", "LPDDR4"))
    if kind not in DRAM_PJ_PER_BIT:
        raise SpecError(f"DRAM type {kind!r} is not one Accelergy's DRAM model knows", key=key,
                        expected=f"one of {sorted(DRAM_PJ_PER_BIT)}")
    width = float(attrs.get("width", 64))
    e = DRAM_PJ_PER_BIT[kind] * width
    return {"read": e, "write": e, "update": e, "leak": 0.0}, 0.0
