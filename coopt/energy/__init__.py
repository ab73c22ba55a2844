"""Energy and area per action: built-in estimates, or tables read from Accelergy's output."""
from coopt.energy.accelergy_io import read_tables
from coopt.energy.estimate import estimate, tables_for
from coopt.energy.tables import EnergyTables

__all__ = ["EnergyTables", "estimate", "read_tables", "tables_for"]
