"""Exported designs through the REAL timeloop-model with Accelergy's own energy estimates.

Why: ``coopt export`` promises folders that the real tools accept and that
agree with coopt.  This script evaluates a few designs (the Eyeriss-like
template at points of ``search_spaces/edge.yaml``'s space and the systolic
template), exports them with coopt's export module, and runs every exported
layer through ``timeloop-model arch.yaml components.yaml prob/L.yaml
map/L.yaml`` WITHOUT ``ERT.yaml``/``ART.yaml``, so that Timeloop calls
Accelergy (and its CACTI / Library / NeuroSim plug-ins) for the energies.
Per design it prints whether the cycles are equal, Timeloop+Accelergy's
total energy against coopt's (ratio), the worst layer, and the ERT action
whose energy differs most between Accelergy's table (written by Timeloop
into the run folder) and coopt's exported ``ERT.yaml``.  It also runs each
exported ``run_timeloop.sh`` (coopt's own ERT/ART) once and reports PASS/FAIL.

Exit status 0 when every design has equal cycles and a total energy within
``--tolerance`` (3 %) of coopt's, 1 otherwise, 2 when the tools are missing.

    python benchmarks/timeloop_accelergy_check.py [--timeloop-model PATH] [--accelergy PATH]
        [--layers 4] [--budget 300] [--out DIR] [--tolerance 0.03]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from coopt.backends.base import MapperOptions
from coopt.backends.timeloop_stats import parse_stats, total_energy_pj
from coopt.energy.accelergy_io import read_ert
from coopt.export import export_trials
from coopt.study.records import write_record
from coopt.study.trial import evaluate_design
from coopt.workload.networks import Network, resnet50

OBJECTIVES = [("energy_uj", "minimize"), ("throughput_ips", "maximize")]
FIXED = {"technology": "32nm", "psum_bits": 16}          # search_spaces/edge.yaml's fixed values
# trial number -> (template, parameters): points inside edge.yaml's ranges, and the systolic template
DESIGNS = {
    0: ("eyeriss_like", {**FIXED, "pe_rows": 12, "pe_cols": 14, "glb_depth": 8192, "ifmap_spad_depth": 12,
                         "weights_spad_depth": 256, "psum_spad_depth": 16, "word_bits": 8, "clock_mhz": 200}),
    1: ("eyeriss_like", {**FIXED, "pe_rows": 6, "pe_cols": 8, "glb_depth": 2048, "ifmap_spad_depth": 6,
                         "weights_spad_depth": 64, "psum_spad_depth": 8, "word_bits": 16, "clock_mhz": 400}),
    2: ("eyeriss_like", {**FIXED, "pe_rows": 16, "pe_cols": 16, "glb_depth": 16384, "ifmap_spad_depth": 24,
                         "weights_spad_depth": 512, "psum_spad_depth": 64, "word_bits": 8, "clock_mhz": 800}),
    3: ("systolic_ws", {}),
    4: ("systolic_ws", {"pe_rows": 8, "pe_cols": 8, "word_bits": 16, "technology": "45nm"}),
}


def find_tool(name: str, given: str | None) -> str | None:
    """The tool's path: the flag if given, else PATH."""
    if given:
        return str(Path(given).resolve()) if Path(given).is_file() else None
    return shutil.which(name)


def tool_env(timeloop: str, accelergy: str) -> dict:
    """PATH with both tools' folders first (Timeloop finds Accelergy with `which accelergy`)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(accelergy).parent), str(Path(timeloop).parent), env.get("PATH", "")])
    return env


def run_layer(trial_dir: Path, stem: str, run_dir: Path, env: dict, timeloop: str) -> tuple[int, float, dict]:
    """One layer through timeloop-model without ERT/ART; (cycles, pJ, Accelergy's ERT)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    files = [trial_dir / "arch.yaml", trial_dir / "components.yaml", trial_dir / "prob" / f"{stem}.yaml",
             trial_dir / "map" / f"{stem}.yaml"]
    proc = subprocess.run([timeloop, *map(str, files)], cwd=run_dir, env=env, capture_output=True, text=True,
                          timeout=900)
    (run_dir / "timeloop-model.log").write_text(proc.stdout + proc.stderr)
    stats, ert = run_dir / "timeloop-model.stats.txt", run_dir / "timeloop-model.ERT.yaml"
    # Timeloop exits 0 even when Accelergy fails: the files it writes are the proof that it ran
    if proc.returncode != 0 or not stats.is_file() or not ert.is_file():
        raise RuntimeError(f"timeloop-model failed in {run_dir} (exit {proc.returncode}); see timeloop-model.log "
                           f"and timeloop-model.accelergy.log there")
    parsed = parse_stats(stats)
    return parsed["cycles"], total_energy_pj(parsed), read_ert(ert)


def ert_gap(accelergy_ert: dict, coopt_ert: dict) -> tuple[float, str]:
    """The ERT entry whose energy differs most (relative) between Accelergy and coopt."""
    worst = (0.0, "none")
    for comp, actions in accelergy_ert.items():
        for action, ref in actions.items():
            got = coopt_ert.get(comp, {}).get(action)
            if got is None:
                worst = max(worst, (float("inf"), f"{comp}.{action} missing in coopt's ERT"))
                continue
            rel = abs(got - ref) / ref if ref else abs(got)
            worst = max(worst, (rel, f"{comp}.{action} coopt {got:.5g} pJ vs Accelergy {ref:.5g} pJ"))
    return worst


