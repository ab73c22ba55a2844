"""coopt's Sparseloop model against the REAL timeloop-model on random mappings of the sparseloop exercises.

Why: the exercises' reference outputs check one mapping each, the one Timeloop's mapper chose; coopt's
mapper explores the whole mapspace, where the sparse accounting meets loop orders and bypasses no
reference covers (an optimisation whose target the optimising level does not keep, say).  This samples
valid mappings from each exercise's own mapspace (its constraints, as ``coopt map`` would), evaluates
each with coopt and with timeloop-model (benchmarks/build_real_tools.sh) on the same files, and prints
per exercise how many coopt evaluated, how many it refused ("not modelled yet") and how many of the
evaluated ones differ from Timeloop in cycles, any actual/gated/skipped count, MACs or energy (> 1e-4).
``--save DIR`` keeps a few mappings per exercise whose optimisation targets move to a level above
(the case the references do not cover), with Timeloop's figures, as test oracles
(tests/test_sparse_moved_targets.py).  CI never runs it.

    PATH=/opt/realtools/bin:$PATH python benchmarks/sparse_differential.py [--n 40] [--seed 4] [--save DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DATA = ROOT / "tests" / "data" / "sparseloop"
MODEL_KEYS = ("architecture", "problem", "sparse_optimizations", "compound_components")


def model_input(case: str, out: Path) -> Path:
    """The exercise's processed input as timeloop-model takes it with a mapping: no mapper, no mapspace."""
    raw = yaml.safe_load((DATA / case / "parsed-processed-input.yaml").read_text())
    f = out / "input.yaml"
    f.write_text(yaml.safe_dump({k: raw[k] for k in MODEL_KEYS if k in raw}))
    return f


def sample(case: str, n: int, seed: int):
    """Up to ``n`` random valid mappings of the exercise's mapspace, as Mapping objects."""
    from coopt.inputs import load_inputs
    from coopt.mapper.constraints import constraints_from_inputs
    from coopt.mapper.space import MapSpace

    c = DATA / case
    with tempfile.TemporaryDirectory() as tmp:
        raw = yaml.safe_load((c / "parsed-processed-input.yaml").read_text())
        raw.pop("mapping", None)
        f = Path(tmp) / "full.yaml"
        f.write_text(yaml.safe_dump(raw))
        inp = load_inputs([f, c / "timeloop-mapper.map.yaml"], ert=c / "timeloop-mapper.ERT.yaml",
                          art=c / "timeloop-mapper.ART.yaml", sparse=True)
    space = MapSpace(inp.problem, inp.arch, constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources))
    if inp.sparse is None:                     # a dense exercise (01.2.1): nothing sparse to check
        return inp, []
    space.leave_capacity_to_the_model({level for level, _ in inp.sparse.formats})
    mb = space.sample(4000, np.random.default_rng(seed))
    mb = mb.take(np.nonzero(space.prefilter(mb).ok)[0])
    names, ds = [lvl.name for lvl in inp.arch.storage], [d.name for d in inp.problem.dataspaces]
    pick = np.random.default_rng(seed).permutation(len(mb))[:n]
    return inp, [mb.mapping(int(b), names, inp.problem.dims, ds) for b in pick]


def _moved(inp, m) -> bool:
    """Whether some action optimisation's target is not kept at its optimising level (what the references
    do not cover; the saved oracles are these)."""
    names = [lvl.name for lvl in inp.arch.storage]
    return any(a.target not in m.levels[names.index(a.level)].keep for a in inp.sparse.actions)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--cases", nargs="*", default=sorted(p.name for p in DATA.iterdir() if p.is_dir()))
    ap.add_argument("--save", help="keep up to --keep mappings per exercise with Timeloop's figures here")
    ap.add_argument("--keep", type=int, default=4)
    args = ap.parse_args()
    timeloop = shutil.which("timeloop-model")
    if not timeloop:
        print("sparse_differential: timeloop-model not on PATH (benchmarks/build_real_tools.sh)", file=sys.stderr)
        return 2
    from test_sparse_moved_targets import differences
    from test_sparse_reference import parse_sparse_stats

    from coopt.cli import main as coopt
    from coopt.model.mapping import mapping_to_yaml

    bad_total = 0
    for case in args.cases:
        c = DATA / case
        inp, mappings = sample(case, args.n, args.seed)
        work = Path(tempfile.mkdtemp(prefix=f"diff_{case}_"))
        model = model_input(case, work)
        counts = {"evaluated": 0, "refused": 0, "timeloop_failed": 0, "differ": 0, "invalid_both": 0}
        kept = 0
        for i, m in enumerate(mappings):
            mf = work / f"map{i}.yaml"
            mf.write_text(yaml.safe_dump(mapping_to_yaml(m, inp.arch, inp.problem)))
            run = work / f"run{i}"
            run.mkdir()
            subprocess.run([timeloop, str(model), str(mf), str(c / "timeloop-mapper.ERT.yaml"),
                            str(c / "timeloop-mapper.ART.yaml")], cwd=run, capture_output=True, text=True)
            stats = run / "timeloop-model.stats.txt"
            real = parse_sparse_stats(stats.read_text()) if stats.is_file() else None
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
            saved = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = out, err
            try:
                rc = coopt(["evaluate", str(model), str(mf), "--ert", str(c / "timeloop-mapper.ERT.yaml"),
                            "--art", str(c / "timeloop-mapper.ART.yaml"), "--json"])
            finally:
                sys.stdout, sys.stderr = saved
            out.seek(0)
            err.seek(0)
            text = out.read()
            if rc == 2:
                counts["refused"] += 1
                continue
            got = json.loads(text)
            if real is None:
                counts["timeloop_failed" if got["valid"] else "invalid_both"] += 1
                if got["valid"]:
                    bad_total += 1
                continue
            counts["evaluated"] += 1
            diff = differences(got, real) if got["valid"] else ["coopt says invalid: " + got["reason"]]
            if diff:
                counts["differ"] += 1
                bad_total += 1
                print(f"  {case} map{i}: {'; '.join(diff[:4])}")
            elif args.save and kept < args.keep and _moved(inp, m):
                dest = Path(args.save) / case / f"map{i}"
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(mf, dest / "map.yaml")
                real["made_by"] = "timeloop-model master 4cf6d4c (build_real_tools.sh), benchmarks/sparse_differential.py"
                (dest / "real.json").write_text(json.dumps(real, indent=1, sort_keys=True) + "\n")
                kept += 1
        print(f"{case:45s} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    return 1 if bad_total else 0


if __name__ == "__main__":
    sys.exit(main())
