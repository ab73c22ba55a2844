"""Energy tables: reading Accelergy's ERT/ART exactly, and built-in estimates near Accelergy's."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from reference import REFERENCE as REF

from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.energy import EnergyTables, estimate, read_tables, tables_for
from coopt.energy.accelergy_io import leaf_name, read_art, read_ert
from coopt.energy.estimate import area_scale, energy_scale, parse_node
from coopt.errors import SpecError

CASES = sorted(str(p.parent.relative_to(REF)) for p in REF.glob("*/*/ERT.yaml")
               if p.parent.parent.name != "accelergy")   # those are test_accelergy.py's
EYERISS = REF / "model/06-eyeriss-like-convlayer-bestmap"
TUTORIAL = REF / "model/03-model-conv1d+oc-3level_bypass"
needs_ref = pytest.mark.skipif(not CASES, reason="reference outputs not present")

# One literal per case: (leaf, action or "area", value in the file, as printed in the stats file).
LITERALS = {
    "model/00-model-conv1d-1level": ("Buffer", "read", 0.42564, "0.43"),
    "model/01-model-conv1d-2level_os": ("MainMemory", "read", 43.3531, "43.35"),
    "model/01-model-conv1d-2level_ws": ("MainMemory", "area", 707084.0, "707084.00"),
    "model/02-model-conv1d+oc-2level_no-tiling": ("MACC", "compute", 0.845, "0.84"),
    "model/02-model-conv1d+oc-2level_tiling": ("Buffer", "area", 887.84, "887.84"),
    "model/03-model-conv1d+oc-3level_bypass": ("MainMemory", "read", 2048.0, "2048.00"),
    "model/03-model-conv1d+oc-3level_no-bypass": ("GlobalBuffer", "read", 43.3531, "43.35"),
    "model/04-model-conv1d+oc-3levelspatial_cp": ("RegisterFile", "read", 0.42564, "0.43"),
    "model/04-model-conv1d+oc-3levelspatial_kp": ("GlobalBuffer", "area", 707084.0, "707084.00"),
    "model/06-eyeriss-like-convlayer-bestmap": ("shared_glb", "read", 18.1838, "18.18"),
    "mapper/05-conv1d+oc-3level_baked": ("MACC", "compute", 0.845, "0.84"),
    "mapper/05-conv1d+oc-3level_freebypass": ("MainMemory", "read", 2048.0, "2048.00"),
    "mapper/05-conv1d+oc-3level_null": ("RegisterFile", "area", 887.84, "887.84"),
    "mapper/06-eyeriss-like-convlayer": ("mac", "compute", 0.207692, "0.21"),
    "mapper/resnet50-conv2x-3x3-eyeriss-like": ("weights_spad", "read", 1.9766, "1.98"),
}


# --- independent reading of the reference files --------------------------------
def _leaf(name: str) -> str:
    return re.sub(r"\[[^\]]*\]", "", name).split(".")[-1]


def _yaml_ert(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())["ERT"]
    return {_leaf(t["name"]): {a["name"]: a["energy"] for a in t["actions"]} for t in doc["tables"]}


def _yaml_art(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())["ART"]
    return {_leaf(t["name"]): t["area"] for t in doc["tables"]}


def _stats(case_dir: Path) -> dict[str, dict[str, str]]:
    """{level: {"vector"|"compute"|"area": printed value}} from the first listing in the stats file."""
    text = next(case_dir.glob("timeloop-*.stats.txt")).read_text()
    out: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"=== (\S+) ===\n(.*?)(?=\nLevel \d+|\n=== |\Z)", text, flags=re.DOTALL):
        if name in out:
            continue
        found = {}
        for key, pattern in (("vector", r"Vector access energy\s*: ([0-9.]+) pJ"),
                             ("compute", r"Compute energy\s*: ([0-9.]+) pJ"),
                             ("area", r"\n\s*Area\s*: ([0-9.]+) um\^2")):
            m = re.search(pattern, body)
            if m:
                found[key] = m.group(1)
        out[name] = found
    return out


@needs_ref
@pytest.mark.parametrize("case", CASES)
def test_read_ert_and_art_give_the_file_numbers(case):
    d = REF / case
    assert read_ert(d / "ERT.yaml") == _yaml_ert(d / "ERT.yaml")
    assert read_art(d / "ART.yaml") == _yaml_art(d / "ART.yaml")
    tables = read_tables(d / "ERT.yaml", d / "ART.yaml")
    assert isinstance(tables, EnergyTables) and tables.source == "accelergy"
    assert tables.ert == _yaml_ert(d / "ERT.yaml") and tables.art == _yaml_art(d / "ART.yaml")


@needs_ref
@pytest.mark.parametrize("case", CASES)
def test_read_values_are_those_timeloop_printed(case):
    d = REF / case
    tables = read_tables(d / "ERT.yaml", d / "ART.yaml")
    leaf, action, value, printed = LITERALS[case]
    got = tables.area(leaf) if action == "area" else tables.ert[leaf][action]
    assert got == value
    stats = _stats(d)
    assert stats[leaf]["area" if action == "area" else ("compute" if action == "compute" else "vector")] == printed
    # And every level Timeloop printed agrees with what we read (Timeloop prints with %.2f).
    checked = 0
    for name, found in stats.items():
        actions = {k: v for k, v in tables.ert.get(name, {}).items() if k != "leak"}
        if "vector" in found:
            assert f"{max(actions.values()):.2f}" == found["vector"], name
            assert f"{tables.storage_energy(name, 'read'):.2f}" == found["vector"], name
            checked += 1
        if "compute" in found:
            assert f"{tables.compute_energy(name):.2f}" == found["compute"], name
            checked += 1
        if "area" in found:
            assert f"{tables.area(name):.2f}" == found["area"], name
    assert checked >= 2


def test_leaf_names():
    assert leaf_name("system_top_level.DRAM[1..1]") == "DRAM"
    assert leaf_name("System.ws.PE[0..15].PEWeightBuffer[0..3]") == "PEWeightBuffer"
    assert leaf_name("simple_primitive.PE.buffer") == "buffer"
    assert leaf_name("mac") == "mac"


def test_v03_arguments_take_the_largest_entry_like_timeloop():
    # Shape of timeloop-accelergy-exercises 01_primitive_architecture_ERT (Accelergy 0.3).
    ert = {"ERT": {"version": 0.3, "tables": [{"name": "simple_primitive.GLB", "actions": [
        {"name": "read", "arguments": {"address_delta": 0, "data_delta": 0}, "energy": 0.0},
        {"name": "read", "arguments": {"address_delta": 1, "data_delta": 1}, "energy": 3.918},
        {"name": "read", "arguments": {"address_delta": 1, "data_delta": 0}, "energy": 1.176},
        {"name": "write", "arguments": None, "energy": "1e-5"},
        {"name": "idle", "arguments": None, "energy": 0.0}]}]}}
    assert read_ert(ert) == {"GLB": {"read": 3.918, "write": 1e-5, "idle": 0.0}}


def test_v02_mapping_layout():
    ert = {"ERT": {"version": 0.2, "tables": {
        "sys.PE[0..3].rf": {"read": [{"arguments": {"data_delta": 0}, "energy": 0.1},
                                     {"arguments": {"data_delta": 1}, "energy": 0.4}],
                            "idle": {"energy": 0.01}}}}}
    assert read_ert(ert) == {"rf": {"read": 0.4, "idle": 0.01}}


def test_art_mapping_and_inner_dicts():
    assert read_art({"version": 0.4, "tables": [{"name": "a.b[1..2]", "area": 3}]}) == {"b": 3.0}


GOOD = {"version": "0.4", "tables": [{"name": "s.glb[1..1]", "actions": [
    {"name": "read", "arguments": {}, "energy": 1.0}, {"name": "write", "arguments": {}, "energy": 2.0}]}]}


@pytest.mark.parametrize("mutate, key", [
    (lambda e: e["tables"][0]["actions"][1].pop("energy"), "ERT.tables[0].actions[1].energy"),
    (lambda e: e["tables"][0]["actions"][0].update(energy="lots"), "ERT.tables[0].actions[0].energy"),
    (lambda e: e["tables"][0]["actions"][0].update(energy=-1.0), "ERT.tables[0].actions[0].energy"),
    (lambda e: e["tables"][0]["actions"][0].update(energy=True), "ERT.tables[0].actions[0].energy"),
    (lambda e: e["tables"][0]["actions"][0].pop("name"), "ERT.tables[0].actions[0].name"),
    (lambda e: e["tables"][0].pop("name"), "ERT.tables[0].name"),
    (lambda e: e["tables"][0].update(actions={"read": 1}), "ERT.tables[0].actions"),
    (lambda e: e.update(tables=3), "ERT.tables"),
    (lambda e: e.pop("tables"), "ERT.tables"),
])
def test_malformed_ert_names_the_key(mutate, key):
    import copy
    ert = copy.deepcopy(GOOD)
    mutate(ert)
    with pytest.raises(SpecError) as info:
        read_ert({"ERT": ert}, file="my.ERT.yaml")
    assert info.value.key == key and info.value.file == "my.ERT.yaml"
    assert key in str(info.value) and "my.ERT.yaml" in str(info.value)


def test_malformed_files(tmp_path):
    with pytest.raises(SpecError) as info:
        read_ert({"something": 1})
    assert info.value.key == "ERT"
    bad = tmp_path / "ERT.yaml"
    bad.write_text("ERT: {tables: [name: x\n")
    with pytest.raises(SpecError, match="not valid YAML") as info:
        read_ert(bad)
    assert info.value.file == str(bad)
    with pytest.raises(SpecError) as info:
        read_tables(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(info.value)
    art = tmp_path / "ART.yaml"
    art.write_text(yaml.safe_dump({"ART": {"version": 0.4, "tables": [{"name": "a", "area": 1.0}, {"name": "b"}]}}))
    with pytest.raises(SpecError) as info:
        read_art(art)
    assert info.value.key == "ART.tables[1].area" and info.value.file == str(art)


# --- built-in estimates ------------------------------------------------------------
def eyeriss(technology: str = "32nm", glb_depth: int = 16384) -> Architecture:
    """The 06-eyeriss-like reference architecture (input.yaml), built by hand."""
    pe = dict(instances=168, mesh_x=14, mesh_y=12)
    return Architecture("eyeriss_like", (
        StorageLevel("psum_spad", cls="smartbuffer_RF", depth=16, width=16, word_bits=16, **pe),
        StorageLevel("weights_spad", cls="smartbuffer_RF", depth=192, width=16, word_bits=8, block_size=2, **pe),
        StorageLevel("ifmap_spad", cls="smartbuffer_RF", depth=12, width=16, word_bits=8, block_size=2, **pe),
        StorageLevel("inter_PE_spatial", cls="dummy_storage", depth=1, width=1, word_bits=1, instances=14, mesh_x=14),
        StorageLevel("inter_PE_column_spatial", cls="dummy_storage", depth=1, width=1, word_bits=1),
        StorageLevel("shared_glb", cls="smartbuffer_SRAM", depth=glb_depth, width=64, word_bits=8, block_size=8,
                     attributes={"n_banks": 32}),
        StorageLevel("DRAM", cls="DRAM", width=64, word_bits=8, block_size=8, technology="DRAM",
                     attributes={"type": "LPDDR4"}),
    ), ArithmeticLevel("mac", cls="intmac", word_bits=8, attributes={"multiplier_width": 8, "adder_width": 16}, **pe),
        technology=technology)


def tutorial(technology: str = "40nm") -> Architecture:
    """The 1-D tutorial's 3-level architecture (03-model-conv1d+oc-3level_*)."""
    return Architecture("tutorial", (
        StorageLevel("RegisterFile", cls="regfile", depth=64, width=8, word_bits=8),
        StorageLevel("GlobalBuffer", cls="SRAM", depth=32768, width=64, word_bits=8, block_size=8),
        StorageLevel("MainMemory", cls="DRAM", width=256, word_bits=8, block_size=32, technology="DRAM"),
    ), ArithmeticLevel("MACC", cls="intmac", word_bits=8, attributes={"width": 8}), technology=technology)


