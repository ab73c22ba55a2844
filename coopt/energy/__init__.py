"""Energy and area per action: Accelergy's method (default), built-in estimates, or Accelergy's output files."""
from coopt.energy.accelergy_io import read_tables
from coopt.energy.estimate import estimate, tables_for
from coopt.energy.select import arch_tables, set_method
from coopt.energy.tables import EnergyTables

__all__ = ["EnergyTables", "arch_tables", "estimate", "read_tables", "set_method", "tables_for"]
