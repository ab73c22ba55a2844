"""Hostile inputs to the study service through the real command line (issue 20, item 7's classes:
search-space values, files coopt writes or reads in its own folders, messages naming the right key,
options checked before start-up).  Each refusal: exit 2, one line naming the file/key, no traceback,
within seconds; a damaged file is named and ``coopt doctor`` recovers it without dropping a trial.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "search_spaces" / "tiny.yaml"


def cli(*args, cwd, timeout=120, fsize=None):
    """``python -m coopt.cli ARGS`` in ``cwd``; ``fsize``: a file size limit in bytes (``ulimit -f``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    started = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "coopt.cli", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    p.seconds = time.monotonic() - started
    return p


def refused(p, *words) -> str:
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr and len(lines) == 1, p.stderr[-3000:]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert p.seconds < 20, p.seconds
    return lines[0]


def _space(tmp_path, edit) -> Path:
    doc = yaml.safe_load(TINY.read_text())
    edit(doc)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# -- search-space values ----------------------------------------------------------------------
SPACE_CASES = {
    "NaN budget": (lambda d: d["budgets"].update(area_mm2=float("nan")), "budgets.area_mm2"),
    "inf budget": (lambda d: d["budgets"].update(power_mw=float("inf")), "budgets.power_mw"),
    "NaN reference point": (lambda d: d["reference_point"].update(energy_uj=float("nan")),
                            "reference_point.energy_uj"),
    "log as a string": (lambda d: d["parameters"]["pe_cols"].update(log="false", step=None),
                        "parameters.pe_cols.log"),
    "nested list of layers": (lambda d: d["workload"].update(layers=[["layer2.1.conv1"]]), "workload.layers"),
    "template as a list": (lambda d: d.update(template=["eyeriss_like"]), "template"),
    "network as a list": (lambda d: d["workload"].update(network=["resnet18"]), "workload.network"),
    "nested list as a choice": (lambda d: d["parameters"]["word_bits"].update(choices=[[8, 16]]),
                                "parameters.word_bits.choices"),
    "mapper seed out of range": (lambda d: d["mapper"].update(seed=2**40), "mapper.seed"),
    "mapper seed a string": (lambda d: d["mapper"].update(seed="x"), "mapper.seed"),
    "mapper budget huge": (lambda d: d["mapper"].update(budget=10**12), "mapper.budget"),
    "batch not a number": (lambda d: d["workload"].update(batch="four"), "workload.batch"),
    "batch zero": (lambda d: d["workload"].update(batch=0), "workload.batch"),
    "sampler option NaN": (lambda d: d.update(sampler_options={"tpe-local": {"local_fraction": float("nan")}}),
                           "sampler_options.tpe-local.local_fraction"),
    "sampler option a string": (lambda d: d.update(sampler_options={"tpe-local": {"n_startup_trials": "ten"}}),
                                "sampler_options.tpe-local.n_startup_trials"),
    "sampler option unknown": (lambda d: d.update(sampler_options={"nsga2": {"populaton_size": 20}}),
                               "sampler_options.nsga2"),
}


@pytest.mark.parametrize("case", list(SPACE_CASES))
def test_search_space_values_are_refused_naming_the_key(case, tmp_path):
    edit, key = SPACE_CASES[case]
    path = _space(tmp_path, edit)
    line = refused(cli("search", "--space", path, "--trials", "1", cwd=tmp_path), key)
    assert str(path) in line                                   # and the file
    assert not (tmp_path / "mlruns").exists()


def test_a_huge_grid_is_refused_before_it_is_enumerated(tmp_path):
    """10^12 x 13 designs: the count is computed, not listed (bounded memory, at once)."""
    path = _space(tmp_path, lambda d: d.update(template="eyeriss_like", parameters={
        **d["parameters"], "pe_rows": {"type": "int", "low": 3, "high": 12, "step": 3},
        "glb_depth": {"type": "pow2", "low": 2, "high": 2**40}}))
    p = cli("search", "--space", path, "--trials", "1", "--sampler", "grid", cwd=tmp_path, timeout=60)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.seconds < 20


@pytest.mark.parametrize("argv, words", [
    (["--trials", "1000000000"], "--trials"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**40)], "--seed"),
    (["--ray-address", "127.0.0.1:99999"], "--ray-address"),
    (["--screen-slack", "nan"], "--screen-slack"),
])
def test_options_are_range_checked_before_start_up(argv, words, tmp_path):
    refused(cli("search", "--space", "tiny", *argv, cwd=tmp_path), words)
    assert not (tmp_path / "mlruns").exists()


