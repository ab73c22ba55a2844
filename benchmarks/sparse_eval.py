"""Cost of the sparse accounting per mapping, against the dense evaluation it follows.

For each case (the exercises' 01.2.2 dot product with gating, 01.2.3 with
skipping and a CP-compressed operand, and the Eyeriss-like AlexNet layer of
04.2.1: weight gating at the spad, UOP+RLE formats at DRAM), evaluates the
reference's mapping N times with
  * the dense model as ``coopt evaluate`` runs it (``model.evaluate.evaluate``), and
  * the same plus ``model.sparse.evaluate_sparse``,
and prints microseconds per mapping (CPU time) and the ratio.  Then the
mapper's batch path (``fused.evaluate_batch``) on ``--batch`` random valid
mappings of 04.2.2 (the Eyeriss mapspace search): dense (the compiled kernels)
against sparse (the compiled nest and collapse, costs in numpy, then the
sparse accounting: over the whole batch without formats, row by row with
them), per mapping.

    python benchmarks/sparse_eval.py [--n 300] [--batch 2000]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import yaml

from coopt.inputs import load_inputs
from coopt.model.evaluate import evaluate
from coopt.model.sparse import evaluate_sparse

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "sparseloop"


def _inputs(case: str):
    c = DATA / case
    raw = yaml.safe_load((c / "parsed-processed-input.yaml").read_text())
    raw.pop("mapping", None)
    f = Path(tempfile.mkdtemp()) / "input.yaml"
    f.write_text(yaml.safe_dump(raw))
    return load_inputs([f, c / "timeloop-mapper.map.yaml"], ert=c / "timeloop-mapper.ERT.yaml",
                       art=c / "timeloop-mapper.ART.yaml", sparse=True)


def _dense(inp, m):
    return evaluate(inp.problem, inp.arch, inp.tables, m)


def _both(inp, m):
    return evaluate_sparse(inp.sparse, inp.problem, inp.arch, inp.tables, m, _dense(inp, m))


def _time(fn, n: int, *args) -> float:
    fn(*args)
    t = time.process_time()
    for _ in range(n):
        fn(*args)
    return (time.process_time() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--batch", type=int, default=2000)
    args = ap.parse_args()
    n = args.n
    for case in ("01.2.2-SUDU-dot-product", "01.2.3-SCDU-dot-product", "04.2.1-eyeriss-like-gating"):
        inp = _inputs(case)
        m = inp.mapping()
        dense_us = _time(_dense, n, inp, m)
        both_us = _time(_both, n, inp, m)
        print(f"{case}: dense {dense_us:.0f} us/mapping, dense+sparse {both_us:.0f} us/mapping, "
              f"ratio {both_us / dense_us:.2f}")
    _mapper(args.batch)


def _mapper(batch: int) -> None:
    import numpy as np

    from coopt.mapper.constraints import constraints_from_inputs
    from coopt.mapper.space import MapSpace
    from coopt.model import jit
    from coopt.model.cost import ArchCosts
    from coopt.model.fused import evaluate_batch
    from coopt.model.sparse.batch import with_sparsity

    jit.request(10**9)
    for formats in (True, False):
        inp = _inputs("04.2.2-eyeriss-like-gating-mapspace-search")
        spec = inp.sparse if formats else replace(inp.sparse, formats={})
        space = MapSpace(inp.problem, inp.arch, constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources))
        mb = space.sample(batch, np.random.default_rng(0))
        mb = mb.take(np.nonzero(space.prefilter(mb).ok)[0])
        dense_ac = ArchCosts(inp.arch, inp.tables)
        sparse_ac = ArchCosts(inp.arch, with_sparsity(inp.tables, spec))
        evaluate_batch(space.pa, inp.arch, dense_ac, mb)           # kernels loaded before timing
        evaluate_batch(space.pa, inp.arch, sparse_ac, mb)
        t = time.process_time()
        evaluate_batch(space.pa, inp.arch, dense_ac, mb)
        dense_us = (time.process_time() - t) / len(mb) * 1e6
        t = time.process_time()
        evaluate_batch(space.pa, inp.arch, sparse_ac, mb)
        sparse_us = (time.process_time() - t) / len(mb) * 1e6
        how = "with its DRAM formats (row by row)" if formats else "without formats (batch form)"
        print(f"mapper batch of {len(mb)} (04.2.2 {how}): dense {dense_us:.1f} us/mapping (compiled), "
              f"sparse {sparse_us:.1f} us/mapping, ratio {sparse_us / dense_us:.1f}")

if __name__ == "__main__":
    main()
