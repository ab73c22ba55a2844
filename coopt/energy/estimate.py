"""Built-in energy/area estimates for an architecture, so a search needs no Accelergy install.

Choice: built-in tables, not a library.  The maintained Accelergy-project
models (``hwcomponents`` and its ``hwcomponents-cacti/-library/-neurosim/-adc``
plug-ins, and ``accelforge`` which depends on them) all declare
``Requires-Python >= 3.12`` on PyPI, so none installs on this project's
Python 3.11; ``accelergy`` itself is not on PyPI, and its CACTI plug-in runs a
C++ CACTI binary per SRAM (far over the ~50 ms per design a search allows).
So we evaluate small closed-form models here, with every constant cited below.

Models (per instance; pJ per action, um^2; constants at their source's node):

* MAC (``intmac``/``mac``): multiplier + adder, Horowitz, "Computing's energy
  problem", ISSCC 2014, 45 nm: 8/32-bit add 0.03/0.1 pJ, 36/137 um^2; 8/32-bit
  multiply 0.2/3.1 pJ, 282/3495 um^2 (power laws in bits through those two
  points: ~bits^0.87 for adders, ~bits^1.98 for multipliers).  The adder is
  ``adder_width`` bits, else twice the multiplier width (the accumulator holds
  a full product).  FP MACs use his FP16/FP32 add and multiply.
* Register files (``regfile``, ``smartbuffer_RF``): the structure of the
  timeloop-accelergy-exercises compound classes (``regfile`` = width
  registers read + one 32-bit comparator per row for row select;
  ``smartbuffer_RF`` = that regfile on a macro of at least 32 bits x 64 rows,
  scaled by width/32 and (depth/64)^0.78, plus two address-generator adders),
  evaluated with Aladdin's 40 nm tables (Shao et al., ISCA 2014, as shipped
  in Accelergy's Aladdin/library plug-ins and hwcomponents-library): register
  0.009 pJ and 5.98 um^2 per bit; 32-bit comparator 0.02947 pJ, 71 um^2,
  2.51e-5 pJ idle per 1 ns cycle.  The 0.78 = 1.56/2 depth exponent is the
  CACTI-derived one of Accelergy's library plug-in (scaling.py).
* SRAM (``SRAM``, ``smartbuffer_SRAM``), CACTI-like: read energy =
  width * 0.122 pJ/bit * sqrt(rows/1024) at 45 nm.  The square root of the
  row count is the bit-line/word-line length argument that Horowitz's 45 nm
  SRAM figures follow (8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ per 64-bit read);
  0.122 pJ/bit at 1024 rows is the CACTI read energy Accelergy reports for a
  1024 x 32-bit 45 nm SRAM in timeloop-accelergy-exercises
  (exercises/accelergy/01_primitive_architecture_ERT: 3.918 pJ).  Write =
  0.8 x read (CACTI write/read ratios in the Accelergy outputs we have: 0.92,
  0.78, 0.71).  Area = bits x 0.346 um^2 (Intel 45 nm 6T cell, Mistry et al.,
  IEDM 2007) / 0.75 array efficiency.  Leakage 6e-9 pJ per bit per ns
  (CACTI standby figures in the same Accelergy outputs, 4e-9 .. 8e-9).
  Arrays below 64 rows cost as 64 rows (CACTI's minimum subarray).
* DRAM: energy per bit by ``type`` from Accelergy's CACTI plug-in
  (cacti_wrapper.py): LPDDR4 8, LPDDR 40, DDR3 70 (Malladi et al., ISCA 2012),
  GDDR5 14, HBM2 3.9 (Chatterjee et al., MICRO 2017) pJ/bit; DDR4 15 pJ/bit is
  our assumption (that plug-in has no DDR4; 15 is the usual DDR4 access + I/O
  ballpark, just above its GDDR5).  Default type LPDDR4, as Accelergy's.
  Area 0, no leakage, no technology scaling (off chip).  A level with no depth
  (unbounded) is costed as DRAM; a storage class we do not know is costed as
  a register file up to 8 Kib and as SRAM above.
* ``dummy_storage``: zero energy, 1 um^2 (Accelergy reports 1.0).

Technology scaling: Stillmaker & Baas, "Scaling equations for the accurate
prediction of CMOS device performance from 180nm to 7nm", Integration 58
(2017): area by their 45 nm row of factors, energy by their per-node
a*V^2 + b*V + c fits at V = 0.8 V (the tables Accelergy's library plug-in and
hwcomponents use), log-linearly interpolated between tabulated nodes.  Outside
130..7 nm: area ~ L^2 and energy ~ L (C*V^2 with C ~ L, V fixed).

Calibration against Accelergy 0.4 on the Eyeriss-like 32 nm reference is
reported by tests/test_energy.py; every constant above is from its source,
none is tuned per reference case.
"""
from __future__ import annotations

