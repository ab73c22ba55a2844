"""Architecture YAML reading/writing and templates, checked against real Timeloop output.

Expected numbers come from the reference runs' ``timeloop-*.stats.txt`` (what
Timeloop itself derived from the same ``input.yaml``), not from this file.
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.arch.template import Template, available_templates, load_template
from coopt.arch.yaml_io import arch_from_yaml, arch_to_yaml, split_path
from coopt.errors import SpecError
from coopt.yamlio import dump_yaml, load_merged, load_yaml, loads_yaml

from reference import REFERENCE as REF
CASES = sorted(p.parent for p in REF.glob("*/*/input.yaml"))
EYERISS = REF / "model" / "06-eyeriss-like-convlayer-bestmap"
EYERISS_MAPPER = REF / "mapper" / "06-eyeriss-like-convlayer"

needs_ref = pytest.mark.skipif(not CASES, reason="reference runs not available")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def stats_levels(case: Path) -> dict[str, dict]:
    """Per level, the SPECS Timeloop printed: {name: {level, Size, Block size, ...}}."""
    stats = next(case.glob("timeloop-*.stats.txt"))
    out: dict[str, dict] = {}
    level, cur = None, None
    for line in stats.read_text().splitlines():
        if line.startswith("Networks"):
            break
        m = re.match(r"^Level (\d+)$", line)
        if m:
            level = int(m.group(1))
            continue
        m = re.match(r"^=== (\S+) ===$", line)
        if m and level is not None:
            cur = out.setdefault(m.group(1), {"level": level})
            continue
        m = re.match(r"^\s+([A-Za-z][A-Za-z ]*?)\s*:\s*(.*)$", line)
        if m and cur is not None and m.group(1) not in cur:
            cur[m.group(1)] = m.group(2).strip()
        if line.strip() == "STATS":
            cur = None
    return out


def ref_arch(case: Path) -> Architecture:
    f = case / "input.yaml"
    return arch_from_yaml(load_yaml(f)["architecture"], file=str(f))


def parse_instances(text: str) -> tuple[int, int, int]:
    m = re.match(r"(\d+) \((\d+)\*(\d+)\)", text)
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def bw(text: str) -> float | None:
    return None if text == "-" else float(text)


def err_text(exc: pytest.ExceptionInfo) -> str:
    return str(exc.value)


# ---------------------------------------------------------------------------
# reference architectures vs Timeloop's own reading of them
# ---------------------------------------------------------------------------
@needs_ref
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reference_levels_match_timeloop_stats(case):
    arch = ref_arch(case)
    specs = stats_levels(case)
    assert specs, "no levels parsed from the stats file"
    mac = arch.arithmetic
    s = specs[mac.name]
    assert s["level"] == 0
    assert parse_instances(s["Instances"]) == (mac.instances, mac.mesh_x, mac.mesh_y)
    assert int(s["Word bits"]) == mac.word_bits
    printed = [n for n in specs if n != mac.name]
    for name in printed:
        s = specs[name]
        idx = arch.level_index(name)
        lvl = arch.storage[idx]
        assert s["level"] == idx + 1, f"{name}: Timeloop level {s['level']} vs storage[{idx}]"
        assert s["Technology"] == lvl.technology
        assert (None if s["Size"] == "-" else int(s["Size"])) == lvl.size
        assert int(s["Word bits"]) == lvl.word_bits
        assert int(s["Block size"]) == lvl.block_size
        assert int(s["Cluster size"]) == lvl.cluster_size
        assert parse_instances(s["Instances"]) == (lvl.instances, lvl.mesh_x, lvl.mesh_y)
        assert bw(s["Read bandwidth"]) == lvl.read_bandwidth
        assert bw(s["Write bandwidth"]) == lvl.write_bandwidth
        assert bw(s["Shared bandwidth"]) == lvl.shared_bandwidth
        assert float(s["Multiple buffering"]) == lvl.multiple_buffering
        assert float(s["Min utilization"]) == lvl.min_utilization
    # Timeloop leaves the bypass-everything dummy levels out of its stats; all others are there.
    missing = {l.name for l in arch.storage} - set(printed)
    assert all(arch.storage[arch.level_index(n)].cls == "dummy_storage" for n in missing)


@needs_ref
def test_eyeriss_reference_levels_against_stats_and_file():
    arch = ref_arch(EYERISS)
    specs = stats_levels(EYERISS)
    raw = {base["name"].split("[")[0]: base for base in
           load_yaml(EYERISS / "input.yaml")["architecture"]["subtree"][0]["local"]}
    w = arch.storage[arch.level_index("weights_spad")]
    assert w.size == int(specs["weights_spad"]["Size"])
    assert w.block_size == int(specs["weights_spad"]["Block size"])
    assert w.depth == raw["weights_spad"]["attributes"]["depth"]           # Size = depth * block
    assert w.block_size == raw["weights_spad"]["attributes"]["width"] // raw["weights_spad"]["attributes"]["datawidth"]
    glb = arch.storage[arch.level_index("shared_glb")]
    assert glb.size == int(specs["shared_glb"]["Size"]) and glb.block_size == int(specs["shared_glb"]["Block size"])
    dram = arch.storage[-1]
    assert dram.name == "DRAM" and dram.depth is None and dram.is_dram
    assert dram.block_size == int(specs["DRAM"]["Block size"])
    psum = arch.storage[0]
    assert psum.name == "psum_spad" and psum.block_size == int(specs["psum_spad"]["Block size"])
    assert (arch.arithmetic.instances, arch.arithmetic.mesh_x, arch.arithmetic.mesh_y) == \
        parse_instances(specs["mac"]["Instances"])
    assert arch.name == "system_top_level" and arch.technology == "32nm" and arch.cycle_seconds == 1e-9
    assert glb.path == "system_top_level.shared_glb[1..1]"
    assert glb.attributes["n_banks"] == 32        # raw attributes kept for writing back


@needs_ref
def test_eyeriss_fanouts():
    arch = ref_arch(EYERISS)
    mac = arch.arithmetic
    by_name = {l.name: i for i, l in enumerate(arch.storage)}
    assert arch.fanout(by_name["inter_PE_column_spatial"]) == (mac.mesh_x, 1)
    assert arch.fanout(by_name["inter_PE_spatial"]) == (1, mac.mesh_y)
    for name in ("psum_spad", "weights_spad", "ifmap_spad", "shared_glb", "DRAM"):
        assert arch.fanout(by_name[name]) == (1, 1)
    total = math.prod(x * y for x, y in (arch.fanout(i) for i in range(len(arch.storage))))
    assert total == mac.instances


@needs_ref
def test_spatial_1d_fanout():
    case = REF / "model" / "04-model-conv1d+oc-3levelspatial_kp"
    arch = ref_arch(case)
    i = arch.level_index("inter_PE_spatial")
    n = parse_instances(stats_levels(case)["GlobalBuffer"]["Instances"])
    assert arch.fanout(i) == (n[1], n[2])
    assert arch.fanout(arch.level_index("GlobalBuffer")) == (1, 1)


# ---------------------------------------------------------------------------
# writing back
# ---------------------------------------------------------------------------
@needs_ref
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_round_trip(case, tmp_path):
    arch = ref_arch(case)
    out = arch_to_yaml(arch)
    assert list(out) == ["architecture"] and out["architecture"]["version"] == 0.3
    assert arch_from_yaml(out["architecture"]) == arch
    dump_yaml(out, tmp_path / "arch.yaml")                        # through real YAML text too
    again = arch_from_yaml(load_yaml(tmp_path / "arch.yaml")["architecture"])
    assert again == arch and again.cycle_seconds == arch.cycle_seconds


@needs_ref
def test_written_values_are_refreshed_from_fields():
    arch = ref_arch(EYERISS)
    i = arch.level_index("shared_glb")
    glb = dataclasses.replace(arch.storage[i], depth=4096, read_bandwidth=8.0, write_bandwidth=None,
                              word_bits=16, block_size=4)
    changed = dataclasses.replace(arch, storage=arch.storage[:i] + (glb,) + arch.storage[i + 1:],
                                  technology="45nm", cycle_seconds=2e-9)
    out = arch_to_yaml(changed)
    comp = next(c for c in out["architecture"]["subtree"][0]["local"] if c["name"].startswith("shared_glb"))
    a = comp["attributes"]
    assert comp["class"] == "smartbuffer_SRAM" and a["n_banks"] == 32
    assert a["depth"] == 4096 and a["datawidth"] == 16 and a["read_bandwidth"] == 8
    assert "write_bandwidth" not in a and a["technology"] == "45nm"
    assert arch_from_yaml(out["architecture"]) == changed


@needs_ref
def test_pathless_architecture_gets_nested_subtrees():
    arch = ref_arch(EYERISS)
    bare = dataclasses.replace(
        arch, storage=tuple(dataclasses.replace(l, path="") for l in arch.storage),
        arithmetic=dataclasses.replace(arch.arithmetic, path=""))
    out = arch_to_yaml(bare)
    text = repr(out)
    assert "'instances'" not in text          # instance counts come from the subtree ranges
    back = arch_from_yaml(out["architecture"])
    strip = lambda a: [dataclasses.replace(l, path="") for l in a.storage] + \
        [dataclasses.replace(a.arithmetic, path="")]
    assert strip(back) == strip(bare)
    mac_path = split_path(back.arithmetic.path)
    assert len(mac_path) == 4 and mac_path[1].endswith("[0..13]") and mac_path[2].endswith("[0..11]")


def test_inconsistent_mesh_is_not_written():
    lvl = StorageLevel("buf", instances=4, mesh_x=2, mesh_y=1, depth=8, word_bits=8)  # 2*1 != 4
    arch = Architecture("a", (lvl,), ArithmeticLevel("mac", instances=4, mesh_x=2, mesh_y=2))
    with pytest.raises(SpecError):
        arch_to_yaml(arch)


# ---------------------------------------------------------------------------
# other input forms and Timeloop's attribute rules
# ---------------------------------------------------------------------------
V03 = """
architecture:
  version: 0.3
  subtree:
  - name: system
    attributes: {technology: 45nm}
    local:
    - name: DRAM
      class: DRAM
      attributes: {type: LPDDR4, width: 64, block-size: 4, word-bits: 16}
    subtree:
    - name: eyeriss
      attributes: {technology: 45nm, latency: 1ns}
      local:
      - name: shared_glb
        class: smartbuffer_SRAM
        attributes: {memory_depth: 16384, memory_width: 64, n_banks: 32, block-size: 4,
                     word-bits: 16, read_bandwidth: 16, write_bandwidth: 16}
      - name: DummyBuffer[0..13]
        class: regfile
        attributes: {depth: 16, width: 16, word-bits: 16, block-size: 1, meshX: 14}
      subtree:
      - name: PE[0..167]
        local:
        - name: ifmap_spad
          class: smartbuffer_RF
          attributes: {memory_depth: 12, memory_width: 16, block-size: 1, word-bits: 16, meshX: 14}
        - name: mac
          class: intmac
          attributes: {datawidth: 16, meshX: 14}
