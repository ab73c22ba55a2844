"""``coopt stop-ray TEMP_DIR`` stops one Ray cluster of this host and leaves another running
(``ray stop`` would stop both, other users' included).  Two real single-node clusters."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from test_cluster import RAY, _pids_under, _stop, free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _head(base: str, name: str) -> int:
    port = free_port()
    os.makedirs(f"{base}/{name}")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "a" * 64, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--temp-dir", f"{base}/{name}-tmp",
                    "--include-dashboard", "false", "--dashboard-port", str(free_port()),
                    "--ray-client-server-port", str(free_port()), "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                    "--disable-usage-stats", "--dashboard-agent-listen-port", str(free_port())],
                   cwd=f"{base}/{name}", env=env, check=True, capture_output=True, timeout=120)
    return port


def test_stop_ray_stops_one_cluster_and_leaves_the_other(tmp_path):
    from coopt.study.cluster import _reachable
    base = tempfile.mkdtemp(prefix="sr-")              # short: Ray's socket paths must stay < 108 chars
    try:
        mine, other = _head(base, "a"), _head(base, "b")
        assert _pids_under(f"{base}/a-tmp") and _pids_under(f"{base}/b-tmp")
        p = subprocess.run([sys.executable, "-m", "coopt.cli", "stop-ray", f"{base}/a-tmp"], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
        assert p.returncode == 0 and p.stdout.startswith("stopped "), p.stderr
        assert not _pids_under(f"{base}/a-tmp") and not _reachable(f"127.0.0.1:{mine}", timeout=2)
        assert _pids_under(f"{base}/b-tmp") and _reachable(f"127.0.0.1:{other}", timeout=2)
        assert (Path(base) / "a-tmp" / "session_latest").exists()                    # its logs are kept
        p = subprocess.run([sys.executable, "-m", "coopt.cli", "stop-ray", str(tmp_path)], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
        assert p.returncode == 2 and "not a Ray temporary folder" in p.stderr       # never a random folder
    finally:
        _stop(base)
        shutil.rmtree(base, ignore_errors=True)
