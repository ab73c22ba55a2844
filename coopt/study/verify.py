"""Re-evaluate a study's designs with a reference engine and say how far apart they are.

For each chosen trial and each layer: the native engine's best mapping run
through the reference engine's model (the engines should agree: the native
model follows Timeloop's), and, unless skipped, the reference engine's own
mapper.  Totals are weighted by layer counts; a design whose native and
reference numbers (model check) differ by more than ``tolerance`` is flagged.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from coopt.mapper.options import MapperOptions
from coopt.design import design_from_template
from coopt.mapper.constraints import parse_constraints
from coopt.model.mapping import mapping_from_yaml
from coopt.study.records import TrialRecord
from coopt.workload.networks import NetworkLayer
from coopt.workload.yaml_io import problem_from_yaml


@dataclass
class LayerCheck:
    layer: str
    count: int
    native_energy_pj: float
    native_cycles: int
    model_energy_pj: float | None = None
    model_cycles: int | None = None
    mapper_energy_pj: float | None = None
    mapper_cycles: int | None = None
    error: str = ""

    @property
    def model_energy_ratio(self):
        return None if self.model_energy_pj is None else self.model_energy_pj / self.native_energy_pj

    @property
    def model_cycles_ratio(self):
        return None if self.model_cycles is None else self.model_cycles / self.native_cycles


@dataclass
class TrialCheck:
    number: int
    layers: list[LayerCheck] = field(default_factory=list)
    tolerance: float = 0.05

    def total(self, attr: str):
        vals = [(l.count, getattr(l, attr)) for l in self.layers]
        if any(v is None for _, v in vals):
            return None
        return sum(c * v for c, v in vals)

    @property
    def ratios(self) -> dict:
        out = {}
        native_e, native_c = self.total("native_energy_pj"), self.total("native_cycles")
        for kind in ("model", "mapper"):
            e, c = self.total(f"{kind}_energy_pj"), self.total(f"{kind}_cycles")
            if e is not None:
                out[f"{kind}_energy_ratio"] = e / native_e
                out[f"{kind}_cycles_ratio"] = c / native_c
        return out

    @property
    def flagged(self) -> bool:
        """Native and reference differ beyond the tolerance (or a model check failed)."""
        r = self.ratios
        bad = [k for k in ("model_energy_ratio", "model_cycles_ratio") if k in r and abs(r[k] - 1) > self.tolerance]
        return bool(bad) or any(l.error.startswith("model") for l in self.layers if l.error)

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["layer", "count", "native_energy_pj", "native_cycles", "model_energy_pj", "model_cycles",
                    "model_energy_ratio", "model_cycles_ratio", "mapper_energy_pj", "mapper_cycles", "error"])
        for l in self.layers:
            w.writerow([l.layer, l.count, l.native_energy_pj, l.native_cycles, l.model_energy_pj, l.model_cycles,
                        l.model_energy_ratio, l.model_cycles_ratio, l.mapper_energy_pj, l.mapper_cycles, l.error])
        return buf.getvalue()


def verify_trial(rec: TrialRecord, backend, *, mapper: bool = True, options: MapperOptions | None = None,
                 tolerance: float = 0.05) -> TrialCheck:
    from coopt.errors import BinaryNotFound, CooptError

    from coopt.arch.spec_template import SpecTemplate
    from coopt.study.sparsity import record_is_sparse

    if record_is_sparse(rec):
        raise CooptError(f"trial {rec.number} was evaluated under sparsity", key="--trial",
                         expected="a dense trial (verify's engines do not model sparsity; run the export's "
                                  "run_timeloop.sh with a Sparseloop-capable Timeloop instead)")
    template = SpecTemplate.from_json(rec.spec) if rec.spec else rec.template     # a v4 spec travels in the record
    design = design_from_template(template, rec.template_params, rec.dataflow)
    arch, tables = design.arch, design.tables
    check = TrialCheck(rec.number, tolerance=tolerance)
    for layer in rec.layers:
        if not layer.found:
            continue
        problem = problem_from_yaml(layer.problem_yaml["problem"], name=layer.name)
        mapping = mapping_from_yaml(layer.mapping_yaml["mapping"], arch, problem)
        lc = LayerCheck(layer.name, layer.count, layer.energy_pj, layer.cycles)
        errors = []
        try:                                   # the native mapping through the reference model
            ref = backend.evaluate(problem, arch, tables, mapping)
            lc.model_energy_pj, lc.model_cycles = ref.energy_pj, ref.cycles
        except BinaryNotFound:
            raise
        except CooptError as e:
            errors.append(f"model: {e.message}")
        if mapper:                             # the reference engine's own mapper
            try:
                cons = parse_constraints(design.targets, arch, problem)
                r = backend.map_layer(NetworkLayer(layer.name, problem, layer.count, (layer.name,)), arch,
                                      tables, cons, options or MapperOptions(metric=("edp",)))
                if r.found:
                    lc.mapper_energy_pj, lc.mapper_cycles = r.eval.energy_pj, r.eval.cycles
                else:
                    errors.append(f"mapper: {r.reason}")
            except BinaryNotFound:
                raise
            except CooptError as e:
                errors.append(f"mapper: {e.message}")
        lc.error = "; ".join(errors)
        check.layers.append(lc)
    return check