def _ratio(est: float, ref: float) -> float:
    return est / ref


EYERISS_ENTRIES = [("shared_glb", "read"), ("shared_glb", "write"), ("ifmap_spad", "read"), ("ifmap_spad", "write"),
                   ("weights_spad", "read"), ("weights_spad", "write"), ("psum_spad", "read"),
                   ("psum_spad", "write"), ("mac", "compute"), ("DRAM", "read"),
                   ("shared_glb", "area"), ("ifmap_spad", "area"), ("weights_spad", "area"),
                   ("psum_spad", "area"), ("mac", "area")]


@needs_ref
@pytest.mark.parametrize("name, action", EYERISS_ENTRIES)
def test_eyeriss_estimates_within_1_5x_of_accelergy(name, action):
    est = estimate(eyeriss())
    ref = read_tables(EYERISS / "ERT.yaml", EYERISS / "ART.yaml")
    got, want = ((est.area(name), ref.area(name)) if action == "area"
                 else (est.ert[name][action], ref.ert[name][action]))
    assert 1 / 1.5 <= _ratio(got, want) <= 1.5, (name, action, got, want)


@needs_ref
def test_eyeriss_exact_entries():
    est = estimate(eyeriss())
    assert est.source == "coopt-builtin"
    assert est.ert["DRAM"]["read"] == 512.0 and est.area("DRAM") == 0.0
    assert est.ert["inter_PE_spatial"] == {"read": 0.0, "write": 0.0, "update": 0.0, "leak": 0.0}
    assert est.area("inter_PE_spatial") == 1.0
    for name in ("shared_glb", "psum_spad", "weights_spad", "ifmap_spad"):
        assert set(est.ert[name]) == {"read", "write", "update", "leak"}
        assert est.storage_energy(name, "update") == est.ert[name]["write"]
    assert est.compute_energy("mac") == est.ert["mac"]["compute"]


