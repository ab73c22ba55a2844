"""``coopt export``: chosen trials as Timeloop + Accelergy input folders, checkable in the real tools."""
from coopt.energy.accelergy_files import art_yaml, components_yaml, ert_yaml
from coopt.export.design import export_trials, pareto_numbers

__all__ = ["export_trials", "pareto_numbers", "ert_yaml", "art_yaml", "components_yaml"]
