"""Native engine vs real Timeloop + Accelergy on every reference run (tests/reference_data).

Prints, per case (the closed-form model, checked equal to the literal walk), whether cycles and every per-level access count are identical,
the relative energy error (total and worst level) and utilisation, using the
run's own ERT/ART.  The tests assert the same; this prints the figures for the README.

    python benchmarks/fidelity.py
"""
from __future__ import annotations

from pathlib import Path

from coopt.backends.timeloop_stats import level_energy_pj, parse_stats, total_energy_pj
from coopt.energy.accelergy_io import read_tables
from coopt.inputs import load_inputs
from coopt.model.evaluate import evaluate
from coopt.model.mapping import mapping_from_yaml
from coopt.yamlio import load_yaml

ROOT = Path(__file__).resolve().parents[1] / "tests" / "reference_data"


def main():
    worst_total = worst_level = 0.0
    print(f"{'case':40s} {'cycles':>10s} {'counts':>8s} {'E total':>9s} {'E worst lvl':>11s} {'util':>7s}")
    for kind in ("model", "mapper"):
        for case in sorted((ROOT / kind).iterdir()):
            inputs = load_inputs([case / "input.yaml"])
            tables = inputs.tables.merged(read_tables(case / "ERT.yaml", case / "ART.yaml"))
            if kind == "mapper":
                mapping = mapping_from_yaml(load_yaml(case / "timeloop-mapper.map.yaml")["mapping"],
                                            inputs.arch, inputs.problem)
                stats = parse_stats(case / "timeloop-mapper.stats.txt")
            else:
                mapping = inputs.mapping()
                stats = parse_stats(case / "timeloop-model.stats.txt")
            r = evaluate(inputs.problem, inputs.arch, tables, mapping)             # closed form (default)
            w = evaluate(inputs.problem, inputs.arch, tables, mapping, engine="walk")
            assert (w.cycles, w.energy_pj) == (r.cycles, r.energy_pj), "closed form != walk"
            levels = {lvl.name: lvl for lvl in r.levels}
            same = all(levels[n].dataspaces[ds][k] == v[k]
                       for n, lvl in stats["levels"].items() for ds, v in lvl["dataspaces"].items()
                       for k in ("reads", "fills", "updates"))
            e = abs(r.energy_pj / total_energy_pj(stats) - 1)
            lv = max(abs(levels[n].energy_pj / level_energy_pj(stats, n) - 1)
                     for n in stats["levels"] if level_energy_pj(stats, n) > 0)
            worst_total, worst_level = max(worst_total, e), max(worst_level, lv)
            print(f"{kind + '/' + case.name:40s} {'same' if r.cycles == stats['cycles'] else 'DIFF':>10s} "
                  f"{'same' if same else 'DIFF':>8s} {e:9.2e} {lv:11.2e} "
                  f"{'same' if round(r.utilization, 4) == round(stats['utilization'], 4) else 'DIFF':>7s}")
    print(f"worst relative energy error: total {worst_total:.2e}, any level {worst_level:.2e}")


if __name__ == "__main__":
    main()