@needs_ref
@pytest.mark.parametrize("name, action", [("GlobalBuffer", "read"), ("GlobalBuffer", "write"),
                                          ("GlobalBuffer", "area"), ("RegisterFile", "read"),
                                          ("RegisterFile", "write"), ("MainMemory", "read"), ("MACC", "area")])
def test_tutorial_estimates_within_1_5x_of_accelergy(name, action):
    est = estimate(tutorial())
    ref = read_tables(TUTORIAL / "ERT.yaml", TUTORIAL / "ART.yaml")
    got, want = ((est.area(name), ref.area(name)) if action == "area"
                 else (est.ert[name][action], ref.ert[name][action]))
    assert 1 / 1.5 <= _ratio(got, want) <= 1.5, (name, action, got, want)


@needs_ref
def test_tutorial_known_deviations_stay_bounded():
    """Two tutorial entries we do not match, on purpose.

    MACC compute: Accelergy's 40 nm Aladdin plug-in uses a 1-stage 1 ns 32-bit
    multiplier (12.68 pJ, 4x Horowitz's 3.1 pJ); matching it would put the
    Eyeriss MAC (whose compound models its multiplier as a 32-bit adder) 3x off.
    RegisterFile area: the Aladdin plug-in's 887.84 um^2 is essentially 64
    comparators; 512 flip-flops alone take ~3000 um^2 at 40 nm.
    """
    est = estimate(tutorial())
    ref = read_tables(TUTORIAL / "ERT.yaml", TUTORIAL / "ART.yaml")
    assert 0.2 < est.compute_energy("MACC") / ref.compute_energy("MACC") < 1
    assert 1 < est.area("RegisterFile") / ref.area("RegisterFile") < 5.5


