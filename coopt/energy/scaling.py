"""Technology scaling tables of Stillmaker & Baas (2017), "Scaling equations for the accurate
prediction of CMOS device performance from 180 nm to 7 nm": one copy for the built-in estimates
(estimate.py) and the Accelergy Library plug-in's scaling (library.py), which both use them."""
from __future__ import annotations

__all__ = ["NODES_NM", "AREA_FROM_45", "ENERGY_POLY", "VDD", "ENERGY_AT"]

NODES_NM = (130, 90, 65, 45, 32, 20, 16, 14, 10, 7)
# area relative to 45 nm, per node
AREA_FROM_45 = (6.4, 2.8, 1.5, 1.0, 0.46, 0.21, 0.19, 0.17, 0.1, 0.059)
# energy as a * V^2 + b * V + c, per node
ENERGY_POLY = ((7.171, -6.709, 2.904), (4.762, -4.781, 2.092), (3.755, -4.398, 1.975),
               (1.103, -0.362, 0.2767), (0.9559, -0.7823, 0.471), (0.373, -0.1582, 0.04104),
               (0.2958, -0.1241, 0.03024), (0.2363, -0.09675, 0.02239),
               (0.2068, -0.09311, 0.02375), (0.1776, -0.09097, 0.02447))
VDD = 0.8
ENERGY_AT = tuple(a * VDD ** 2 + b * VDD + c for a, b, c in ENERGY_POLY)
