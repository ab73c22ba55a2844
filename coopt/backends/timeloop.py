"""The ``timeloop`` engine: run the real timeloop-model / timeloop-mapper (+ Accelergy).

Each call writes the architecture, its Accelergy component classes, the
problem, the mapping or the constraints and mapper settings, and (unless
Accelergy should estimate them) coopt's ERT/ART into a private working
directory — Timeloop cannot run two instances in one folder
(NVlabs/timeloop#272) — runs the binary with a timeout and reads its
``*.stats.txt`` and ``*.map.yaml`` back into coopt's results.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from coopt.arch.spec import Architecture
from coopt.arch.yaml_io import arch_to_yaml
from coopt.backends.base import Backend, MapperOptions
from coopt.backends.timeloop_stats import parse_stats, total_energy_pj
from coopt.energy.tables import EnergyTables
from coopt.errors import BinaryNotFound, CooptError
from coopt.mapper.constraints import MapConstraints
from coopt.model.evaluate import LevelEval, MappingEval
from coopt.model.mapping import Mapping, mapping_from_yaml, mapping_to_yaml
from coopt.results import LayerResult
from coopt.workload.networks import NetworkLayer
from coopt.workload.problem import Problem
from coopt.workload.yaml_io import problem_to_yaml
from coopt.yamlio import dump_yaml, load_yaml

INSTALL_HINT = ("Timeloop + Accelergy installed, e.g. from the public Docker image "
                "timeloopaccelergy/timeloop-accelergy-pytorch or built from source (NVlabs/timeloop, "
                "Accelergy-Project/accelergy), then on PATH or given with --timeloop-bin DIR")


def find_binary(name: str, bin_dir: str | None = None) -> str:
    if bin_dir:
        p = Path(bin_dir) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
        raise BinaryNotFound(f"{name} is not in {bin_dir}", key="--timeloop-bin", expected=INSTALL_HINT)
    found = shutil.which(name)
    if not found:
        raise BinaryNotFound(f"{name} is not on PATH", key="--engine timeloop", expected=INSTALL_HINT)
    return found


def _metric_names(metric) -> list[str]:
    out = []
    for m in metric:
        out.append({"edp": "edp", "energy": "energy", "delay": "delay"}[m])
    return out


class TimeloopBackend(Backend):
    name = "timeloop"

    def __init__(self, bin_dir: str | None = None, timeout_s: float = 3600, threads: int | None = None,
                 use_accelergy: bool = False, keep_dir: str | None = None):
        self.bin_dir, self.timeout_s, self.threads = bin_dir, timeout_s, threads
        self.use_accelergy, self.keep_dir = use_accelergy, keep_dir

    # ------------------------------------------------------------------ files
    def _write_inputs(self, work: Path, problem: Problem, arch: Architecture, tables: EnergyTables | None) -> list[str]:
        from coopt.energy.accelergy_files import art_yaml, components_yaml, ert_yaml

        files = {"arch.yaml": arch_to_yaml(arch), "components.yaml": components_yaml(arch),
                 "problem.yaml": problem_to_yaml(problem)}
        if tables is not None and not self.use_accelergy:
            files["ERT.yaml"] = ert_yaml(arch, tables)
            files["ART.yaml"] = art_yaml(arch, tables)
        for name, doc in files.items():
            dump_yaml(doc, work / name)
        return list(files)

    def _run(self, binary: str, args: list[str], work: Path) -> None:
        try:
            proc = subprocess.run([binary, *args], cwd=work, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise CooptError(f"{Path(binary).name} did not finish within {self.timeout_s:.0f} s",
                             key="--timeout") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise CooptError(f"{Path(binary).name} failed with exit code {proc.returncode}: {tail[0]}",
                             file=str(work))

    def _workdir(self):
        if self.keep_dir:
            d = Path(self.keep_dir)
            d.mkdir(parents=True, exist_ok=True)
            return d, None
        tmp = tempfile.TemporaryDirectory(prefix="coopt-timeloop-")
        return Path(tmp.name), tmp

    # ------------------------------------------------------------------ model
    def evaluate(self, problem: Problem, arch: Architecture, tables: EnergyTables | None, mapping: Mapping) -> MappingEval:
        """timeloop-model on one mapping."""
        binary = find_binary("timeloop-model", self.bin_dir)
        work, tmp = self._workdir()
        try:
            files = self._write_inputs(work, problem, arch, tables)
            dump_yaml(mapping_to_yaml(mapping, arch, problem), work / "map.yaml")
            self._run(binary, files + ["map.yaml"], work)
            return eval_from_stats(parse_stats(work / "timeloop-model.stats.txt"), problem, arch)
        finally:
            if tmp:
                tmp.cleanup()

    # ------------------------------------------------------------------ mapper
    def search(self, problem: Problem, arch: Architecture, tables: EnergyTables | None, targets: list,
               options: MapperOptions) -> tuple[Mapping, MappingEval, float]:
        binary = find_binary("timeloop-mapper", self.bin_dir)
        work, tmp = self._workdir()
        try:
            files = self._write_inputs(work, problem, arch, tables)
            mapper = {"optimization_metrics": _metric_names(options.metric), "algorithm": "random-pruned",
                      "victory_condition": max(100, options.budget // 10), "timeout": max(1000, options.budget),
                      "search_size": options.budget, "log_stats": False, "live_status": False}
            if self.threads:
                mapper["num_threads"] = self.threads
            dump_yaml({"mapper": mapper, "constraints": {"targets": list(targets)}}, work / "mapper.yaml")
            t0 = time.perf_counter()
            self._run(binary, files + ["mapper.yaml"], work)
            seconds = time.perf_counter() - t0
            stats = parse_stats(work / "timeloop-mapper.stats.txt")
            mapping = mapping_from_yaml(load_yaml(work / "timeloop-mapper.map.yaml").get("mapping"), arch, problem,
                                        file=str(work / "timeloop-mapper.map.yaml"))
            return mapping, eval_from_stats(stats, problem, arch), seconds
        finally:
            if tmp:
                tmp.cleanup()

    def map_layer(self, layer: NetworkLayer, arch: Architecture, tables: EnergyTables,
                  constraints: MapConstraints, options: MapperOptions) -> LayerResult:
        try:
            mapping, ev, seconds = self.search(layer.problem, arch, tables, constraints.source, options)
        except BinaryNotFound:
            raise
        except CooptError as e:
            return LayerResult(name=layer.name, count=layer.count, problem=layer.problem, mapping=None, eval=None,
                               engine=self.name, reason=e.message, members=layer.members)
        return LayerResult(name=layer.name, count=layer.count, problem=layer.problem, mapping=mapping, eval=ev,
                           engine=self.name, seconds=seconds, members=layer.members)


def eval_from_stats(stats: dict, problem: Problem, arch: Architecture) -> MappingEval:
    """A MappingEval from Timeloop's printed statistics (per-instance counts, pJ, cycles)."""
    macs = stats["computes"]
    levels = []
    for lvl in arch.storage:
        s = stats["levels"].get(lvl.name, {"dataspaces": {}})
        ds = {}
        for d in problem.dataspaces:
            v = s["dataspaces"].get(d.name, {})
            ds[d.name] = {"reads": int(v.get("reads", 0)), "fills": int(v.get("fills", 0)),
                          "updates": int(v.get("updates", 0)), "tile": int(v.get("utilized_capacity", 0)),
                          "energy_pj": float(v.get("energy_pj", 0.0))}
        fj = stats["fj_per_compute"].get(lvl.name)
        energy = fj * macs / 1000 if fj is not None else sum(x["energy_pj"] for x in ds.values())
        levels.append(LevelEval(name=lvl.name, energy_pj=energy, leak_pj=float(s.get("Leakage energy (total)", 0.0)),
                                cycles=int(s.get("Cycles", stats["cycles"])),
                                instances_used=int(max([v.get("utilized_instances", 0)
                                                        for v in s["dataspaces"].values()] or [0])),
                                dataspaces=ds))
    mac_fj = stats["fj_per_compute"].get(arch.arithmetic.name, 0.0)
    return MappingEval(valid=True, reason="", energy_pj=total_energy_pj(stats), cycles=int(stats["cycles"]),
                       compute_cycles=int(stats["mac"].get("Cycles", stats["cycles"])),
                       utilization=float(stats["utilization"]), macs=int(macs), mac_energy_pj=mac_fj * macs / 1000,
                       area_um2=float("nan"), levels=levels)
