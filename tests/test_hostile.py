"""Hostile and malformed input through the real command line: one line naming the file/key, exit 2.

Every case runs ``python -m coopt.cli`` in a child process (with a timeout, so
a hang fails the test) and checks the exit status, that standard error is a
single line without a traceback, and that the line names what was wrong.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ONE_D = ROOT / "tests" / "reference_data" / "model" / "03-model-conv1d+oc-3level_bypass"
EYERISS_ARCH = ROOT / "tests" / "reference_data" / "model" / "06-eyeriss-like-convlayer-bestmap" / "input.yaml"
BIN = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" * 8


def cli(*args, cwd, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "coopt.cli", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
    p.cwd = str(cwd)
    return p


def refused(p: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2, one line on stderr naming every one of ``names``, no traceback.

    The test's folder is masked as ``<cwd>`` first, so that its name cannot supply a word.
    """
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr and len(lines) == 1, p.stderr[-3000:]
    text = lines[0].replace(p.cwd, "<cwd>")
    for name in names:
        assert str(name) in text, (name, text)
    return text


@pytest.fixture
def base():
    """The 1-D tutorial input set (architecture, problem, mapping) as a dict to spoil."""
    return yaml.safe_load((ONE_D / "input.yaml").read_text())


def dump(path: Path, doc) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def eyeriss_arch(tmp_path_factory) -> Path:
    from coopt.arch.template import load_template
    from coopt.yamlio import dumps_yaml
    p = tmp_path_factory.mktemp("arch") / "eyeriss.yaml"
    p.write_text(dumps_yaml(load_template("eyeriss_like").instantiate_yaml({})))
    return p


BOMB = ("l0: &a0 [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"l{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]\n"
                  for i in range(1, 10)))


# --- YAML limits: alias expansion, nesting depth, file size ------------------------------------------
def test_alias_bomb_as_a_layer_dimension(tmp_path, base):
    text = yaml.safe_dump(base)
    assert "K: 32" in text
    f = tmp_path / "bomb.yaml"
    f.write_text(BOMB + text.replace("K: 32", "K: *a9"))
    refused(cli("evaluate", f, cwd=tmp_path), "bomb.yaml", "alias")


def test_alias_bomb_in_an_architecture_attribute_with_network_out(tmp_path, eyeriss_arch):
    text = eyeriss_arch.read_text().replace("depth: 16384", "depth: *a9", 1)
    assert "*a9" in text
    f = tmp_path / "arch.yaml"
    f.write_text(BOMB + text)
    refused(cli("network", "--arch", f, "--out", tmp_path / "out", cwd=tmp_path), "arch.yaml", "alias")
    assert not (tmp_path / "out").exists()


def test_deep_nesting(tmp_path):
    f = tmp_path / "deep.yaml"
    f.write_text("problem: " + "[" * 20000 + "]" * 20000 + "\n")
    refused(cli("evaluate", f, cwd=tmp_path), "deep.yaml", "nested")


def test_file_size_limit_and_dev_zero(tmp_path, base):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.truncate(40 * 2**20)
    refused(cli("evaluate", big, cwd=tmp_path), "big.yaml", "larger than")
    refused(cli("evaluate", dump(tmp_path / "in.yaml", base), "--ert", "/dev/zero", cwd=tmp_path),
            "/dev/zero", "larger than")
    fifo = tmp_path / "pipe.yaml"                    # nobody writes to it: opening it would wait forever
    os.mkfifo(fifo)
    refused(cli("evaluate", str(fifo), cwd=tmp_path), "pipe.yaml", "named pipe")


# --- non-UTF-8 and binary content, wherever a file is read --------------------------------------------
def test_binary_and_non_utf8_files(tmp_path, base, eyeriss_arch):
    binary = tmp_path / "image.yaml"
    binary.write_bytes(BIN)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    inp = dump(tmp_path / "in.yaml", base)
    refused(cli("evaluate", binary, cwd=tmp_path), "image.yaml", "binary")
    refused(cli("evaluate", inp, "--ert", binary, cwd=tmp_path), "image.yaml", "binary")
    refused(cli("evaluate", inp, "--art", latin, cwd=tmp_path), "latin.yaml", "UTF-8")
    refused(cli("map", inp, "--ert", latin, cwd=tmp_path), "latin.yaml", "UTF-8")
    refused(cli("search", "--space", latin, cwd=tmp_path), "latin.yaml", "UTF-8")
    refused(cli("network", "--arch", eyeriss_arch, "--constraints", binary, cwd=tmp_path), "image.yaml")
    refused(cli("arch", binary, cwd=tmp_path), "image.yaml", "binary")
    assert not (tmp_path / "mlruns").exists()