import math
import re
from typing import Any

from coopt.arch.spec import ArithmeticLevel, Architecture, StorageLevel
from coopt.energy.scaling import AREA_FROM_45 as _AREA_FROM_45
from coopt.energy.scaling import ENERGY_AT as _ENERGY_AT
from coopt.energy.scaling import NODES_NM
from coopt.energy.tables import EnergyTables
from coopt.errors import SpecError

# --- technology scaling (Stillmaker & Baas 2017: coopt/energy/scaling.py) -----
_NODES = tuple(float(n) for n in NODES_NM)


def parse_node(tech: Any) -> float:
    """Technology node in nm from ``"32nm"``, ``"0.045um"``, ``32``, ``32e-9``."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(nm|um|m)?\s*", str(tech))
    if not m or float(m.group(1)) <= 0:
        raise SpecError(f"technology {tech!r} is not a node size", key="architecture.technology",
                        expected="e.g. '45nm' or '32nm'")
    x, unit = float(m.group(1)), m.group(2)
    if unit == "um" or (unit is None and 1e-3 <= x < 1):
        return x * 1e3
    if unit == "m" or (unit is None and x < 1e-3):
        return x * 1e9
    return x


def _log_interp(nm: float, table: tuple[float, ...], far_exp: float) -> float:
    """Value of ``table`` (indexed like _NODES) at ``nm``: log-linear inside, ~nm**far_exp outside."""
    if nm >= _NODES[0]:
        return table[0] * (nm / _NODES[0]) ** far_exp
    if nm <= _NODES[-1]:
        return table[-1] * (nm / _NODES[-1]) ** far_exp
    for i in range(len(_NODES) - 1):
        big, small = _NODES[i], _NODES[i + 1]
        if small <= nm <= big:
            t = (big - nm) / (big - small)
            return math.exp((1 - t) * math.log(table[i]) + t * math.log(table[i + 1]))
    raise AssertionError(nm)  # pragma: no cover


def energy_scale(to_nm: float, from_nm: float) -> float:
    return _log_interp(to_nm, _ENERGY_AT, 1.0) / _log_interp(from_nm, _ENERGY_AT, 1.0)


def area_scale(to_nm: float, from_nm: float) -> float:
    return _log_interp(to_nm, _AREA_FROM_45, 2.0) / _log_interp(from_nm, _AREA_FROM_45, 2.0)


# --- arithmetic (Horowitz ISSCC 2014, 45 nm) ---------------------------------
_HOROWITZ_NM = 45.0
_INT = {"add": ((8, 0.03, 36.0), (32, 0.1, 137.0)), "mult": ((8, 0.2, 282.0), (32, 3.1, 3495.0))}
_FP = {16: {"add": (0.4, 1360.0), "mult": (1.1, 1640.0)}, 32: {"add": (0.9, 4184.0), "mult": (3.7, 7700.0)}}
_IDLE_FRACTION = 0.0023 / 0.21   # Aladdin adder idle / dynamic energy per 1 ns cycle


def _int_op(op: str, bits: float) -> tuple[float, float]:
    """(pJ, um^2) of an integer ``op`` of ``bits`` bits: power law through Horowitz's 8/32-bit points."""
    (b0, e0, a0), (b1, e1, a1) = _INT[op]
    r = max(bits, 1.0) / b0
    return (e0 * r ** (math.log(e1 / e0) / math.log(b1 / b0)),
            a0 * r ** (math.log(a1 / a0) / math.log(b1 / b0)))


