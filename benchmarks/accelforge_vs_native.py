"""AccelForge vs coopt's native engine vs Timeloop on ResNet-50 layers, Eyeriss-like design.

Needs AccelForge, i.e. Python >= 3.12 (``pip install -e '.[accelforge]'`` in a
3.12 venv); run it with that interpreter:

    python benchmarks/accelforge_vs_native.py [--layers layer1.0.conv2,...] [--dataflow row_stationary]
        [--metric delay,energy] [--energy tables|hwcomponents] [--timeout 600]

Both engines get the same design: the ``eyeriss_like`` template with the
Timeloop reference run's own Accelergy ERT/ART
(tests/reference_data/mapper/resnet50-conv2x-3x3-eyeriss-like), the same
dataflow constraints (AccelForge gets their bypass and spatial parts, see
coopt/backends/accelforge_backend.py) and the same metric (Timeloop's
[delay, energy]).  Timeloop's figures for layer1.0.conv2 are read from that
reference run (timeloop-mapper on 8 threads; its area from the ART).
AccelForge's chosen mapping is also converted to Timeloop's form and priced
by coopt's Timeloop-exact model ("its mapping, coopt model"), which separates
differences in the models from differences in the mappings found.
``--energy hwcomponents`` prices the design with AccelForge's own component
models instead of the ERT/ART.
"""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from coopt.backends import accelforge_backend as ab
from coopt.backends.base import MapperOptions
from coopt.backends.timeloop_stats import parse_stats, total_energy_pj
from coopt.design import design_from_template
from coopt.energy.accelergy_io import read_art
from coopt.errors import CooptError
from coopt.backends.network import map_layer as native_map_layer
from coopt.model.evaluate import evaluate
from coopt.model.mapping import mapping_from_yaml
from coopt.workload.networks import resnet50

REF = Path(__file__).resolve().parents[1] / "tests" / "reference_data" / "mapper" / "resnet50-conv2x-3x3-eyeriss-like"
REF_LAYER = "layer1.0.conv2"


def timeloop_reference(arch) -> dict:
    s = parse_stats(REF / "timeloop-mapper.stats.txt")
    art = read_art(REF / "ART.yaml")
    area = sum(art.get(l.name, 0.0) * l.instances for l in arch.storage if "dummy" not in l.cls)
    area += art.get(arch.arithmetic.name, 0.0) * arch.arithmetic.instances
    m = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", (REF / "wall_time.txt").read_text())
    wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return {"energy_pj": total_energy_pj(s), "cycles": s["cycles"], "area_um2": area, "seconds": wall,
            "macs": s["computes"]}


def row(label, r, macs, base=None):
    e, c = r["energy_pj"], r["cycles"]
    text = (f"{label:28s} {e / 1e6:10.2f} {e / macs * 1000:9.1f} {c:>12,.0f} {r['area_um2'] / 1e6:8.3f} "
            f"{r['seconds']:9.1f}")
    if base:
        text += (f"   {e / base['energy_pj']:6.3f} {c / base['cycles']:6.3f} {r['area_um2'] / base['area_um2']:6.3f}"
                 f" {r['seconds'] / base['seconds']:9.3g}")
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default=REF_LAYER)
    ap.add_argument("--dataflow", default="row_stationary")
    ap.add_argument("--metric", default="delay,energy")
    ap.add_argument("--energy", default="tables", choices=["tables", "hwcomponents"])
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    if not ab.available():
        raise SystemExit("AccelForge is not importable here: run with a Python >= 3.12 venv that has it")
    design = design_from_template("eyeriss_like", dataflow=args.dataflow, ert=REF / "ERT.yaml", art=REF / "ART.yaml")
    arch, tables = design.arch, design.tables
    net = {m: l for l in resnet50().layers for m in l.members}
    opts = MapperOptions(metric=tuple(args.metric.split(",")), budget=6000, seed=0)
    print(f"AccelForge {ab.version()}, design {design.label}, metric [{args.metric}], "
          f"AccelForge energy/area from {'the ERT/ART' if args.energy == 'tables' else 'hwcomponents'}, "
          f"timeout {args.timeout:g} s per AccelForge run")
    head = (f"{'engine':28s} {'energy uJ':>10s} {'fJ/MAC':>9s} {'cycles':>12s} {'area mm2':>8s} {'time s':>9s}"
            f"   ratios to Timeloop: energy cycles area time")
    for name in args.layers.split(","):
        layer = net[name]
        p = layer.problem
        print(f"\n{name}  ({', '.join(f'{k}={v}' for k, v in p.bounds.items())}; {p.macs:,} MACs)")
        print(head)
        ref = timeloop_reference(arch) if name == REF_LAYER else None
        if ref:
            print(row("Timeloop v3 mapper (ref)", ref, p.macs, ref))
        t0 = time.perf_counter()
        nat = native_map_layer(layer, arch, tables, design.targets, opts)
        n = {"energy_pj": nat.energy_pj, "cycles": nat.cycles, "seconds": time.perf_counter() - t0,
             "area_um2": nat.eval.area_um2 if nat.found else float("nan")}
        if not n["area_um2"] == n["area_um2"] or n["area_um2"] <= 0:
            n["area_um2"] = sum(tables.area(l.name) * l.instances for l in arch.storage if "dummy" not in l.cls) \
                + tables.area(arch.arithmetic.name) * arch.arithmetic.instances
        print(row("coopt native", n, p.macs, ref))
        try:
            a = ab.map_layer(p, arch, tables=tables, targets=design.targets, timeout_s=args.timeout,
                             metric=args.metric, energy=args.energy)
        except CooptError as e:
            print(f"{'AccelForge':28s} failed: {e}")
            continue
        print(row("AccelForge FFM", a, p.macs, ref))
        if a.get("timeloop_mapping"):       # the same mapping priced by coopt's Timeloop-exact model
            ev = evaluate(p, arch, tables, mapping_from_yaml(a["timeloop_mapping"], arch, p))
            print(row("  its mapping, coopt model", {"energy_pj": ev.energy_pj, "cycles": ev.cycles,
                                                     "area_um2": n["area_um2"], "seconds": float("nan")}, p.macs, ref)
                  + ("" if ev.valid else f"  (invalid there: {ev.reason})"))
        print(f"{'AccelForge / native':28s} energy {a['energy_pj'] / n['energy_pj']:.3f}, cycles "
              f"{a['cycles'] / n['cycles']:.3f}, area {a['area_um2'] / n['area_um2']:.3f}, "
              f"time {a['seconds'] / n['seconds']:.0f}x")
        print("AccelForge per level (pJ): " + ", ".join(f"{k} {v:,.0f}" for k, v in a["levels"].items()))
        print(f"AccelForge mapping: {a['mapping']}")


if __name__ == "__main__":
    main()
