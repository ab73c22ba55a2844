"""Cost of the sparse accounting per mapping, against the dense evaluation it follows.

For each case (the exercises' 01.2.2 dot product with gating, 01.2.3 with
skipping and a CP-compressed operand, and the Eyeriss-like AlexNet layer of
04.2.1: weight gating at the spad, UOP+RLE formats at DRAM), evaluates the
reference's mapping N times with
  * the dense model as ``coopt evaluate`` runs it (``model.evaluate.evaluate``), and
  * the same plus ``model.sparse.evaluate_sparse``,
and prints microseconds per mapping (CPU time) and the ratio.  Then the
mapper's batch path (``fused.evaluate_batch``) on the random valid mappings
among ``--batch`` samples of 04.2.2 (the Eyeriss mapspace search, UOP+RLE
formats at DRAM): dense (the compiled kernels; numpy ones under COOPT_JIT=0)
against sparse (the same nest and collapse, then the sparse accounting over the whole
batch: ``vector`` and, with formats, ``vformats``), per mapping, the median
of ``--reps`` calls taken in turns; with and without the formats, and the
row-by-row oracle (``row_by_row=True``) once for reference.

    python benchmarks/sparse_eval.py [--n 300] [--batch 2000] [--reps 30]
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
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    n = args.n
    for case in ("01.2.2-SUDU-dot-product", "01.2.3-SCDU-dot-product", "04.2.1-eyeriss-like-gating"):
        inp = _inputs(case)
        m = inp.mapping()
        dense_us = _time(_dense, n, inp, m)
        both_us = _time(_both, n, inp, m)
        print(f"{case}: dense {dense_us:.0f} us/mapping, dense+sparse {both_us:.0f} us/mapping, "
              f"ratio {both_us / dense_us:.2f}")
    _mapper(args.batch, args.reps)


def _median_us(fns, rows: int, reps: int) -> list[float]:
    """Median CPU time per mapping of each of ``fns``, called in turns ``reps`` times (after one warm call)."""
    import statistics

    times = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(reps):
        for k, fn in enumerate(fns):
            t = time.process_time()
            fn()
            times[k].append(time.process_time() - t)
    return [statistics.median(ts) / rows * 1e6 for ts in times]


def _mapper(batch: int, reps: int) -> None:
    import numpy as np

    from coopt.mapper.constraints import constraints_from_inputs
    from coopt.mapper.space import MapSpace
    from coopt.model import jit
    from coopt.model.cost import ArchCosts
    from coopt.model.fused import evaluate_batch
    from coopt.model.sparse.batch import evaluate_batch_sparse, with_sparsity

    mode = "compiled" if jit.request(10**9) else "numpy, COOPT_JIT=0"
    inp = _inputs("04.2.2-eyeriss-like-gating-mapspace-search")
    space = MapSpace(inp.problem, inp.arch, constraints_from_inputs(inp.raw, inp.arch, inp.problem, inp.sources))
    mb = space.sample(batch, np.random.default_rng(0))
    mb = mb.take(np.nonzero(space.prefilter(mb).ok)[0])
    dense_ac = ArchCosts(inp.arch, inp.tables)
    print(f"mapper batch: {len(mb)} random valid mappings of 04.2.2 among {batch} samples, "
          f"median of {reps} calls")
    for formats in (True, False):
        spec = inp.sparse if formats else replace(inp.sparse, formats={})
        sparse_ac = ArchCosts(inp.arch, with_sparsity(inp.tables, spec))
        dense_us, sparse_us = _median_us([lambda: evaluate_batch(space.pa, inp.arch, dense_ac, mb),
                                          lambda ac=sparse_ac: evaluate_batch(space.pa, inp.arch, ac, mb)],
                                         len(mb), reps)
        how = "with its DRAM formats (UOP+RLE)" if formats else "without formats"
        print(f"  {how}: dense {dense_us:.1f} us/mapping ({mode}), sparse {sparse_us:.1f} us/mapping, "
              f"ratio {sparse_us / dense_us:.2f}")
        if formats:
            t = time.process_time()
            evaluate_batch_sparse(space.pa, inp.arch, sparse_ac, mb, row_by_row=True)
            rows_us = (time.process_time() - t) / len(mb) * 1e6
            print(f"  with its DRAM formats, row by row (the oracle): {rows_us:.0f} us/mapping, "
                  f"ratio {rows_us / dense_us:.0f}")


if __name__ == "__main__":
    main()
