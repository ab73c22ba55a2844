"""Constraints of the Timeloop + Accelergy exercises honoured by ``coopt map`` and checked by ``coopt evaluate``.

The inputs are the exercises' own processed inputs (``parsed-processed-input.yaml``,
what timeloopfe hands timeloop-mapper; tests/data/timeloop_exercises, MIT
licence) with the reference run's ERT/ART, so that energies are the
reference's and the comparison is about the mapping alone.  Until the v4
reader lands, three things the reader does not take yet are converted here as
the issue did by hand (``_processed``): derived instance keys (H, W, Hpad,
Wpad) dropped, ``class: storage`` + ``subclass:`` read as the subclass, the
register primitive named as a register file.  The constraints are untouched.

Each found mapping is checked here against every constraint target by this
file's own reading of Timeloop's rules (not coopt's checker), and its EDP (the
exercises' ``optimization_metrics: [edp]``) against the reference mapper's
``timeloop-mapper.stats.txt``.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from test_hostile import cli

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "timeloop_exercises"
DESIGNS = ("simple_output_stationary", "simple_weight_stationary", "eyeriss_like")


def _processed(design: str, tmp: Path) -> Path:
    raw = yaml.safe_load((DATA / design / "parsed-processed-input.yaml").read_text())
    for k in ("H", "W", "Hpad", "Wpad"):
        raw["problem"]["instance"].pop(k)
    raw.pop("mapping")

    def walk(node):
        if isinstance(node, dict):
            if node.get("class") == "storage" and "subclass" in node:
                node["class"] = node.pop("subclass")
            if node.get("class") == "aladdin_register":
                node["class"] = "regfile"
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(raw["architecture"])
    out = tmp / f"{design}.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def _tables(design: str) -> list[str]:
    return ["--ert", str(DATA / design / "timeloop-mapper.ERT.yaml"),
            "--art", str(DATA / design / "timeloop-mapper.ART.yaml")]


def _reference(design: str) -> tuple[float, int]:
    """(energy in pJ, cycles) of the reference mapper's best mapping."""
    text = (DATA / design / "timeloop-mapper.stats.txt").read_text()
    energy = float(re.search(r"^Energy: ([0-9.]+) uJ", text, re.M).group(1)) * 1e6
    cycles = int(re.search(r"^Cycles: (\d+)", text, re.M).group(1))
    return energy, cycles


def _factors(text: str) -> dict[str, int]:
    return {d: int(v) for d, v in re.findall(r"([A-Za-z]+)\s*=?\s*(\d+)", text)}


def _violations(targets: list, mapping: list, dims: list[str]) -> list[str]:
    """Every constraint target against a Timeloop mapping (both lists of directives)."""
    by = {(m["target"], m["type"]): m for m in mapping}
    bad = []
    for t in targets:
        level, kind = t["target"], t["type"]
        if kind in ("temporal", "spatial"):
            m = by.get((level, kind), {"factors": " ".join(f"{d}1" for d in dims), "permutation": "".join(dims)})
            got = _factors(m["factors"])
            for d, v in _factors(t.get("factors", "")).items():
                if got.get(d, 1) != v:
                    bad.append(f"{level} {kind} {d}={got.get(d, 1)}, constrained {v}")
            order = [d for d in m["permutation"] if got.get(d, 1) > 1]         # innermost first
            prefix = [d for d in t.get("permutation", "").split("_")[0] if got.get(d, 1) > 1]
            if order[:len(prefix)] != prefix:
                bad.append(f"{level} {kind} order {''.join(order)} against {t['permutation']}")
        else:
            m = by[(level, "datatype")]
            for ds in t.get("keep", []):
                if ds not in m["keep"]:
                    bad.append(f"{level} bypasses {ds}, constrained keep")
            for ds in t.get("bypass", []):
                if ds in m["keep"]:
                    bad.append(f"{level} keeps {ds}, constrained bypass")
    return bad


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """``coopt map --json`` of each design with its constraints and the reference tables."""
    tmp = tmp_path_factory.mktemp("exercises")
    out = {}
    for d in DESIGNS:
        p = cli("map", _processed(d, tmp), *_tables(d), "--json", cwd=tmp)
        assert p.returncode == 0, p.stderr[-2000:]
        out[d] = json.loads(p.stdout)
    return out


@pytest.mark.parametrize("design", DESIGNS)
def test_map_honours_every_constraint_and_beats_the_reference(design, mapped):
    raw = yaml.safe_load((DATA / design / "parsed-processed-input.yaml").read_text())
    targets = raw["architecture_constraints"]["targets"]
    got = mapped[design]
    assert _violations(targets, got["mapping"], raw["problem"]["shape"]["dimensions"]) == []
    ref_energy, ref_cycles = _reference(design)
    # EDP no worse than timeloop-mapper's (its energy is printed to 0.01 uJ: allow that rounding)
    assert got["energy_pj"] * got["cycles"] <= (ref_energy + 5e3) * ref_cycles, (got["energy_pj"], got["cycles"])


