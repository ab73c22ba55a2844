"""The coopt studies an MLflow store holds (read by ``coopt ui`` and its front pages).

A module of its own so that the UI launcher and the front-page server both
read it without importing each other.
"""
from __future__ import annotations

from coopt.tracking.mlflow_tracker import resolve_uri


def study_experiments(tracking_uri: str | None) -> list[tuple[str, str]]:
    """(study name, experiment id) of every coopt study in the store, oldest first."""
    from coopt.tracking.mlflow_tracker import quiet_mlflow
    from coopt.tracking.present import EXPERIMENT_PREFIX

    quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(resolve_uri(tracking_uri))
    exps = client.search_experiments(filter_string="tags.`coopt.study` != ''", max_results=1000)
    out = [(e.tags.get("coopt.study") or e.name.removeprefix(EXPERIMENT_PREFIX), e.experiment_id) for e in exps]
    return sorted(out, key=lambda x: int(x[1]) if x[1].isdigit() else x[1])
