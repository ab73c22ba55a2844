"""Study throughput on search_spaces/edge.yaml: trials per minute with 1 and 2 local Ray workers, and on a
two-node Ray cluster started here with ``ray start`` (one CPU per node, the worker node in its own folder).

Each trial maps all of ResNet-50 on one design (the space's mapper budget).  A fresh study per setting
(random sampler, same seed) in a temporary folder; prints trials/minute over the whole run (Ray start,
MLflow, everything) and in steady state (first to last finished trial), and the parallel efficiency
(throughput with N workers / (N x throughput with 1 worker), measured in the same run).

    python benchmarks/study_throughput.py [--trials 8] [--no-cluster]
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "edge.yaml"
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(label: str, workers: int, trials: int, root: str, address: str | None = None) -> tuple[float, float]:
    from coopt.study.runner import StudyConfig, run_study

    stamps = []
    cfg = StudyConfig(space_path=str(SPACE), study=f"throughput-{label}", trials=trials, workers=workers,
                      sampler="random", seed=0, root=root, tracking_uri=f"sqlite:///{root}/mlflow.db",
                      ray_address=address)
    t0 = time.perf_counter()
    run_study(cfg, on_progress=lambda p: stamps.append((p.done, time.perf_counter())))
    total = time.perf_counter() - t0
    done = [t for n, t in stamps if n > 0]
    steady = (len(done) - 1) / (done[-1] - done[0]) * 60 if len(done) > 1 else float("nan")
    return trials / total * 60, steady


def two_node_cluster(base: str) -> tuple[str, dict]:
    """``ray start --head`` + ``ray start --address`` (own temp dirs, the worker node in its own folder)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    for d in ("head", "work"):
        os.makedirs(f"{base}/{d}")
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats",
              "--dashboard-agent-listen-port", str(free_port())]
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--temp-dir", f"{base}/th", "--include-dashboard",
                    "false", "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port()),
                    *common], cwd=f"{base}/head", env=env, check=True, capture_output=True, timeout=120)
    subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", "--temp-dir", f"{base}/tw", *common],
                   cwd=f"{base}/work", env=env, check=True, capture_output=True, timeout=120)
    return f"127.0.0.1:{port}", env


def stop_cluster(base: str) -> None:
    """Stop this cluster's processes by pid (never `ray stop`: other clusters may run here)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in Path("/proc").iterdir():
            try:
                if p.name.isdigit() and base in (p / "cmdline").read_bytes().decode(errors="replace"):
                    os.kill(int(p.name), sig)
            except (OSError, ProcessLookupError):
                pass
        time.sleep(2)
    shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--no-cluster", action="store_true", help="skip the two-node cluster")
    args = ap.parse_args()
    # Ray reads these when imported: one token for the local runs and the cluster alike
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    res = {}
    with tempfile.TemporaryDirectory() as root:
        os.chdir(root)
        for w in (1, 2):
            res[f"local, {w} worker{'s' if w > 1 else ''}"] = (w, *measure(f"local{w}", w, args.trials, root))
        if not args.no_cluster:
            base = tempfile.mkdtemp(prefix="cb-")
            try:
                address, _ = two_node_cluster(base)
                res["two-node cluster, 2 workers"] = (2, *measure("cluster", 2, args.trials, root, address))
            finally:
                stop_cluster(base)
    base1 = res["local, 1 worker"]
    for label, (w, overall, steady) in res.items():
        print(f"{label:30s} {overall:6.1f} trials/min overall ({overall / (w * base1[1]):.2f} efficiency), "
              f"{steady:6.1f} steady ({steady / (w * base1[2]):.2f} efficiency)")


if __name__ == "__main__":
    main()
