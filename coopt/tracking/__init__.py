"""MLflow tracking of studies: one experiment per study, a study run with the front, a run per trial.

Imports are lazy so that ``import coopt`` (and the CLI's start-up) never pays
for importing MLflow, which takes about a second.
"""
from __future__ import annotations

__all__ = ["StudyTracker", "default_tracking_uri", "launch_ui", "experiment_name"]


def __getattr__(name: str):
    if name in ("StudyTracker", "default_tracking_uri"):
        from coopt.tracking import mlflow_tracker
        return getattr(mlflow_tracker, name)
    if name == "experiment_name":
        from coopt.tracking.present import experiment_name
        return experiment_name
    if name == "launch_ui":
        from coopt.tracking.ui import launch_ui
        return launch_ui
    raise AttributeError(f"module 'coopt.tracking' has no attribute {name!r}")