def _sram(depth=8192, width=64, tech="45nm", cls="SRAM"):
    return estimate(Architecture("x", (StorageLevel("buf", cls=cls, depth=depth, width=width),),
                                 ArithmeticLevel("mac", word_bits=8), technology=tech))


@pytest.mark.parametrize("cls", ["SRAM", "smartbuffer_SRAM", "regfile", "smartbuffer_RF"])
def test_bigger_memories_cost_more(cls):
    depths = (64, 256, 1024, 8192, 65536) if "SRAM" in cls else (8, 16, 64, 192, 512)
    tabs = [_sram(depth=d, cls=cls) for d in depths]
    if "SRAM" in cls:   # CACTI pads arrays below 64 rows to 64 rows: never cheaper than that.
        tiny = _sram(depth=16, cls=cls)
        assert 0.97 * tabs[0].area("buf") <= tiny.area("buf") <= tabs[0].area("buf")
        for a in tiny.ert["buf"]:
            assert 0.97 * tabs[0].ert["buf"][a] <= tiny.ert["buf"][a] <= tabs[0].ert["buf"][a]
    for small, big in zip(tabs, tabs[1:]):
        for action in ("read", "write", "leak"):
            assert big.ert["buf"][action] > small.ert["buf"][action], (cls, action)
        assert big.area("buf") > small.area("buf")
    narrow, wide = _sram(depth=256, width=16, cls=cls), _sram(depth=256, width=64, cls=cls)
    assert wide.ert["buf"]["read"] > narrow.ert["buf"]["read"] and wide.area("buf") > narrow.area("buf")


