"""The built wheel works on its own: templates and search spaces ship inside it.

A wheel is built from a copy of the project's packaging inputs, installed
into a fresh virtual environment (the running environment's site-packages
lend it the dependencies, so nothing is downloaded for them), and the
installed ``coopt`` runs ``network`` and a 2-trial ``search --space tiny``
from an empty directory with no checkout on the path.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from coopt.shipped import FOLDERS, shipped_dir, shipped_names
from coopt.study.space import space_path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("coopt", "arch_base", "search_spaces", "setup.py", "pyproject.toml", "README.md")


def test_shipped_names_are_the_top_level_files_in_a_checkout():
    for folder in FOLDERS:
        assert shipped_dir(folder) == ROOT / folder
        assert shipped_names(folder) == sorted(p.stem for p in (ROOT / folder).glob("*.yaml"))
    assert space_path("tiny") == ROOT / "search_spaces" / "tiny.yaml"
    assert space_path("my/own.yaml") == Path("my/own.yaml")


def _clean_env(venv: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, wheel): a wheel of this checkout installed with --no-deps into a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
                   check=True, timeout=300, cwd=tmp)
    wheel = next(dist.glob("coopt-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    venv_site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies: the running environment's site-packages, appended after the venv's own
    Path(venv_site, "coopt_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([py, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, timeout=300,
                   env=_clean_env(venv))
    return venv, wheel


@pytest.mark.slow
def test_wheel_carries_templates_and_spaces(installed):
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in FOLDERS:
        for p in (ROOT / folder).glob("*.yaml"):
            assert f"coopt/_shipped/{folder}/{p.name}" in names
    for p in (ROOT / "arch_base").rglob("*"):               # v4 specs in subfolders (simba_v4/)
        if p.is_file() and p.suffix in (".yaml", ".jinja2") and p.parent != ROOT / "arch_base":
            assert f"coopt/_shipped/arch_base/{p.relative_to(ROOT / 'arch_base').as_posix()}" in names
    assert "coopt/energy/data/compound_components.yaml" in names


@pytest.mark.slow
@pytest.mark.ray
def test_installed_wheel_runs_network_and_search_from_an_empty_directory(installed, tmp_path):
    venv, _ = installed
    env = _clean_env(venv)
    work = tmp_path / "empty"
    work.mkdir()
    where = subprocess.run([venv / "bin" / "python", "-c", "import coopt; print(coopt.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where          # the wheel's coopt, not the checkout's

    coopt = str(venv / "bin" / "coopt")
    net = subprocess.run([coopt, "network", "--network", "resnet18", "--budget", "300", "--workers", "1",
                          "--json"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert net.returncode == 0, net.stderr[-2000:]
    result = json.loads(net.stdout)
    assert result["energy_uj"] > 0 and result["area_mm2"] > 0
    assert sum(layer["count"] for layer in result["layers"]) == 21   # ResNet-18: 20 convs + the FC layer

    se = subprocess.run([coopt, "search", "--space", "tiny", "--trials", "2", "--workers", "1",
                         "--sampler", "random", "--json"], cwd=work, env=env, capture_output=True, text=True,
                        timeout=540)
    assert se.returncode == 0, se.stderr[-2000:]
    summary = json.loads(se.stdout)
    assert summary["trials"] == 2
    assert (work / "mlruns" / "studies" / "tiny" / "study.json").is_file()


@pytest.mark.slow
def test_installed_wheel_reads_the_shipped_v4_space(installed, tmp_path):
    """search_spaces/simba_v4.yaml names its spec by a path relative to itself: it holds in the wheel too."""
    venv, _ = installed
    code = ("from coopt.study.space import load_space; t = load_space('simba_v4').template; "
            "print(sorted(t.files), t.path)")
    out = subprocess.run([venv / "bin" / "python", "-c", code], cwd=tmp_path, env=_clean_env(venv),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'arch.yaml', 'components/classes.yaml', 'problem.yaml', 'top.yaml.jinja2'" in out.stdout
    assert "_shipped" in out.stdout
