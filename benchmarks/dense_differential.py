"""coopt's dense model against the REAL timeloop-model on random mappings of a design's mapspace.

Why: the reference cases check the mappings Timeloop's mapper chose; coopt's mapper explores whole
mapspaces.  This samples valid mappings of a few ResNet-50 layers on one design (a template, or a search
space's v4 spec), writes the design's arch.yaml, coopt's ERT/ART, each problem and mapping as ``coopt
export`` would, runs timeloop-model (benchmarks/build_real_tools.sh) on them, and prints how many differ
from coopt in cycles, energy (> 1e-4) or any per-level read/fill/update count.  CI never runs it.

    PATH=/opt/realtools/bin:$PATH python benchmarks/dense_differential.py eyeriss_like \\
        --layers layer1.0.conv2,fc [--set pe_rows=8] [--n 10] [--seed 1]
    PATH=... python benchmarks/dense_differential.py search_spaces/simba_v4.yaml --set n_pes=16 ...
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
NAMES = {"random_read": "reads", "random_fill": "fills", "random_update": "updates"}


def _value(text: str):
    import yaml
    return yaml.safe_load(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("design", help="a template name, or a search space whose spec: is a v4 design")
    ap.add_argument("--layers", default="layer1.0.conv2,layer2.0.downsample,fc")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--n", type=int, default=10, help="mappings per layer")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    timeloop = shutil.which("timeloop-model")
    if not timeloop:
        print("dense_differential: timeloop-model not on PATH (benchmarks/build_real_tools.sh)", file=sys.stderr)
        return 2
    from test_sparse_reference import parse_sparse_stats

    from coopt.design import design_from_template
    from coopt.energy.accelergy_files import art_yaml, dumps_accelergy, ert_yaml, with_required_actions
    from coopt.mapper.constraints import parse_constraints
    from coopt.mapper.space import MapSpace
    from coopt.model.evaluate import evaluate
    from coopt.model.mapping import mapping_to_yaml
    from coopt.workload.networks import resnet50
    from coopt.workload.yaml_io import problem_to_yaml
    from coopt.yamlio import dumps_yaml

    params = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    template = args.design
    if args.design.endswith((".yaml", ".yml")):
        from coopt.study.space import load_space
        template = load_space(args.design).template
    design = design_from_template(template, params)
    arch = design.arch
    work = Path(tempfile.mkdtemp(prefix="dense_differential_"))
    (work / "arch.yaml").write_text(dumps_accelergy(with_required_actions(design.arch_yaml, arch)))
    (work / "ERT.yaml").write_text(dumps_yaml(ert_yaml(arch, design.tables)))
    (work / "ART.yaml").write_text(dumps_yaml(art_yaml(arch, design.tables)))
    layers = {layer.name: layer for layer in resnet50().layers}
    total = differ = compared = 0
    for name in args.layers.split(","):
        layer = layers[name]
        prob = work / f"{name}.prob.yaml"
        prob.write_text(dumps_yaml(problem_to_yaml(layer.problem)))
        space = MapSpace(layer.problem, arch, parse_constraints(design.targets, arch, layer.problem,
                                                                file=design.constraints_file))
        mb = space.sample(3000, np.random.default_rng(args.seed))
        mb = mb.take(np.nonzero(space.prefilter(mb).ok)[0])
        levels, tensors = [lvl.name for lvl in arch.storage], [d.name for d in layer.problem.dataspaces]
        for b in np.random.default_rng(args.seed).permutation(len(mb))[:args.n]:
            m = mb.mapping(int(b), levels, layer.problem.dims, tensors)
            ev = evaluate(layer.problem, arch, design.tables, m)
            mf = work / f"{name}.map{b}.yaml"
            mf.write_text(dumps_yaml(mapping_to_yaml(m, arch, layer.problem)))
            run = Path(tempfile.mkdtemp(dir=work))
            subprocess.run([timeloop, str(work / "arch.yaml"), str(prob), str(mf), str(work / "ERT.yaml"),
                            str(work / "ART.yaml")], cwd=run, capture_output=True, text=True)
            stats = run / "timeloop-model.stats.txt"
            total += 1
            if not stats.is_file():
                if ev.valid:
                    differ += 1
                    print(f"  {name} {mf.name}: timeloop-model refused a mapping coopt finds valid ({run})")
                continue
            real = parse_sparse_stats(stats.read_text())
            diffs = [] if ev.valid else [f"coopt invalid: {ev.reason}"]
            if ev.cycles != real["cycles"]:
                diffs.append(f"cycles {ev.cycles} != {real['cycles']}")
            if abs(ev.energy_pj - real["energy_pj"]) > 1e-4 * real["energy_pj"]:
                diffs.append(f"energy {ev.energy_pj:.7g} != {real['energy_pj']:.7g}")
            mine = {lvl.name: lvl.dataspaces for lvl in ev.levels}
            for level, spaces in real["levels"].items():
                for ds, counts in spaces.items():
                    got = mine.get(level, {}).get(ds)
                    for k, v in counts.items():
                        if got is not None and k in NAMES:
                            compared += 1
                            if got.get(NAMES[k]) != v:
                                diffs.append(f"{level}.{ds}.{NAMES[k]} {got.get(NAMES[k])} != {v}")
            if diffs:
                differ += 1
                print(f"  {name} {mf.name}: {'; '.join(diffs[:4])}")
    print(f"{args.design} {args.layers}: {total} mappings, {compared} counts compared, {differ} differ (files: {work})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