@pytest.mark.parametrize("cls", ["SRAM", "smartbuffer_RF", "regfile"])
def test_older_nodes_cost_more(cls):
    nodes = ("180nm", "130nm", "65nm", "45nm", "40nm", "32nm", "22nm", "16nm", "7nm", "5nm")
    tabs = [_sram(depth=512, width=32, tech=n, cls=cls) for n in nodes]
    for old, new in zip(tabs, tabs[1:]):
        assert old.ert["buf"]["read"] > new.ert["buf"]["read"]
        assert old.area("buf") > new.area("buf")
        assert old.compute_energy("mac") > new.compute_energy("mac") and old.area("mac") > new.area("mac")


def test_technology_scaling_rule():
    assert energy_scale(45, 45) == pytest.approx(1.0) and area_scale(32, 32) == pytest.approx(1.0)
    assert area_scale(32, 45) == pytest.approx(0.46)              # Stillmaker & Baas 45 nm row
    assert energy_scale(32, 45) == pytest.approx(0.6593, abs=1e-4)
    assert energy_scale(32, 45) == pytest.approx(energy_scale(32, 40) * energy_scale(40, 45))
    assert parse_node("32nm") == 32 and parse_node("0.045um") == pytest.approx(45)
    assert parse_node(40) == 40 and parse_node("32e-9") == pytest.approx(32)
    with pytest.raises(SpecError, match="technology"):
        _sram(tech="fast")


def _mac(mult, adder=None, cls="intmac"):
    attrs = ({"width": mult} if "adder" in cls else {"multiplier_width": mult}) | (
        {"adder_width": adder} if adder else {})
    arch = Architecture("m", (StorageLevel("buf", depth=64, width=16),),
                        ArithmeticLevel("mac", cls=cls, word_bits=mult, attributes=attrs), technology="45nm")
    t = estimate(arch)
    return t.compute_energy("mac"), t.area("mac")


def test_more_bits_cost_more():
    macs = [_mac(b) for b in (4, 8, 16, 32)]
    for (e0, a0), (e1, a1) in zip(macs, macs[1:]):
        assert e1 > e0 and a1 > a0
    assert _mac(8, 32) > _mac(8, 16)
    assert _mac(16, cls="fpmac") > _mac(16)
    assert _mac(8, cls="intadder")[0] < _mac(8)[0]
    # Horowitz 45 nm: an 8-bit multiply is 0.2 pJ, a 32-bit add 0.1 pJ.
    assert _mac(8, cls="intmultiplier")[0] == pytest.approx(0.2)
    assert _mac(32, cls="intadder")[0] == pytest.approx(0.1)
    assert _mac(8, cls="intadder")[0] == pytest.approx(0.03)


def _dram(kind, width=64):
    arch = Architecture("d", (StorageLevel("DRAM", cls="DRAM", width=width, technology="DRAM",
                                           attributes={"type": kind}),), ArithmeticLevel("mac"))
    return estimate(arch).ert["DRAM"]["read"]


def test_dram_per_bit_by_type():
    assert _dram("LPDDR4") == 512.0 and _dram("HBM2") == pytest.approx(3.9 * 64)
    assert _dram("HBM2") < _dram("LPDDR4") < _dram("DDR4") and _dram("LPDDR4", 128) == 1024.0
    with pytest.raises(SpecError, match="DRAM type"):
        _dram("SDR")


@needs_ref
def test_tables_for_prefers_the_users_files():
    arch = eyeriss()
    assert tables_for(arch).ert == estimate(arch).ert
    merged = tables_for(arch, EYERISS / "ERT.yaml", EYERISS / "ART.yaml")
    ref = read_tables(EYERISS / "ERT.yaml", EYERISS / "ART.yaml")
    assert merged.source == "coopt-builtin+accelergy"
    for name in ref.ert:
        assert merged.ert[name] == ref.ert[name]
    assert merged.art == {**estimate(arch).art, **ref.art}
    # A partial ERT overrides only what it names; areas stay estimated without an ART.
    partial = tables_for(arch, {"ERT": {"version": 0.4, "tables": [
        {"name": "top.mac[1..168]", "actions": [{"name": "compute", "energy": 1.5}]}]}})
    assert partial.compute_energy("mac") == 1.5
    assert partial.ert["shared_glb"] == estimate(arch).ert["shared_glb"]
    assert partial.art == estimate(arch).art