def test_the_reference_mappings_pass_this_files_check():
    """The checker above is not vacuous: the reference mapper's own mappings pass, a foreign one fails."""
    for d in DESIGNS:
        raw = yaml.safe_load((DATA / d / "parsed-processed-input.yaml").read_text())
        ref = yaml.safe_load((DATA / d / "timeloop-mapper.map.yaml").read_text())["mapping"]
        assert _violations(raw["architecture_constraints"]["targets"], ref, raw["problem"]["shape"]["dimensions"]) == []
    os_raw = yaml.safe_load((DATA / "simple_output_stationary" / "parsed-processed-input.yaml").read_text())
    ws_map = yaml.safe_load((DATA / "simple_weight_stationary" / "timeloop-mapper.map.yaml").read_text())["mapping"]
    assert _violations(os_raw["architecture_constraints"]["targets"], ws_map, os_raw["problem"]["shape"]["dimensions"])


def test_output_and_weight_stationary_get_different_mappings(mapped):
    os_, ws = mapped["simple_output_stationary"], mapped["simple_weight_stationary"]
    assert os_["mapping"] != ws["mapping"]
    keeps = {d: next(m["keep"] for m in mapped[d]["mapping"] if m["target"] == "pe_spad" and m["type"] == "datatype")
             for d in ("simple_output_stationary", "simple_weight_stationary")}
    assert keeps == {"simple_output_stationary": ["Outputs"], "simple_weight_stationary": ["Weights"]}


def test_eyeriss_constraints_are_not_ignored(mapped):
    """The issue's 46.3 uJ came from ignoring the constraints; the reference mapper reports 59.28 uJ at
    86,016 cycles.  Honouring them, coopt's best has Eyeriss's row-stationary shape (PE columns over Q and M
    only, weights_spad keeping only Weights) and an EDP no worse than the reference's."""
    got = mapped["eyeriss_like"]
    assert got["energy_pj"] > 50e6                                   # not the unconstrained 46.3 uJ
    spatial = next(m for m in got["mapping"] if m["target"] == "inter_PE_spatial" and m["type"] == "spatial")
    assert {d for d, v in _factors(spatial["factors"]).items() if v > 1} <= {"S", "C", "M"}


