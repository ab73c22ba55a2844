"""What one evaluated design (one trial) leaves behind, as plain JSON-able data.

A ``TrialRecord`` is written to ``<study dir>/trials/<number>.json`` by the
study driver as soon as the trial is told to Optuna; MLflow logging, the
Pareto front, ``coopt pareto`` and ``coopt export`` all read these records,
so nothing needs re-evaluating and nothing depends on MLflow being up.
"""
from __future__ import annotations

import base64
import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from coopt.errors import CooptError
from coopt.outputs import atomic_write_text

# Metrics every record carries (units in the names).
METRIC_NAMES = ("energy_uj", "throughput_ips", "latency_ms", "latency_cycles", "area_mm2", "power_mw",
                "onchip_kib", "edp_uj_ms", "macs", "mac_instances")
BUDGET_METRICS = {"area_mm2": "area_mm2", "power_mw": "power_mw", "onchip_kib": "onchip_kib",
                  "latency_ms": "latency_ms", "energy_uj": "energy_uj"}


@dataclass
class LayerRecord:
    name: str
    count: int
    found: bool
    energy_pj: float | None
    cycles: int | None
    utilization: float | None
    pj_per_mac: float | None
    mappings_evaluated: int
    seconds: float
    reason: str
    problem_yaml: dict                     # {"problem": ...} Timeloop problem YAML
    mapping_yaml: dict | None              # {"mapping": [...]} Timeloop mapping YAML


@dataclass
class TrialRecord:
    number: int                            # Optuna trial number
    params: dict                           # the search-space parameters of this design
    template: str
    template_params: dict                  # every template parameter, resolved
    dataflow: str | None
    network: str
    metrics: dict                          # METRIC_NAMES -> value
    feasible: bool                         # mapped completely and within every budget
    violations: dict                       # budget -> amount over it (> 0 violates, <= 0 slack)
    reasons: list[str]                     # why infeasible, one line each
    objectives: list[float]                # in the study's objective order (as told to Optuna)
    arch_yaml: dict                        # {"architecture": ...} as Timeloop/Accelergy read it
    layers: list[LayerRecord] = field(default_factory=list)
    seconds: float = 0.0
    worker: str = ""
    started_at: float | None = None        # wall clock (epoch seconds) when the evaluation began
    finished_at: float | None = None       # ... and ended; None in records written before these existed
    energy_method: str | None = None       # estimator of the energy tables (coopt.energy.select); None: default
    mapper_budget: int | None = None       # mappings per layer searched for this record; None: the space's
    screened: bool = False                 # mapped at the screening budget only: it could not enter the front
    not_mapped: list = field(default_factory=list)   # a user's model's ops outside the totals (NotMapped as dicts)
    spec: dict | None = None               # a v4 spec's files and variables (a spec-backed space), else None

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> TrialRecord:
        d = dict(d)
        d["layers"] = [LayerRecord(**l) for l in d.get("layers", [])]
        return TrialRecord(**d)


def design_key(params: dict) -> str:
    """One string per design (the same parameters in any order): repeats are found by it."""
    return json.dumps(params, sort_keys=True, default=str)


def trials_dir(study_dir: Path) -> Path:
    return Path(study_dir) / "trials"


def write_record(study_dir: Path, rec: TrialRecord) -> Path:
    """Atomically write a record (a crash or a full disk never leaves half a file)."""
    d = trials_dir(study_dir)
    d.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(d / f"{rec.number:06d}.json", json.dumps(rec.to_json(), indent=1), key=None)


def load_record_file(p: Path) -> TrialRecord:
    """One record file; a damaged one is one line naming it (``coopt doctor`` rebuilds it from the storage)."""
    try:
        if p.is_symlink() or not p.is_file():
            raise ValueError("not a plain file")
        return TrialRecord.from_json(json.loads(p.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, OSError) as e:
        study = p.parent.parent.name
        raise CooptError(f"trial record is damaged ({type(e).__name__}: {str(e)[:80]})", file=str(p),
                         expected=f"`coopt doctor {study} --repair` to rebuild it from the study's storage, "
                                  "or remove the file if the storage holds the trial") from None


def record_files(study_dir: Path) -> dict[int, Path]:
    """Trial number -> its record file (``NNNNNN.json``; other names are not records)."""
    d = trials_dir(study_dir)
    if not d.is_dir():
        return {}
    return {int(p.stem): p for p in sorted(d.glob("*.json")) if p.stem.isdigit()}


def read_records(study_dir: Path) -> list[TrialRecord]:
    return [load_record_file(p) for p in record_files(study_dir).values()]


def read_record(study_dir: Path, number: int) -> TrialRecord | None:
    p = trials_dir(study_dir) / f"{number:06d}.json"
    return load_record_file(p) if p.exists() or p.is_symlink() else None


RECORD_ATTR = "coopt.record"
CHUNK = 60_000                 # characters per user attribute (MySQL's TEXT holds 64 KiB)


def record_attrs(rec: TrialRecord) -> dict[str, str]:
    """The record as Optuna user attributes (compressed, in chunks): the storage then holds every
    result, so the read side works from any machine that reaches the storage."""
    blob = base64.b64encode(zlib.compress(json.dumps(rec.to_json()).encode(), 6)).decode()
    parts = [blob[i:i + CHUNK] for i in range(0, len(blob), CHUNK)] or [""]
    return {f"{RECORD_ATTR}.{i}": part for i, part in enumerate(parts)} | {f"{RECORD_ATTR}.parts": str(len(parts))}


def record_from_attrs(attrs: dict) -> TrialRecord | None:
    """The record kept in a trial's user attributes, None when it has none."""
    n = attrs.get(f"{RECORD_ATTR}.parts")
    if n is None:
        return None
    try:
        blob = "".join(attrs[f"{RECORD_ATTR}.{i}"] for i in range(int(n)))
        return TrialRecord.from_json(json.loads(zlib.decompress(base64.b64decode(blob))))
    except (KeyError, ValueError, TypeError, zlib.error) as e:
        raise CooptError(f"a trial's record in the storage is damaged ({type(e).__name__})", key=RECORD_ATTR,
                         expected="`coopt doctor STUDY --repair` to rebuild it from the study folder") from None
