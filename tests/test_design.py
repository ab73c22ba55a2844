"""The one design loader: constraints from every place Timeloop reads them, tables merged once."""
from __future__ import annotations

from pathlib import Path

import pytest

from coopt.arch.template import load_template
from coopt.backends.network import map_network
from coopt.design import load_design
from coopt.mapper.options import MapperOptions
from coopt.model.mapping import mapping_to_yaml
from coopt.workload.networks import Network, resnet18
from coopt.yamlio import dumps_yaml

ROOT = Path(__file__).resolve().parents[1]
EYERISS_REF = ROOT / "tests" / "reference_data" / "model" / "06-eyeriss-like-convlayer-bestmap"
BYPASS = [{"target": "weights_spad", "type": "bypass", "bypass": ["Weights"]}]


@pytest.mark.parametrize("place", ["mapspace", "architecture_constraints", "mapspace_constraints", "constraints"])
def test_network_arch_file_honours_constraints_wherever_timeloop_reads_them(tmp_path, place):
    doc = load_template("eyeriss_like").instantiate_yaml({})
    doc[place] = {"constraints": BYPASS} if place == "mapspace" else {"targets": BYPASS}
    f = tmp_path / "arch.yaml"
    f.write_text(dumps_yaml(doc))
    design = load_design(str(f))
    assert design.targets == BYPASS and design.constraints_file == str(f)
    net = Network("head", resnet18().layers[:2])
    result = map_network(net, design.arch, design.tables, design.targets, MapperOptions(budget=300),
                         constraints_file=design.constraints_file)
    assert all(layer.found for layer in result.layers)
    for layer in result.layers:
        spad = [d for d in mapping_to_yaml(layer.mapping, design.arch, layer.problem)["mapping"]
                if d["target"] == "weights_spad" and d["type"] in ("datatype", "bypass")]
        assert spad and "Weights" in spad[0]["bypass"], spad


def test_user_tables_override_the_estimates_entry_by_entry(tmp_path):
    """--ert/--art win over ERT:/ART: keys in the files, which win over the estimates."""
    import yaml

    from coopt.energy.select import arch_tables

    doc = load_template("eyeriss_like").instantiate_yaml({})
    ert = yaml.safe_load((EYERISS_REF / "ERT.yaml").read_text())
    art = yaml.safe_load((EYERISS_REF / "ART.yaml").read_text())
    f = tmp_path / "arch.yaml"
    f.write_text(dumps_yaml({**doc, **ert}))
    design = load_design(str(f))
    estimated = arch_tables(design.arch)                     # the default estimator's tables
    glb_ref = next(t for t in ert["ERT"]["tables"] if t["name"].endswith("shared_glb[1..1]"))
    read_ref = next(a["energy"] for a in glb_ref["actions"] if a["name"] == "read")
    assert design.tables.ert["shared_glb"]["read"] == pytest.approx(read_ref)
    assert design.tables.art == pytest.approx(estimated.art)  # no ART given: the estimates stay
    with_art = load_design(str(f), art=EYERISS_REF / "ART.yaml")
    glb_area = next(a["area"] for a in art["ART"]["tables"] if a["name"].endswith("shared_glb[1..1]"))
    assert with_art.tables.art["shared_glb"] == pytest.approx(glb_area)