def _bits(attrs: dict, keys: tuple[str, ...], default: float) -> float:
    for k in keys:
        v = attrs.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
    return float(default)


def _arithmetic(unit: ArithmeticLevel, nm: float, cycle_ns: float) -> tuple[dict[str, float], float]:
    cls, attrs = unit.cls.lower(), unit.attributes or {}
    parts = [op for op in ("add", "mult") if op in cls.replace("multiplier", "mult").replace("adder", "add")]
    parts = parts or ["add", "mult"]               # mac, intmac, anything else: both
    mult_bits = _bits(attrs, ("multiplier_width", "width", "datawidth"), unit.word_bits)
    if parts == ["add"]:                           # a lone adder is as wide as its operands
        add_bits = _bits(attrs, ("adder_width", "width", "datawidth"), unit.word_bits)
    else:                                          # a MAC's accumulator holds a full product
        add_bits = _bits(attrs, ("adder_width",), 2 * mult_bits)
    energy = area = 0.0
    for op in parts:
        if "fp" in cls or "float" in cls:
            e, a = _FP[16 if mult_bits <= 16 else 32][op]
        else:
            e, a = _int_op(op, add_bits if op == "add" else mult_bits)
        energy, area = energy + e, area + a
    energy *= energy_scale(nm, _HOROWITZ_NM)
    area *= area_scale(nm, _HOROWITZ_NM)
    return {"compute": energy, "leak": energy * _IDLE_FRACTION * cycle_ns}, area


# --- register files (Aladdin 40 nm, Accelergy compound structure) ------------
_ALADDIN_NM = 40.0
_REG_E, _REG_A = 0.009, 5.98            # per bit
_CMP_E, _CMP_A, _CMP_LEAK = 0.02947, 71.0, 2.51e-5   # 32-bit comparator, one per row
_MIN_W, _MIN_D, _DEPTH_EXP = 32, 64, 1.56 / 2


def _regfile(w: int, d: int, nm: float, cycle_ns: float) -> tuple[float, float, float]:
    """(access pJ, leak pJ/cycle, um^2) of a register file of ``d`` rows x ``w`` bits."""
    W, D = max(_MIN_W, w), max(_MIN_D, d)
    dyn = (w / W) * (d / D) ** _DEPTH_EXP * (W * _REG_E + D * _CMP_E)
    static = (w / W) * (d / D)
    leak = static * D * _CMP_LEAK * cycle_ns
    area = static * (W * D * _REG_A + D * _CMP_A)
    es = energy_scale(nm, _ALADDIN_NM)
    return dyn * es, leak * es, area * area_scale(nm, _ALADDIN_NM)


# --- SRAM (CACTI-like, 45 nm) --------------------------------------------------
_SRAM_NM = 45.0
_SRAM_E_BIT_1K, _SRAM_ROWS_EXP, _SRAM_WRITE = 0.122, 0.5, 0.8
_SRAM_A_BIT = 0.346 / 0.75
_SRAM_LEAK_BIT = 6e-9


def _sram(w: int, d: int, nm: float, cycle_ns: float) -> tuple[float, float, float, float]:
    """(read pJ, write pJ, leak pJ/cycle, um^2)."""
    rows = max(d, _MIN_D)
    es = energy_scale(nm, _SRAM_NM)
    read = w * _SRAM_E_BIT_1K * (rows / 1024) ** _SRAM_ROWS_EXP * es
    leak = w * rows * _SRAM_LEAK_BIT * cycle_ns * es
    return read, read * _SRAM_WRITE, leak, w * rows * _SRAM_A_BIT * area_scale(nm, _SRAM_NM)