# -- files coopt writes or reads in its own folders ----------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One real 2-trial study (local Ray, journal storage); each test works on a copy of its folder."""
    base = tmp_path_factory.mktemp("hostile_study")
    p = cli("search", "--space", TINY, "--trials", "2", "--workers", "1", "--sampler", "random", "--study", "s",
            cwd=base, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return base


@pytest.fixture
def copy(study, tmp_path):
    shutil.copytree(study / "mlruns" / "studies", tmp_path / "mlruns" / "studies")
    return tmp_path


def _sdir(root: Path) -> Path:
    return root / "mlruns" / "studies" / "s"


def test_a_damaged_trial_record_is_named_and_rebuilt_by_doctor(copy):
    record = _sdir(copy) / "trials" / "000001.json"
    good = json.loads(record.read_text())
    record.write_text('{"number": 1, "par')                          # cut by a crash or a full disk
    line = refused(cli("export", "--study", "s", "--trial", "1", "--out", "x", cwd=copy), "000001.json")
    assert "coopt doctor s --repair" in line and not (copy / "x" / "trial-1").exists()
    p = cli("doctor", "s", cwd=copy)
    assert p.returncode == 1 and "trial 1: record file" in p.stdout and "damaged" in p.stdout, p.stdout
    p = cli("doctor", "s", "--repair", cwd=copy)
    assert p.returncode == 0 and "repaired: trial 1" in p.stdout, p.stdout + p.stderr
    assert json.loads(record.read_text()) == good                      # the storage's copy, identical
    assert list((_sdir(copy) / "trials").glob("000001.json.damaged-*"))  # the damaged one is kept
    assert cli("export", "--study", "s", "--trial", "1", "--out", "x", cwd=copy).returncode == 0


def test_a_damaged_study_json_is_named_and_rebuilt_from_the_storage(copy):
    meta = _sdir(copy) / "study.json"
    settings = json.loads(meta.read_text())["settings"]
    meta.write_text("{\x00garbage")
    refused(cli("search", "--study", "s", "--trials", "2", cwd=copy), "study.json", "coopt doctor s")
    refused(cli("pareto", "--study", "s", cwd=copy), "study.json")
    p = cli("doctor", "s", "--repair", cwd=copy)
    assert p.returncode == 0 and "study.json rebuilt from the storage" in p.stdout, p.stdout + p.stderr
    assert json.loads(meta.read_text())["settings"] == settings
    assert cli("pareto", "--study", "s", cwd=copy).returncode == 0


def test_a_damaged_journal_is_named_and_doctor_keeps_every_trial_in_view(copy):
    journal = _sdir(copy) / "optuna.journal"
    lines = journal.read_bytes().split(b"\n")
    cut = next(i for i, ln in enumerate(lines) if b'"trial_id": 1' in ln or b'"trial_id":1' in ln)
    lines[cut] = b'{"op_code": 5, "worker_id": "x", "trial_id": 1, "sta'            # a torn write mid-file
    journal.write_bytes(b"\n".join(lines))
    refused(cli("pareto", "--study", "s", cwd=copy), "optuna.journal", "coopt doctor s --repair")
    p = cli("doctor", "s", cwd=copy)
    assert p.returncode == 1 and "is damaged" in p.stdout, p.stdout
    p = cli("doctor", "s", "--repair", cwd=copy)
    assert "repaired: journal" in p.stdout, p.stdout + p.stderr
    # the trial whose operations followed the damage is not silently gone: doctor names its record
    assert "record files of trials [1]" in p.stdout, p.stdout
    assert list(_sdir(copy).glob("optuna.journal.damaged-*"))
    assert cli("pareto", "--study", "s", cwd=copy).returncode == 0


def test_run_lock_or_mlruns_of_the_wrong_type_is_one_line(copy, tmp_path):
    lock = _sdir(copy) / "run.lock"
    lock.unlink()
    lock.mkdir()
    refused(cli("search", "--study", "s", "--trials", "2", cwd=copy), "run.lock", "not a plain file")
    other = tmp_path / "fresh"
    other.mkdir()
    (other / "mlruns").write_text("not a folder")
    refused(cli("search", "--space", "tiny", "--trials", "1", cwd=other), "mlruns is not a")


def test_a_link_inside_the_export_folder_is_not_written_through(copy, tmp_path):
    out = copy / "x"
    assert cli("export", "--study", "s", "--trial", "0", "--out", out, cwd=copy).returncode == 0
    outside = tmp_path / "outside.md"
    outside.write_text("mine")
    (out / "index.md").unlink()
    (out / "index.md").symlink_to(outside)
    refused(cli("export", "--study", "s", "--trial", "1", "--out", out, cwd=copy), "index.md", "symbolic link")
    assert outside.read_text() == "mine"
    assert cli("export", "--study", "s", "--trial", "1", "--out", out, "--force", cwd=copy).returncode == 0
    assert outside.read_text() == "mine" and not (out / "index.md").is_symlink()     # replaced, not followed


# -- a full disk ---------------------------------------------------------------------------------
@pytest.fixture
def full(tmp_path):
    """A folder on a full file system: a 1 MiB tmpfs filled up (root), else None (use ``ulimit -f``)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        yield None
        return
    try:
        try:
            with open(mnt / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:                              # ENOSPC: full
            pass
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or (p.is_file() and
                                                                                   p.stat().st_size == 0))


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(full, tmp_path):
    if full is not None:
        out, limit = full, None
    else:                                            # no tmpfs: a file size limit gives the same refusal
        out, limit = tmp_path / "limited", 200
        out.mkdir()
    refused(cli("arch", "eyeriss_like", "--out", out / "arch.yaml", cwd=tmp_path, fsize=limit), "arch.yaml")
    assert not (out / "arch.yaml").exists()
    refused(cli("energy", ROOT / "tests" / "reference_data" / "model" / "06-eyeriss-like-convlayer-bestmap" /
                "input.yaml", "--out", out / "tables", cwd=tmp_path, fsize=limit),
            "no space left" if limit is None else "too large")
    assert _leftovers(out) == []                     # no .tmp, no 0-byte ERT/ART


def test_a_study_on_a_full_disk_is_one_line_and_leaves_no_study_folder(full):
    if full is None:
        pytest.skip("no tmpfs can be mounted here (needs root); the file-size-limit test above covers writes")
    p = cli("search", "--space", "tiny", "--trials", "2", "--workers", "1", "--study", "f", cwd=full, timeout=300)
    line = refused(p)
    assert "disk is full" in line or "no space left" in line, line
    assert not (full / "mlruns" / "studies" / "f").exists()
    assert _leftovers(full / "mlruns") == [".mlflow-init.lock"] or _leftovers(full / "mlruns") == []
