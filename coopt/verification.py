"""``coopt verify``'s work: check chosen designs of a study with a reference engine, log the result.

It sits with tracking and export (it reads a study's records, runs an engine,
writes to MLflow); :mod:`coopt.study.verify` does the per-design comparison.
"""
from __future__ import annotations

from coopt.backends.base import get_backend
from coopt.errors import CooptError
from coopt.mapper.options import MapperOptions
from coopt.study.front import distinct_designs, pareto_front
from coopt.study.verify import verify_trial
from coopt.tracking.mlflow_tracker import log_verification

__all__ = ["choose_trials", "verify_study"]


def choose_trials(spec: str, records: list, objectives: list, study: str) -> list[int]:
    """``--trials``: ``pareto`` (the distinct designs of the front) or ``N,M,...`` among the study's trials."""
    if spec == "pareto":
        numbers = [r.number for r, _ in distinct_designs(pareto_front(records, objectives))]
    else:
        try:
            numbers = [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise CooptError(f"--trials {spec!r}", key="--trials", expected="pareto or N,M,...") from None
    known = {r.number for r in records}
    missing = [n for n in numbers if n not in known]
    if missing or not numbers:
        raise CooptError(f"trials {missing or numbers} not in study '{study}'", key="--trials",
                         expected=f"some of {sorted(known)}")
    return numbers


def verify_study(study: str, settings: dict, records: list, numbers: list[int], *, engine: str,
                 timeloop_bin: str | None = None, mapper: bool = True, seed: int = 0, tolerance: float = 0.05,
                 tracking_uri: str | None = None, log: bool = True) -> list[tuple]:
    """[(check, logged to MLflow)] per trial, in order; the mapper settings are the study's.

    ``log=False`` when the MLflow store does not exist: reading a study never creates one.
    """
    by_number = {r.number: r for r in records}
    backend = get_backend(engine, timeloop_bin=timeloop_bin)
    m = settings["mapper"]
    opts = MapperOptions(metric=tuple(m["metric"]), budget=m["budget"], seed=seed)
    out = []
    for n in numbers:
        check = verify_trial(by_number[n], backend, mapper=mapper, options=opts, tolerance=tolerance)
        logged = log and log_verification(tracking_uri, study, n, engine, check.ratios, check.csv(), check.flagged)
        out.append((check, logged))
    return out