"""


def test_v03_tutorial_form():
    arch = arch_from_yaml(loads_yaml(V03)["architecture"], file="v03.yaml")
    assert arch.name == "system" and arch.technology == "45nm" and arch.cycle_seconds == 1e-9
    assert [l.name for l in arch.storage] == ["ifmap_spad", "DummyBuffer", "shared_glb", "DRAM"]
    spad, dummy, glb, dram = arch.storage
    assert (spad.instances, spad.mesh_x, spad.mesh_y) == (168, 14, 12)
    assert (dummy.instances, dummy.mesh_x, dummy.mesh_y) == (14, 14, 1)
    assert spad.size == 12 and spad.path == "system.eyeriss.PE[0..167].ifmap_spad"
    assert glb.word_bits == 16 and glb.block_size == 4 and glb.size == 16384 * 4
    assert glb.read_bandwidth == 16.0 and glb.width == 64
    assert dram.depth is None and dram.block_size == 4 and dram.technology == "DRAM"
    assert arch.arithmetic.instances == 168 and arch.arithmetic.mesh_y == 12
    assert [arch.fanout(i) for i in range(4)] == [(1, 1), (1, 12), (14, 1), (1, 1)]
    assert spad.attributes["latency"] == "1ns"  # inherited for Accelergy; not a Timeloop key
    out = arch_to_yaml(arch)
    assert arch_from_yaml(out["architecture"]) == arch
    pe = out["architecture"]["subtree"][0]["subtree"][0]["subtree"][0]
    assert pe["name"] == "PE[0..167]" and [c["name"] for c in pe["local"]] == ["ifmap_spad", "mac"]


NODES = """
architecture:
  version: 0.4
  nodes:
  - !Container
    name: system
    attributes: {technology: "32nm", global_cycle_seconds: 1e-9}
  - !Component
    name: DRAM
    class: DRAM
    attributes: {type: "LPDDR4", width: 64, datawidth: 8}
  - !Container
    name: eyeriss
  - !Component
    name: shared_glb
    class: smartbuffer_SRAM
    attributes: {depth: 16384, width: 64, n_banks: 32, datawidth: 8, read_bandwidth: 16, write_bandwidth: 16}
  - !Container
    name: PE_column
    spatial: {meshX: 14}
  - !Container
    name: PE
    spatial: {meshY: 12}
  - !Parallel
    nodes:
    - !Component
      name: ifmap_spad
      class: smartbuffer_RF
      attributes: {depth: 12, width: 16, datawidth: 8, read_bandwidth: 2, write_bandwidth: 2}
    - !Component
      name: weights_spad
      class: smartbuffer_RF
      attributes: {depth: 192, width: 16, datawidth: 8, read_bandwidth: 2, write_bandwidth: 2}
    - !Component
      name: psum_spad
      class: smartbuffer_RF
      attributes: {depth: 16, width: 16, update_fifo_depth: 2, datawidth: 16, read_bandwidth: 2, write_bandwidth: 2}
  - !Component
    name: mac
    class: intmac
    attributes: {multiplier_width: 8, adder_width: 16}
