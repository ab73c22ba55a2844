"""Make the real-Timeloop oracles of ResNet-50 layers under sparsity (tests/data/sparse_resnet50/).

Why: the sparsity issue asks that ResNet-50 layers with densities, on the Eyeriss-like template with its
ifmap zero gating, be checked against the REAL Timeloop (not only against the exercises).  This script,
run by hand where the real tools are built (benchmarks/build_real_tools.sh), evaluates one design of
search_spaces/edge_sparse.yaml (gating on; with --compression also Eyeriss's DRAM run-length compression)
on a few ResNet-50 layers with coopt's mapper, exports it as
``coopt export`` does, runs the real ``timeloop-model`` on each layer's exported files (arch.yaml with
its sparse_optimizations, the problem with its densities, coopt's mapping, coopt's ERT/ART), and keeps
per layer the five input files plus ``oracle.json``: the real run's cycles, energy and every per-level
actual/gated/skipped count, parsed from its stats.  tests/test_sparse_resnet50_oracle.py holds coopt to
them.  CI never runs this script.

    PATH=/opt/realtools/bin:$PATH python benchmarks/make_sparse_oracles.py [--compression] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

LAYERS = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv2", "layer3.0.downsample", "fc"]
PARAMS = {"ifmap_zero_gating": True, "pe_rows": 12, "pe_cols": 14, "glb_depth": 4096, "ifmap_spad_depth": 12,
          "weights_spad_depth": 256, "psum_spad_depth": 16, "word_bits": 8, "clock_mhz": 400}
FILES = ("arch.yaml", "prob.yaml", "map.yaml", "ERT.yaml", "ART.yaml")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="default: tests/data/sparse_resnet50/gating (or gating_compression)")
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--compression", action="store_true",
                    help="also Eyeriss's DRAM run-length compression (dram_compression: true)")
    args = ap.parse_args()
    timeloop = shutil.which("timeloop-model")
    if not timeloop:
        print("make_sparse_oracles: timeloop-model not on PATH (benchmarks/build_real_tools.sh)", file=sys.stderr)
        return 2
    from test_sparse_reference import parse_sparse_stats

    from coopt.backends.base import MapperOptions
    from coopt.export import export_trials
    from coopt.export.design import safe_name
    from coopt.study.records import write_record
    from coopt.study.space import load_space
    from coopt.study.trial import evaluate_design
    from coopt.workload.networks import Network

    space = load_space("edge_sparse")
    net = Network("oracle", tuple(layer for layer in space.network.layers if layer.name in LAYERS))
    params = {**PARAMS, "dram_compression": True} if args.compression else PARAMS
    rec = evaluate_design(0, params, space.template, space.template_params(params), space.dataflow, net,
                          MapperOptions(budget=args.budget, seed=0), {}, space.objectives, sparsity=space.sparsity)
    work = Path(tempfile.mkdtemp(prefix="sparse_oracles_"))
    write_record(work / "study", rec)
    folder = export_trials(work / "study", [0], work / "export")[0]
    out = Path(args.out or ROOT / "tests" / "data" / "sparse_resnet50"
               / ("gating_compression" if args.compression else "gating"))
    out.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    for layer in rec.layers:
        if not layer.found:
            print(f"{layer.name}: not mapped ({layer.reason}); skipped", file=sys.stderr)
            continue
        stem = safe_name(layer.name)
        case = out / stem
        case.mkdir(exist_ok=True)
        for src, dst in ((folder / "arch.yaml", "arch.yaml"), (folder / "prob" / f"{stem}.yaml", "prob.yaml"),
                         (folder / "map" / f"{stem}.yaml", "map.yaml"), (folder / "ERT.yaml", "ERT.yaml"),
                         (folder / "ART.yaml", "ART.yaml")):
            shutil.copyfile(src, case / dst)
        run = work / "run" / stem
        run.mkdir(parents=True)
        proc = subprocess.run([timeloop, *(str(case / f) for f in FILES)], cwd=run, capture_output=True, text=True)
        stats = run / "timeloop-model.stats.txt"
        if proc.returncode != 0 or not stats.is_file():
            print(f"{layer.name}: timeloop-model failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        real = parse_sparse_stats(stats.read_text())
        real.update({"layer": layer.name, "made_by": f"timeloop-model (master 4cf6d4c, build_real_tools.sh) on the "
                     f"five files beside this one, exported by coopt {version} (benchmarks/make_sparse_oracles.py)",
                     "coopt_at_making": {"cycles": layer.cycles, "energy_pj": layer.energy_pj}})
        (case / "oracle.json").write_text(json.dumps(real, indent=1, sort_keys=True) + "\n")
        rel = (layer.energy_pj - real["energy_pj"]) / real["energy_pj"]
        print(f"{layer.name:22s} cycles coopt {layer.cycles:>10d} real {real['cycles']:>10d}   "
              f"energy coopt {layer.energy_pj:.6g} real {real['energy_pj']:.6g} pJ ({rel:+.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