# --- I/O errors --------------------------------------------------------------------------------------
def test_io_errors(tmp_path, base):
    inp = dump(tmp_path / "in.yaml", base)
    refused(cli("evaluate", tmp_path / "missing.yaml", cwd=tmp_path), "missing.yaml", "not found")
    refused(cli("evaluate", tmp_path, cwd=tmp_path), "<cwd>", "directory")
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    refused(cli("evaluate", tmp_path / "dangling.yaml", cwd=tmp_path), "dangling.yaml", "dangling")
    plain = tmp_path / "plain"
    plain.write_text("x")
    refused(cli("arch", "eyeriss_like", "--out", plain / "arch.yaml", cwd=tmp_path), "plain", "not a folder")
    refused(cli("map", inp, "--budget", "50", "--out", plain / "sub", cwd=tmp_path), "plain", "not a folder")
    assert plain.read_text() == "x"


# --- integers out of range ---------------------------------------------------------------------------
def test_integers_out_of_range(tmp_path, base):
    huge = copy.deepcopy(base)
    huge["problem"]["instance"]["K"] = 10**12
    refused(cli("evaluate", dump(tmp_path / "huge.yaml", huge), cwd=tmp_path), "huge.yaml", "problem.instance.K")
    del huge["mapping"]
    refused(cli("map", dump(tmp_path / "huge_map.yaml", huge), cwd=tmp_path), "huge_map.yaml", "problem.instance.K")
    refused(cli("network", "--batch", 10**12, cwd=tmp_path), "batch")
    refused(cli("network", "--budget", 0, cwd=tmp_path), "--budget")


# --- a mapping or constraints that bypass every storage level for a data space -----------------------
def test_bypassing_every_level_is_refused(tmp_path, base, eyeriss_arch):
    mapped = copy.deepcopy(base)
    mapped["mapping"] = [d for d in mapped["mapping"] if d.get("type") != "bypass"] + [
        {"target": t, "type": "bypass", "bypass": ["Weights"]} for t in ("MainMemory", "GlobalBuffer", "RegisterFile")]
    refused(cli("evaluate", dump(tmp_path / "mapped.yaml", mapped), cwd=tmp_path), "mapped.yaml", "mapping", "Weights")

    cons = copy.deepcopy(base)
    del cons["mapping"]
    cons["architecture_constraints"] = {"targets": [
        {"target": t, "type": "bypass", "bypass": ["Inputs"]} for t in ("MainMemory", "GlobalBuffer", "RegisterFile")]}
    refused(cli("map", dump(tmp_path / "cons.yaml", cons), cwd=tmp_path), "cons.yaml", "constraints", "Inputs")

    # network --arch FILE honours `mapspace: constraints:` (as coopt map does) and refuses the same way
    levels = ("DRAM", "shared_glb", "inter_PE_column_spatial", "inter_PE_spatial", "ifmap_spad", "weights_spad",
              "psum_spad")
    ms = dump(tmp_path / "mapspace.yaml", {"mapspace": {"constraints": [
        {"target": t, "type": "bypass", "bypass": ["Outputs"]} for t in levels]}})
    refused(cli("network", "--arch", eyeriss_arch, "--constraints", ms, "--network", "resnet18", cwd=tmp_path),
            "mapspace.yaml", "Outputs")


# --- unknown level or dimension in constraints: the file is named ------------------------------------
def test_unknown_level_or_dimension_in_constraints_names_the_file(tmp_path, base, eyeriss_arch):
    doc = copy.deepcopy(base)
    del doc["mapping"]
    doc["architecture_constraints"] = {"targets": [{"target": "Nope", "type": "temporal", "factors": "K=1"}]}
    refused(cli("map", dump(tmp_path / "level.yaml", doc), cwd=tmp_path), "level.yaml", "Nope")
    cons = dump(tmp_path / "dims.yaml", {"constraints": {"targets": [
        {"target": "shared_glb", "type": "temporal", "factors": "Z=1"}]}})
    refused(cli("network", "--arch", eyeriss_arch, "--constraints", cons, "--network", "resnet18", cwd=tmp_path),
            "dims.yaml", "'Z'")


# --- port and worker ranges --------------------------------------------------------------------------
def test_port_and_worker_ranges(tmp_path):
    refused(cli("network", "--workers", 0, cwd=tmp_path), "--workers", "0")
    refused(cli("search", "--workers", 0, cwd=tmp_path), "--workers")
    refused(cli("ui", "--port", 99999, cwd=tmp_path), "--port", "99999")
    refused(cli("ui", "--port", 0, cwd=tmp_path), "--port")
    assert not (tmp_path / "mlruns").exists()