"""


@needs_ref
def test_timeloopfe_nodes_form_equals_its_timeloop_dump():
    # timeloopfe turned exactly this v0.4 description into the reference input.yaml.
    assert arch_from_yaml(loads_yaml(NODES)["architecture"]) == ref_arch(EYERISS)


def one_level(attrs: dict, cls: str = "SRAM", name: str = "buf") -> StorageLevel:
    node = {"version": 0.3, "subtree": [{"name": "top", "local": [
        {"name": name, "class": cls, "attributes": attrs},
        {"name": "mac", "class": "intmac"}]}]}
    return arch_from_yaml(node, file="t.yaml").storage[0]


def test_timeloop_attribute_rules():
    assert one_level({"sizeKB": 2, "datawidth": 16}).size == 1024
    l = one_level({"entries": 96, "width": 64, "datawidth": 16})
    assert (l.block_size, l.depth, l.size) == (4, 24, 96)
    l = one_level({"depth": 10, "width": 64, "datawidth": 8, "cluster_size": 2})
    assert (l.block_size, l.cluster_size, l.size) == (4, 2, 40)
    l = one_level({"depth": 10, "width": 64, "datawidth": 8, "block_size": 2})
    assert (l.block_size, l.cluster_size) == (2, 4)
    l = one_level({"depth": 10, "word_bits": 8, "n_words": 4})
    assert (l.block_size, l.width, l.size) == (4, 32, 40)
    l = one_level({"depth": 8, "bandwidth": 10, "write_bandwidth": 3})
    assert (l.read_bandwidth, l.write_bandwidth, l.word_bits) == (5.0, 3.0, 16)
    l = one_level({"depth": 8, "technology": "DRAM"}, cls="smartbuffer")
    assert l.technology == "DRAM"
    l = one_level({"depth": 8, "multiple_buffering": 2, "min_utilization": 0.5,
                   "reduction_supported": False, "instances": 1})
    assert (l.multiple_buffering, l.min_utilization, l.reduction_supported, l.effective_size) == (2.0, 0.5, False, 4)
    assert one_level({"width": 1, "depth": 1, "datawidth": 1}, cls="dummy_storage").size == 1
    assert one_level({}, cls="DRAM").depth is None


@pytest.mark.parametrize("attrs,cls,key_end,needle", [
    ({"depth": 8, "width": 12, "datawidth": 8}, "SRAM", "attributes.width", "not a multiple"),
    ({"depth": 8, "width": 64, "datawidth": 8, "block_size": 2, "cluster_size": 2}, "SRAM", "attributes.width", "!="),
    ({"depth": "lots"}, "SRAM", "attributes.depth", "not an integer"),
    ({"depth": -1}, "SRAM", "attributes.depth", "too small"),
    ({"depth": 8, "read_bandwidth": "fast"}, "SRAM", "attributes.read_bandwidth", "not a number"),
    ({"depth": 8, "meshX": 3, "instances": 4}, "SRAM", "attributes.meshX", "does not divide"),
    ({"entries": 10, "width": 32, "datawidth": 8}, "SRAM", "attributes.entries", "block_size"),
    ({"depth": 8}, "crossbar", "local[0].class", "crossbar"),
    ({"depth": 8}, "XY_NoC", "local[0].class", "network"),
])
def test_attribute_errors_are_located(attrs, cls, key_end, needle):
    with pytest.raises(SpecError) as exc:
        one_level(attrs, cls=cls, name="mybuf")
    assert exc.value.file == "t.yaml"
    assert exc.value.key.startswith("architecture.subtree[0].local[0]") and exc.value.key.endswith(key_end)
    assert needle in err_text(exc)
    if "class" in key_end:
        assert "mybuf" in err_text(exc)


def test_structure_errors():
    base = loads_yaml(V03)["architecture"]
    two = {"version": 0.3, "subtree": [base["subtree"][0], base["subtree"][0]]}
    with pytest.raises(SpecError, match="one per level"):
        arch_from_yaml(two)
    no_mac = {"version": 0.3, "subtree": [{"name": "t", "local": [{"name": "b", "class": "SRAM"}]}]}
    with pytest.raises(SpecError, match="compute"):
        arch_from_yaml(no_mac)
    with pytest.raises(SpecError, match="subtree"):
        arch_from_yaml({"version": 0.3})
    with pytest.raises(SpecError) as exc:
        arch_from_yaml({"subtree": [{"name": "t", "local": [{"name": "b"}]}]}, file="x.yaml")
    assert exc.value.key == "architecture.subtree[0].local[0].class"
    dup = {"subtree": [{"name": "t", "local": [{"name": "b", "class": "SRAM"}, {"name": "b", "class": "SRAM"},
                                                {"name": "m", "class": "intmac"}]}]}
    with pytest.raises(SpecError, match="duplicate") as exc:
        arch_from_yaml(dup, file="x.yaml")
    assert exc.value.file == "x.yaml"


# ---------------------------------------------------------------------------
# templates
# ---------------------------------------------------------------------------
def test_shipped_templates_listed():
    assert {"eyeriss_like", "systolic_ws"} <= set(available_templates())


@needs_ref
@pytest.mark.parametrize("case", [EYERISS, EYERISS_MAPPER, REF / "mapper" / "resnet50-conv2x-3x3-eyeriss-like"],
                         ids=lambda p: p.name)
def test_eyeriss_template_defaults_equal_reference(case):
    t = load_template("eyeriss_like")
    arch = t.instantiate()
    ref = ref_arch(case)
    assert arch == ref                          # every compared field, paths included
    assert arch.cycle_seconds == ref.cycle_seconds and arch.technology == ref.technology
    assert t.instantiate(t.defaults()) == ref


@needs_ref
def test_eyeriss_row_stationary_is_the_reference_constraints():
    t = load_template("eyeriss_like")
    targets = load_yaml(EYERISS_MAPPER / "input.yaml")["architecture_constraints"]["targets"]
    assert t.constraints("row_stationary") == targets


def test_eyeriss_template_parameters_change_the_architecture():
    t = load_template("eyeriss_like")
    arch = t.instantiate({"pe_rows": 4, "pe_cols": 8, "glb_depth": 2048, "word_bits": 16,
                          "clock_mhz": 500, "technology": "45nm"})
    mac = arch.arithmetic
    assert (mac.instances, mac.mesh_x, mac.mesh_y) == (32, 8, 4)
    glb = arch.storage[arch.level_index("shared_glb")]
    assert glb.depth == 2048 and glb.word_bits == 16 and glb.block_size == 8
    assert arch.cycle_seconds == pytest.approx(2e-9) and arch.technology == "45nm"
    assert arch.fanout(arch.level_index("inter_PE_column_spatial")) == (8, 1)
    assert arch.fanout(arch.level_index("inter_PE_spatial")) == (1, 4)
    assert arch_from_yaml(arch_to_yaml(arch)["architecture"]) == arch
    y = t.instantiate_yaml({"pe_rows": 4, "pe_cols": 8})["architecture"]
    names = [c["name"] for c in y["subtree"][0]["local"]]
    assert "inter_PE_spatial[1..8]" in names and "mac[1..32]" in names
    assert "${" not in repr(y)
    free = t.constraints("free")
    assert {c["target"] for c in free} == {"inter_PE_column_spatial", "inter_PE_spatial"}


def test_systolic_template():
    t = load_template("systolic_ws")
    arch = t.instantiate({"pe_rows": 8, "pe_cols": 4, "glb_kib": 64, "accum_depth": 4})
    assert [l.name for l in arch.storage] == ["accumulator", "weight_reg", "global_buffer", "DRAM"]
    assert arch.fanout(arch.level_index("global_buffer")) == (4, 8)
    glb = arch.storage[2]
    assert glb.size * glb.word_bits == 64 * 1024 * 8
    acc = arch.storage[0]
    assert acc.size == 4 and acc.word_bits == 16 and acc.instances == 32
    assert arch.arithmetic.path == "system.PE[0..31].mac"
    assert arch_from_yaml(arch_to_yaml(arch)["architecture"]) == arch
    ws = t.constraints("weight_stationary", {"pe_rows": 8, "pe_cols": 4})
    spatial = [c for c in ws if c["type"] == "spatial"]
    assert spatial == [{"target": "global_buffer", "type": "spatial", "factors": "R=1,S=1,P=1,Q=1,N=1",
                        "permutation": "MCRSPQN", "split": 1}]   # M on X (columns), C on Y (rows)
    keeps = {c["target"]: c["keep"] for c in ws if c["type"] == "bypass"}
    assert keeps == {"weight_reg": ["Weights"], "accumulator": ["Outputs"]}
    names = {l.name for l in arch.storage}
    assert all(c["target"] in names for c in ws)
    assert t.constraints("free") == []


@pytest.mark.parametrize("params,name,needle", [
    ({"pe_rowz": 3}, "pe_rowz", "unknown parameter"),
    ({"pe_rows": "twelve"}, "pe_rows", "not a number"),
    ({"pe_rows": 12.5}, "pe_rows", "not an integer"),
    ({"pe_cols": True}, "pe_cols", "boolean"),
    ({"pe_rows": 0}, "pe_rows", "minimum"),
    ({"glb_depth": 10 ** 9}, "glb_depth", "maximum"),
    ({"technology": "3nm"}, "technology", "choices"),
    ({"word_bits": 12}, "word_bits", "power of two"),
    ({"clock_mhz": "fast"}, "clock_mhz", "not a number"),
])
def test_template_parameter_errors_name_the_parameter(params, name, needle):
    t = load_template("eyeriss_like")
    with pytest.raises(SpecError) as exc:
        t.instantiate(params)
    assert name in err_text(exc) and needle in err_text(exc)


def test_template_accepts_command_line_strings():
    t = load_template("eyeriss_like")
    a = t.instantiate({"pe_rows": "4", "word_bits": "16", "clock_mhz": "250"})
    assert a.arithmetic.mesh_y == 4 and a.storage[0].word_bits == 16 and a.cycle_seconds == pytest.approx(4e-9)


def inline_template(tmp_path, depth_expr: str, extra_params: str = "") -> Template:
    text = f"""