# --- DRAM (Accelergy CACTI plug-in table) ------------------------------------
DRAM_PJ_PER_BIT = {"LPDDR4": 8.0, "LPDDR": 40.0, "DDR3": 70.0, "DDR4": 15.0, "GDDR5": 14.0, "HBM2": 3.9}


def _dram_type(level: StorageLevel) -> str:
    kind = str((level.attributes or {}).get("type", "LPDDR4")).upper()
    if kind not in DRAM_PJ_PER_BIT:
        raise SpecError(f"unknown DRAM type {kind!r}", key=f"architecture.{level.name}.type",
                        expected=f"one of {sorted(DRAM_PJ_PER_BIT)}")
    return kind


def _storage_kind(level: StorageLevel, w: int) -> str:
    cls = level.cls.lower()
    if "dummy" in cls:
        return "dummy"
    if "dram" in cls or level.is_dram or level.depth is None:
        return "dram"
    if "sram" in cls:
        return "sram"
    if "rf" in cls or "reg" in cls:
        return "rf"
    return "rf" if level.depth * w <= 8192 else "sram"   # unknown class: small -> RF, else SRAM


def _storage(level: StorageLevel, nm: float, cycle_ns: float) -> tuple[dict[str, float], float]:
    w = int(level.width or level.word_bits * level.block_size)
    kind = _storage_kind(level, w)
    if kind == "dummy":
        return {"read": 0.0, "write": 0.0, "update": 0.0, "leak": 0.0}, 1.0
    if kind == "dram":
        e = DRAM_PJ_PER_BIT[_dram_type(level)] * w
        return {"read": e, "write": e, "update": e, "leak": 0.0}, 0.0
    d = int(level.depth)
    if kind == "sram":
        read, write, leak, area = _sram(w, d, nm, cycle_ns)
    else:
        read, leak, area = _regfile(w, d, nm, cycle_ns)
        write = read
    if level.cls.lower().startswith(("smartbuffer", "buffet")):
        # Two address generators (read, write), each an adder of log2(depth) bits.
        e_ag, a_ag = _int_op("add", max(1, math.ceil(math.log2(max(d, 2)))))
        e_ag *= energy_scale(nm, _HOROWITZ_NM)
        # Their leakage is neglected (a few fJ per cycle; Accelergy's reference ERTs show none).
        read, write = read + e_ag, write + e_ag
        area += 2 * a_ag * area_scale(nm, _HOROWITZ_NM)
    return {"read": read, "write": write, "update": write, "leak": leak}, area


def estimate(arch: Architecture) -> EnergyTables:
    """Per-action energies and per-instance areas of every level of ``arch`` (source ``coopt-builtin``)."""
    nm = parse_node(arch.technology)
    cycle_ns = arch.cycle_seconds / 1e-9
    ert: dict[str, dict[str, float]] = {}
    art: dict[str, float] = {}
    for level in arch.storage:
        ert[level.name], art[level.name] = _storage(level, nm, cycle_ns)
    ert[arch.arithmetic.name], art[arch.arithmetic.name] = _arithmetic(arch.arithmetic, nm, cycle_ns)
    return EnergyTables(ert=ert, art=art, source="coopt-builtin")


def tables_for(arch: Architecture, ert_path: Any = None, art_path: Any = None) -> EnergyTables:
    """Built-in estimates, with every component found in the user's Accelergy ERT/ART replacing ours."""
    base = estimate(arch)
    if ert_path is None and art_path is None:
        return base
    from coopt.energy.accelergy_io import read_art, read_ert
    user = EnergyTables(ert=read_ert(ert_path) if ert_path is not None else {},
                        art=read_art(art_path) if art_path is not None else {}, source="accelergy")
    return base.merged(user)