def run_script(trial_dir: Path, env: dict) -> tuple[int, str]:
    """The exported run_timeloop.sh (coopt's ERT/ART): exit status and its PASS/FAIL tally."""
    proc = subprocess.run(["sh", str(trial_dir / "run_timeloop.sh")], env=env, capture_output=True, text=True,
                          timeout=1800)
    passed = sum(1 for line in proc.stdout.splitlines() if line.rstrip().endswith("PASS"))
    failed = sum(1 for line in proc.stdout.splitlines() if "FAIL" in line or "ERROR" in line)
    return proc.returncode, f"{passed} PASS, {failed} FAIL"


def make_study(folder: Path, layers: int, budget: int) -> None:
    """Trial records for DESIGNS over ResNet-50's first distinct layers (coopt's mapper, fixed seed)."""
    net = Network("resnet50-head", resnet50().layers[:layers])
    for n, (template, params) in DESIGNS.items():
        rec = evaluate_design(n, params, template, params, None, net, MapperOptions(budget=budget, seed=0), {},
                              OBJECTIVES)
        write_record(folder, rec)
    (folder / "study.json").write_text(json.dumps({"settings": {"budgets": {}, "objectives": OBJECTIVES}}))


def check_design(trial_dir: Path, env: dict, timeloop: str, tolerance: float) -> dict:
    summary = json.loads((trial_dir / "summary.json").read_text())
    coopt_ert = read_ert(trial_dir / "ERT.yaml")
    rows, gap = [], (0.0, "none")
    for layer in summary["layers"]:
        if not layer["mapped"]:
            raise RuntimeError(f"{trial_dir.name}: layer {layer['name']} was not mapped by coopt")
        cycles, pj, ert = run_layer(trial_dir, layer["file"], trial_dir / "out-real" / layer["file"], env, timeloop)
        rows.append({"layer": layer["name"], "count": layer["count"], "coopt_cycles": layer["cycles"],
                     "tl_cycles": cycles, "coopt_pj": layer["energy_pj"], "tl_pj": pj})
        gap = max(gap, ert_gap(ert, coopt_ert))
    coopt_total = sum(r["count"] * r["coopt_pj"] for r in rows)
    tl_total = sum(r["count"] * r["tl_pj"] for r in rows)
    worst = max(rows, key=lambda r: abs(r["tl_pj"] / r["coopt_pj"] - 1))
    cycles_equal = all(r["coopt_cycles"] == r["tl_cycles"] for r in rows)
    ratio = tl_total / coopt_total
    return {"trial": summary["trial"], "template": summary["template"], "params": summary["params"],
            "layers": rows, "cycles_equal": cycles_equal, "ratio": ratio, "worst_layer": worst,
            "ert_gap": gap, "ok": cycles_equal and abs(ratio - 1) <= tolerance}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeloop-model", help="path of timeloop-model (default: PATH)")
    ap.add_argument("--accelergy", help="path of accelergy (default: PATH)")
    ap.add_argument("--layers", type=int, default=4, help="ResNet-50's first N distinct layers (default 4)")
    ap.add_argument("--budget", type=int, default=300, help="coopt mapper evaluations per layer (default 300)")
    ap.add_argument("--tolerance", type=float, default=0.03, help="allowed total-energy gap (default 0.03)")
    ap.add_argument("--out", help="keep the exports and Timeloop runs here (default: a temporary folder)")
    args = ap.parse_args(argv)
    timeloop = find_tool("timeloop-model", args.timeloop_model)
    accelergy = find_tool("accelergy", args.accelergy)
    if not timeloop or not accelergy:
        print("timeloop_accelergy_check: needs timeloop-model and accelergy (on PATH or --timeloop-model/"
              "--accelergy)", file=sys.stderr)
        return 2
    env = tool_env(timeloop, accelergy)
    root = Path(args.out or tempfile.mkdtemp(prefix="coopt-tlcheck-")).resolve()
    study, out = root / "study", root / "export"
    study.mkdir(parents=True, exist_ok=True)
    make_study(study, args.layers, args.budget)
    folders = export_trials(study, list(DESIGNS), out, force=True)
    print(f"exports in {out}; timeloop-model {timeloop}; accelergy {accelergy}")
    print(f"{'trial':>5} {'design':<58} {'cycles':>7} {'TL+Acc/coopt':>12}  worst layer (ratio)   "
          f"run_timeloop.sh")
    status = 0
    for folder in folders:
        res = check_design(folder, env, timeloop, args.tolerance)
        rc, tally = run_script(folder, env)
        w = res["worst_layer"]
        design = res["template"] + " " + ",".join(f"{k}={v}" for k, v in res["params"].items()
                                                  if FIXED.get(k) != v)
        print(f"{res['trial']:>5} {design[:58]:<58} {'equal' if res['cycles_equal'] else 'DIFFER':>7} "
              f"{res['ratio']:>12.6f}  {w['layer']} ({w['tl_pj'] / w['coopt_pj']:.6f})   "
              f"{'PASS' if rc == 0 else 'FAIL'} ({tally})")
        print(f"      largest ERT gap: {res['ert_gap'][1]} ({res['ert_gap'][0]:.2%})")
        for r in res["layers"]:
            print(f"      {r['layer']:<18} x{r['count']}  cycles {r['coopt_cycles']} / {r['tl_cycles']}  "
                  f"energy coopt {r['coopt_pj']:.6g} pJ, Timeloop+Accelergy {r['tl_pj']:.6g} pJ "
                  f"({r['tl_pj'] / r['coopt_pj']:.6f})")
        if not res["ok"] or rc != 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