def test_evaluate_refuses_a_mapping_that_breaks_the_constraints(tmp_path):
    """timeloop-model exits on 'mapping violates architecture constraints'; coopt says where, exit 2."""
    ws_map = DATA / "simple_weight_stationary" / "timeloop-mapper.map.yaml"
    p = cli("evaluate", _processed("simple_output_stationary", tmp_path), ws_map,
            *_tables("simple_output_stationary"), cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "pe_spad" in last and "Outputs" in last and "keep" in last, last
    ok = cli("evaluate", _processed("simple_output_stationary", tmp_path),
             DATA / "simple_output_stationary" / "timeloop-mapper.map.yaml", *_tables("simple_output_stationary"),
             "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["cycles"] == _reference("simple_output_stationary")[1]


def _other_forms(targets: list) -> list:
    """The same constraints in the other layouts Timeloop and timeloopfe accept: factors as lists and maps,
    permutations as lists, levels by ``name`` or index, nested ``constraints:`` with ``attributes:``."""
    out = []
    for i, t in enumerate(targets):
        t = dict(t)
        if "factors" in t:
            items = t["factors"].split(",")
            t["factors"] = items if i % 2 else {f.split("=")[0]: int(f.split("=")[1]) for f in items}
        if "permutation" in t and i % 3 == 0:
            t["permutation"] = list(t["permutation"])
        if i % 4 == 1:
            t["name"] = t.pop("target")
        elif i % 4 == 2:
            level = t.pop("target")
            out.append({"target": level, "constraints": [{"type": t.pop("type"), "attributes": t}]})
            continue
        out.append(t)
    return out


def _with_targets(design: str, tmp: Path, targets: list) -> Path:
    f = _processed(design, tmp)
    raw = yaml.safe_load(f.read_text())
    raw["architecture_constraints"] = {"targets": targets}
    f.write_text(yaml.safe_dump(raw, sort_keys=False))
    return f


def test_every_layout_of_the_same_constraints_gives_the_same_mapping(mapped, tmp_path):
    raw = yaml.safe_load((DATA / "simple_output_stationary" / "parsed-processed-input.yaml").read_text())
    forms = _other_forms(raw["architecture_constraints"]["targets"])
    assert any(isinstance(t.get("factors"), dict) for t in forms) and any("constraints" in t for t in forms)
    p = cli("map", _with_targets("simple_output_stationary", tmp_path, forms),
            *_tables("simple_output_stationary"), "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout)
    assert got["mapping"] == mapped["simple_output_stationary"]["mapping"]
    assert got["energy_pj"] == mapped["simple_output_stationary"]["energy_pj"]


def _spatial(got: dict, level: str) -> dict[str, int]:
    return _factors(next(m for m in got["mapping"] if m["target"] == level and m["type"] == "spatial")["factors"])


def test_min_factors_and_min_utilization_are_honoured(mapped, tmp_path):
    """``C>=3`` (Timeloop's min factor) and ``utilization: min`` (Timeloop's min parallelism: the share of the
    256 MACs used).  The design's split puts C and M on the 16-wide Y axis only, so at most 16 MACs (6.25 %)
    are usable: C>=3 leaves M<=4 (12 MACs), which ``min: 0.06`` then excludes."""
    raw = yaml.safe_load((DATA / "simple_output_stationary" / "parsed-processed-input.yaml").read_text())
    assert _spatial(mapped["simple_output_stationary"], "inter_PE_spatial").get("C", 1) < 3     # C>=3 binds
    targets = raw["architecture_constraints"]["targets"]

    def run(*extra, spatial_extra=()):
        t = copy.deepcopy(targets) + list(extra)
        sp = next(x for x in t if x["type"] == "spatial")
        sp["factors"] = sp["factors"].split(",") + list(spatial_extra)
        p = cli("map", _with_targets("simple_output_stationary", tmp_path, t),
                *_tables("simple_output_stationary"), "--json", cwd=tmp_path)
        assert p.returncode in (0, 1) and "Traceback" not in p.stderr, p.stderr[-2000:]
        return json.loads(p.stdout)

    util = {"target": "output_activation_reg", "type": "utilization", "min": 0.06}
    got = run(spatial_extra=["C>=3"])
    assert _spatial(got, "inter_PE_spatial")["C"] == 3
    got = run(util)
    s = _spatial(got, "inter_PE_spatial")
    assert s.get("C", 1) * s.get("M", 1) >= 0.06 * 256
    assert run(util, spatial_extra=["C>=3"])["found"] is False
    assert run({**util, "min": 0.1})["found"] is False


def test_a_partial_spatial_permutation_is_honoured(tmp_path):
    """``permutation: MC`` on the PE array (no split): M innermost, then C, the rest free."""
    raw = yaml.safe_load((DATA / "simple_output_stationary" / "parsed-processed-input.yaml").read_text())
    targets = raw["architecture_constraints"]["targets"]
    spatial = next(t for t in targets if t["type"] == "spatial")
    spatial["permutation"] = "MC"
    del spatial["split"]
    spatial["factors"] = "R=1,S=1,N=1"
    p = cli("map", _with_targets("simple_output_stationary", tmp_path, targets),
            *_tables("simple_output_stationary"), "--json", "--seed", "3", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout)
    assert _violations(targets, got["mapping"], raw["problem"]["shape"]["dimensions"]) == []
    s = _spatial(got, "inter_PE_spatial")
    assert sum(v > 1 for v in s.values()) >= 2            # the order constrains something


def test_the_mapspace_rejects_a_broken_partial_spatial_order(tmp_path):
    """Rows whose spatial loops break a partial permutation never reach the model (a factor move can make
    a trivial, and so unordered, loop non-trivial)."""
    import numpy as np

    from coopt.inputs import load_inputs
    from coopt.mapper.constraints import parse_constraints
    from coopt.mapper.space import MapSpace
    raw = yaml.safe_load((DATA / "simple_output_stationary" / "parsed-processed-input.yaml").read_text())
    targets = [t for t in raw["architecture_constraints"]["targets"] if t["type"] != "spatial"]
    targets.append({"target": "inter_PE_spatial", "type": "spatial", "permutation": "MC", "factors": "R=1 S=1 N=1"})
    inp = load_inputs([_with_targets("simple_output_stationary", tmp_path, targets)],
                      ert=DATA / "simple_output_stationary" / "timeloop-mapper.ERT.yaml",
                      art=DATA / "simple_output_stationary" / "timeloop-mapper.ART.yaml")
    space = MapSpace(inp.problem, inp.arch, parse_constraints(targets, inp.arch, inp.problem))
    li = [lvl.name for lvl in inp.arch.storage].index("inter_PE_spatial")
    M, C = inp.problem.dims.index("M"), inp.problem.dims.index("C")
    mb = space.sample(4000, np.random.default_rng(0))
    both = (mb.sf[:, li, M] > 1) & (mb.sf[:, li, C] > 1)
    assert both.any()
    ok = space.prefilter(mb).ok
    swapped = mb.take(np.flatnonzero(both))
    perm = swapped.sperm[:, li].copy()
    pm, pc = np.argmax(perm == M, axis=1), np.argmax(perm == C, axis=1)
    rows = np.arange(len(perm))
    perm[rows, pm], perm[rows, pc] = C, M                     # C before M: breaks 'MC'
    swapped.sperm[:, li] = perm
    assert ok[both].any() and not space.prefilter(swapped).ok.any()


def test_network_on_a_template_honours_its_dataflow(tmp_path):
    """``coopt network`` (the unit a search trial runs) maps every layer within the template's constraints."""
    from coopt.design import load_design
    design = load_design("eyeriss_like")
    p = cli("network", "--arch", "eyeriss_like", "--network", "resnet18", "--budget", "60", "--json",
            cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    layers = json.loads(p.stdout)["layers"]
    assert layers and all(layer["found"] for layer in layers)
    for layer in layers:
        assert _violations(design.targets, layer["mapping"], list("CMRSNPQ")) == [], layer["name"]
