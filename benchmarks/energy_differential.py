"""coopt's Accelergy-method ERT/ART against the REAL Accelergy 0.4 on random designs of a search space.

Why: ``coopt energy`` is checked against real Accelergy on a dozen fixed designs; a study visits many
more (buffer sizes, word widths, clocks, technologies).  This draws random parameter points of a search
space (its template and domains; ``--technology`` to vary the node too), writes each design's arch.yaml
and components.yaml as ``coopt export`` does, runs ``accelergy`` (benchmarks/build_real_tools.sh) on them
and compares every ERT action energy and ART area with coopt's, printing the entries off by more than
``--rel`` (default 1e-4).  CI never runs it.

    PATH=/opt/realtools/bin:$PATH python benchmarks/energy_differential.py [--space edge] [--n 8] [--seed 1]
        [--technology 22nm 32nm 45nm 65nm]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _draw(space, rng) -> dict:
    out = {}
    for p in space.params:
        values = p.values()
        out[p.name] = values[int(rng.integers(len(values)))] if values else float(rng.uniform(p.low, p.high))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="edge")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--technology", nargs="*", default=[], help="technologies to draw from (default: the space's)")
    ap.add_argument("--rel", type=float, default=1e-4)
    args = ap.parse_args()
    accelergy = shutil.which("accelergy")
    if not accelergy:
        print("energy_differential: accelergy not on PATH (benchmarks/build_real_tools.sh)", file=sys.stderr)
        return 2
    from coopt.design import design_from_template
    from coopt.energy.accelergy_files import (components_yaml, dumps_accelergy, with_numeric_version,
                                              with_required_actions)
    from coopt.energy.accelergy_io import read_art, read_ert
    from coopt.study.space import load_space

    space = load_space(args.space)
    rng = np.random.default_rng(args.seed)
    designs = differ = entries = 0
    for _ in range(args.n):
        params = _draw(space, rng)
        values = {**space.template_params(params)}
        if args.technology:
            values["technology"] = args.technology[int(rng.integers(len(args.technology)))]
        design = design_from_template(space.template, values, space.dataflow)
        work = Path(tempfile.mkdtemp(prefix="energy_differential_"))
        classes = []
        if design.spec:                          # a v4 spec's own classes, as its export writes them
            from coopt.design import component_classes
            classes = component_classes(*space.template.load(design.params))
        comps = components_yaml(design.arch, classes)
        written = {c["name"] for c in comps["compound_components"]["classes"]}
        (work / "arch.yaml").write_text(dumps_accelergy(with_numeric_version(with_required_actions(
            design.arch_yaml, design.arch, compound=written if classes else None))))
        (work / "components.yaml").write_text(dumps_accelergy(comps))
        run = subprocess.run([accelergy, "arch.yaml", "components.yaml", "-o", "out"], cwd=work,
                             capture_output=True, text=True)
        designs += 1
        if run.returncode != 0 or not (work / "out" / "ERT.yaml").is_file():
            differ += 1
            print(f"  {values}: accelergy failed ({work})")
            continue
        ert, art = read_ert(work / "out" / "ERT.yaml"), read_art(work / "out" / "ART.yaml")
        bad = []
        for name, actions in design.tables.ert.items():
            for action, pj in actions.items():
                real = ert.get(name, {}).get(action)
                if real is None:
                    continue
                entries += 1
                if abs(pj - real) > args.rel * max(abs(real), 1e-12):
                    bad.append(f"{name}.{action} {pj:.6g} != {real:.6g}")
            real_area = art.get(name)
            if real_area is not None:
                entries += 1
                if abs(design.tables.art[name] - real_area) > args.rel * max(abs(real_area), 1e-12):
                    bad.append(f"{name} area {design.tables.art[name]:.6g} != {real_area:.6g}")
        if bad:
            differ += 1
            print(f"  {values}: {'; '.join(bad[:5])} ({work})")
    print(f"{args.space}: {designs} designs, {entries} ERT/ART entries compared, {differ} designs differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