# --- outputs that exist: files, folders, links, loops -------------------------------------------------
def test_existing_outputs_need_force(tmp_path, base):
    existing = tmp_path / "arch.yaml"
    existing.write_text("mine\n")
    refused(cli("arch", "eyeriss_like", "--out", existing, cwd=tmp_path), "arch.yaml", "--force")
    assert existing.read_text() == "mine\n"
    ok = cli("arch", "eyeriss_like", "--out", existing, "--force", cwd=tmp_path)
    assert ok.returncode == 0 and "architecture" in yaml.safe_load(existing.read_text())

    folder = tmp_path / "folder"
    folder.mkdir()
    refused(cli("arch", "eyeriss_like", "--out", folder, "--force", cwd=tmp_path), "folder", "is a folder")

    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("keep\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(elsewhere)
    refused(cli("arch", "eyeriss_like", "--out", link, cwd=tmp_path), "link.yaml", "symbolic link")
    assert elsewhere.read_text() == "keep\n"

    inp = dump(tmp_path / "in.yaml", base)
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("x")
    refused(cli("map", inp, "--budget", "50", "--out", full, cwd=tmp_path), "full", "--force")
    refused(cli("map", inp, "--budget", "50", "--out", existing, cwd=tmp_path), "arch.yaml", "not a folder")
    ok = cli("map", inp, "--budget", "50", "--out", full, "--force", cwd=tmp_path)
    assert ok.returncode == 0 and (full / "coopt-mapper.map.yaml").is_file()

    refused(cli("energy", EYERISS_ARCH, "--out", full, cwd=tmp_path), "full", "--force")
    assert sorted(p.name for p in full.iterdir()) == ["coopt-mapper.map.yaml", "coopt-mapper.stats.json",
                                                       "coopt-mapper.stats.txt", "notes.txt"]

    target = tmp_path / "target"
    target.mkdir()
    dlink = tmp_path / "dlink"
    dlink.symlink_to(target)
    refused(cli("network", "--network", "resnet18", "--out", dlink, cwd=tmp_path), "dlink", "symbolic link")
    assert not any(target.iterdir())


def test_symlink_loops_are_named(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    refused(cli("evaluate", loop, cwd=tmp_path), "loop.yaml", "loop")
    refused(cli("arch", "eyeriss_like", "--out", loop, cwd=tmp_path), "loop.yaml", "loop")
    refused(cli("map", loop, cwd=tmp_path), "loop.yaml", "loop")


# --- a mapping that overflows the PE array: a result (exit 1), never a utilisation above 100 % --------
def test_overflowing_mapping_prints_no_utilisation_above_100(tmp_path, base):
    doc = copy.deepcopy(base)
    doc["mapping"][3]["factors"] = "R=3,P=1,K=1"
    doc["mapping"].insert(4, {"target": "RegisterFile", "type": "spatial", "factors": "R=1,P=1,K=2",
                              "permutation": "KRP"})
    f = dump(tmp_path / "overflow.yaml", doc)
    p = cli("evaluate", f, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    util = next(line for line in p.stdout.splitlines() if "Utilization" in line)
    assert "fan-out" in p.stdout and "%" not in util
    j = cli("evaluate", f, "--json", cwd=tmp_path)
    assert j.returncode == 1 and json.loads(j.stdout)["utilization"] is None


# --- export: an --out that is a link, a parent that is a file (the export function itself) ------------
def test_export_refuses_links_and_reports_write_errors(tmp_path):
    from coopt.errors import CooptError
    from coopt.export import export_trials
    from coopt.mapper.options import MapperOptions
    from coopt.study.records import write_record
    from coopt.study.trial import evaluate_design
    from coopt.workload.networks import Network, resnet18

    study = tmp_path / "study"
    net = Network("head", resnet18().layers[:1])
    write_record(study, evaluate_design(0, {}, "eyeriss_like", {}, None, net, MapperOptions(budget=100), {},
                                        [("energy_uj", "minimize"), ("throughput_ips", "maximize")]))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    with pytest.raises(CooptError, match="symbolic link") as info:
        export_trials(study, [0], link)
    assert info.value.file == str(link) and not any(elsewhere.iterdir())
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(CooptError, match="plain"):
        export_trials(study, [0], plain / "sub")
    assert export_trials(study, [0], link, force=True) == [elsewhere.resolve() / "trial-0"]
