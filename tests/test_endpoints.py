"""Every outside endpoint of ``coopt search`` is checked before the study starts: one line, exit 2,
within 10 s (the real command, timed from outside, Python's start-up included), nothing left on disk.

Unreachable endpoints are real closed ports on 127.0.0.1; nothing is mocked.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port
from test_cluster import cluster  # noqa: F401  (a real two-node token cluster, module-scoped)

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 10.0


def _search(tmp_path, *extra, env=None):
    """Run ``coopt search --space tiny --study e ...`` in tmp_path: (exit code, stderr lines, seconds)."""
    started = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "coopt.cli", "search", "--space", "tiny", "--study", "e",
                        "--trials", "2", "--workers", "1", *extra], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120)
    return p.returncode, p.stderr.strip().splitlines(), time.monotonic() - started


CASES = {
    "tracking server down": (lambda: ["--tracking-uri", f"http://127.0.0.1:{free_port()}"],
                             "no MLflow tracking server answers"),
    "tracking URI malformed": (lambda: ["--tracking-uri", "nota://uri::"], "is not one MLflow can use"),
    "tracking database down": (lambda: ["--tracking-uri", f"postgresql+psycopg://u@127.0.0.1:{free_port()}/x"],
                               "cannot be used"),
    "PostgreSQL storage down": (lambda: ["--storage", f"postgresql://postgres@127.0.0.1:{free_port()}/x"],
                                "cannot open storage"),
    "MySQL storage down": (lambda: ["--storage", f"mysql://root@127.0.0.1:{free_port()}/x"], "cannot open storage"),
    "gRPC storage down": (lambda: ["--storage", f"grpc://127.0.0.1:{free_port()}"], "no Optuna gRPC storage proxy"),
    "Ray head down": (lambda: ["--ray-address", f"127.0.0.1:{free_port()}"], "no Ray cluster answers"),
    "Ray port out of range": (lambda: ["--ray-address", "127.0.0.1:99999"], "is not HOST:PORT"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_unreachable_endpoint_is_one_line_in_seconds_and_leaves_nothing(case, tmp_path):
    args, words = CASES[case]
    code, err, seconds = _search(tmp_path, *args())
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert seconds <= LIMIT_S, f"{case}: {seconds:.1f} s"
    assert not (tmp_path / "mlruns").exists()                 # a refused run leaves nothing on disk


def test_a_ray_cluster_without_a_token_is_refused_before_start(tmp_path):
    """A listening head, but no token anywhere (a HOME without ~/.ray/auth_token): one line, at once."""
    import socket
    with socket.socket() as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        port = head.getsockname()[1]
        env = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": ""}
        code, err, seconds = _search(tmp_path, "--ray-address", f"127.0.0.1:{port}", env=env)
    assert code == 2 and len(err) == 1 and "needs its auth token" in err[0], err
    assert seconds <= LIMIT_S and not (tmp_path / "mlruns").exists()


def test_a_stale_token_file_is_named_as_the_token_source(tmp_path, monkeypatch):
    """A leftover ~/.ray/auth_token is what Ray will send: a refusal then names that file."""
    from coopt.study.cluster import token_source
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert token_source() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("stale-token-from-an-old-cluster")
    assert str(tmp_path / ".ray" / "auth_token") in token_source()
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t")
    assert token_source() == "RAY_AUTH_TOKEN"


@pytest.mark.ray
@pytest.mark.slow
def test_a_wrong_or_stale_token_is_refused_in_seconds(cluster, tmp_path):  # noqa: F811
    """A real two-node token cluster (tests/test_cluster.py's): a wrong RAY_AUTH_TOKEN, and a stale
    ~/.ray/auth_token left by an old cluster, are each one line within 10 s (ray.init alone takes ~30 s
    to give up), the stale file named as the token's source."""
    env = {k: v for k, v in cluster["env"].items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    code, err, seconds = _search(tmp_path, "--ray-address", cluster["address"], env={**env, "RAY_AUTH_TOKEN": "0" * 64})
    assert code == 2 and len(err) == 1 and "refused this client's auth token (from RAY_AUTH_TOKEN)" in err[0], err
    assert seconds <= LIMIT_S, seconds
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("f" * 64)
    code, err, seconds = _search(tmp_path, "--ray-address", cluster["address"], env={**env, "HOME": str(home),
                                                                                    "RAY_AUTH_TOKEN": ""})
    assert code == 2 and len(err) == 1 and str(home / ".ray" / "auth_token") in err[0], err
    assert seconds <= LIMIT_S, seconds
    assert not (tmp_path / "mlruns").exists()