name: tiny
parameters:
  n: {{type: int, default: 4, min: 1}}
  d: {{type: int}}
{extra_params}
architecture:
  version: 0.3
  subtree:
  - name: top
    local:
    - name: buf
      class: SRAM
      attributes: {{depth: "{depth_expr}", datawidth: 8}}
    - name: "mac[0..${{n - 1}}]"
      class: intmac
constraints:
  only: [{{target: buf, type: temporal, factors: "C=${{n}}"}}]
"""
    p = tmp_path / "tiny.yaml"
    p.write_text(text)
    return load_template(p)


def test_template_missing_parameter_and_expressions(tmp_path):
    t = inline_template(tmp_path, "${d * 2}")
    with pytest.raises(SpecError, match="'d' is required"):
        t.instantiate()
    arch = t.instantiate({"d": 5, "n": 3})
    assert arch.storage[0].depth == 10 and arch.arithmetic.instances == 3
    assert t.constraints("only", {"d": 1, "n": 6}) == [{"target": "buf", "type": "temporal", "factors": "C=6"}]
    with pytest.raises(SpecError, match="no constraint option 'other'"):
        t.constraints("other", {"d": 1})
    t = inline_template(tmp_path, "${max(d, n) ** 2 // 2 + ceil(log2(n))}")
    assert t.instantiate({"d": 3, "n": 4}).storage[0].depth == 10


@pytest.mark.parametrize("expr,needle", [
    ("${d +* 2}", "syntax error"),
    ("${nope * 2}", "unknown name 'nope'"),
    ("${__import__('os').system('true')}", "not allowed"),
    ("${d.real}", "not allowed"),
    ("${d / 0}", "cannot evaluate"),
    ("${d ** 100000}", "too large"),
])
def test_template_expression_errors_name_the_key(tmp_path, expr, needle):
    t = inline_template(tmp_path, expr)
    with pytest.raises(SpecError) as exc:
        t.instantiate({"d": 2})
    assert exc.value.key == "architecture.subtree[0].local[0].attributes.depth"
    assert needle in err_text(exc) and exc.value.file.endswith("tiny.yaml")


def test_template_file_errors(tmp_path):
    with pytest.raises(SpecError) as exc:
        load_template("no_such_template")
    assert "eyeriss_like" in err_text(exc) and "systolic_ws" in err_text(exc)
    with pytest.raises(SpecError, match="type"):
        inline_template(tmp_path, "1", "  bad: {type: integer, default: 1}")
    with pytest.raises(SpecError, match="'bad'.*choices"):
        inline_template(tmp_path, "1", "  bad: {type: choice, default: c, choices: [a, b]}")
    with pytest.raises(SpecError, match="'max'"):
        inline_template(tmp_path, "1", "  max: {type: int, default: 1}")


# ---------------------------------------------------------------------------
# YAML loading
# ---------------------------------------------------------------------------
def test_load_yaml_errors(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="directory"):
        load_yaml(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(SpecError, match=r"line 3") as exc:
        load_yaml(bad)
    assert exc.value.file == str(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_yaml(bad)
    bad.write_text("")
    with pytest.raises(SpecError, match="empty"):
        load_yaml(bad)
    bad.write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(SpecError, match="duplicate key 'a'.*|line 3"):
        load_yaml(bad)
    bad.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(SpecError, match="UTF-8"):
        load_yaml(bad)


def test_load_yaml_tolerates_tags_and_reads_yaml12_floats(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("x: !Container {name: c, n: !Foo 3}\ny: !Seq [1, 2]\nz: 1e-9\nw: !Str hello\nv: '1e-9'\n")
    assert load_yaml(p) == {"x": {"name": "c", "n": 3}, "y": [1, 2], "z": 1e-9, "w": "hello", "v": "1e-9"}


def test_load_merged(tmp_path):
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text("architecture: {version: 0.3}\n")
    b.write_text("problem: {x: 1}\nmapper: {}\n")
    c.write_text("problem: {x: 2}\n")
    merged, origin = load_merged([a, b])
    assert merged == {"architecture": {"version": 0.3}, "problem": {"x": 1}, "mapper": {}}
    assert origin == {"architecture": str(a), "problem": str(b), "mapper": str(b)}
    with pytest.raises(SpecError) as exc:
        load_merged([a, b, c])
    assert str(b) in err_text(exc) and str(c) in err_text(exc) and "problem" in err_text(exc)


def test_dump_yaml_round_trip(tmp_path):
    data = {"a": (1, 2), "b": {"c": 1e-9, "d": [True, None, "x"]}, "e": Path("/tmp/x")}
    dump_yaml(data, tmp_path / "sub" / "o.yaml")
    assert load_yaml(tmp_path / "sub" / "o.yaml") == {"a": [1, 2], "b": {"c": 1e-9, "d": [True, None, "x"]},
                                                     "e": "/tmp/x"}
