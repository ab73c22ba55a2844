"""A real two-node Ray cluster on this machine (``ray start --head`` + ``ray start --address``).

The worker node has its own temporary folder and runs in a different working
directory; coopt reaches it as an installed package would (PYTHONPATH).  The
driver runs as its own process with the cluster's token.  Processes are
stopped by pid (only those of this cluster: never ``ray stop``, other test
runs may have Ray clusters of their own).
"""
from __future__ import annotations

import json
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

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "search_spaces" / "tiny.yaml")
RAY = str(Path(sys.executable).with_name("ray"))

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_under(base: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if base in (p / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def _stop(base: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_under(base):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


@pytest.fixture(scope="module")
def cluster():
    base = tempfile.mkdtemp(prefix="cc-")             # short: Ray's socket paths must stay < 108 chars
    token = secrets.token_hex(32)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    for d in ("head", "work", "driver"):
        os.makedirs(f"{base}/{d}")
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats",
              "--dashboard-agent-listen-port", str(free_port())]
    try:
        subprocess.run([RAY, "start", "--head", "--port", str(port), "--temp-dir", f"{base}/th",
                        "--include-dashboard", "false", "--dashboard-port", str(free_port()),
                        "--ray-client-server-port", str(free_port()), *common],
                       cwd=f"{base}/head", env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", "--temp-dir", f"{base}/tw", *common],
                       cwd=f"{base}/work", env=env, check=True, capture_output=True, timeout=120)
        yield {"address": f"127.0.0.1:{port}", "env": env, "base": base}
    finally:
        _stop(base)
        shutil.rmtree(base, ignore_errors=True)


DRIVER = """
import json, os, sys
from coopt.study.runner import StudyConfig, run_study

LOG = sys.argv[2]

def located(task):
    import os, ray
    from coopt.study.cluster import evaluate_task
    with open(LOG, "a") as f:
        f.write(json.dumps({"number": task["number"], "node": ray.get_runtime_context().get_node_id(),
                            "cwd": os.getcwd(), "task_keys": sorted(task)}) + "\\n")
    return evaluate_task(task)

out = run_study(StudyConfig(space_path=sys.argv[3], study="two", trials=6, workers=2, sampler="random", seed=2,
                            ray_address=sys.argv[1]), evaluate=located)
print(json.dumps(out))
"""


def test_trials_run_on_both_nodes_without_the_driver_folder(cluster, tmp_path):
    driver = Path(cluster["base"]) / "driver"
    log = tmp_path / "where.jsonl"
    p = subprocess.run([sys.executable, "-c", DRIVER, cluster["address"], str(log), TINY], cwd=driver,
                       env=cluster["env"], capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 6
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len({r["node"] for r in rows}) == 2                      # both nodes evaluated designs
    assert all(not r["cwd"].startswith(str(driver)) for r in rows)  # no worker ran in the driver's folder
    assert all(r["task_keys"] == ["budgets", "dataflow", "energy", "mapper", "network", "number", "objectives",
                                  "params", "screen", "sparsity", "template", "template_params"] for r in rows)   # no paths travel
    import optuna
    from optuna.trial import TrialState

    from coopt.study.records import record_from_attrs
    from coopt.study.storage import open_storage
    study = optuna.load_study(study_name="two", storage=open_storage(None, driver / "mlruns" / "studies" / "two",
                                                                        create=False))
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == 6 and not [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    recs = [record_from_attrs(t.user_attrs) for t in done]
    assert len({r.worker.rsplit(":", 1)[1] for r in recs}) == 2     # the records say where they ran
    assert all(r.finished_at >= r.started_at for r in recs)


def _cli(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "coopt.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_missing_or_wrong_token_is_one_line(cluster, tmp_path):
    base = ["search", "--space", TINY, "--trials", "1", "--study", "t", "--ray-address", cluster["address"]]
    env = {k: v for k, v in cluster["env"].items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    env["HOME"] = str(tmp_path)                                     # no ~/.ray/auth_token either
    p = _cli(base, env, tmp_path)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "auth token" in p.stderr, p.stderr
    p = _cli([*base, "--study", "t2"], {**env, "RAY_AUTH_TOKEN": "0" * 64}, tmp_path)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0, p.stderr
    assert "refused this client's auth token" in p.stderr
    p = _cli(["search", "--space", TINY, "--trials", "1", "--study", "t", "--ray-address", f"127.0.0.1:{free_port()}"],
             cluster["env"], tmp_path)
    assert p.returncode == 2 and "no Ray cluster answers" in p.stderr


def test_workers_above_the_cluster_cpus_are_capped(cluster, tmp_path):
    p = _cli(["search", "--space", TINY, "--trials", "2", "--workers", "5", "--study", "cap", "--sampler", "random",
              "--ray-address", cluster["address"], "--json"], cluster["env"], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "--workers 5 capped at 2: the Ray cluster has 2 CPUs" in p.stderr


LISTENERS = """
import ipaddress, json, os, sys
from pathlib import Path
from coopt.study.cluster import RayCluster


def listening():
    # inode -> (ip, port) of every listening TCP socket, from /proc/net/tcp and tcp6 (state 0A)
    out = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":
                continue
            hexip, hexport = f[1].split(":")
            raw = bytes.fromhex(hexip)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))    # little-endian words
            ip = ipaddress.ip_address(raw)
            out[f[9]] = (str(getattr(ip, "ipv4_mapped", None) or ip), int(hexport, 16))
    return out


def tree(root):
    kids = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (d / "cmdline").read_bytes().replace(b"\\0", b" ").decode(errors="replace")
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(d.name))
            if tmp in cmd:                             # Ray's daemons, wherever they were reparented
                kids.setdefault(root, []).append(int(d.name))
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += kids.get(pid, [])
    return seen


with RayCluster(None, 1, Path(sys.argv[1])) as cluster:
    tmp = cluster.tmp
    actor = cluster.actor()
    import ray
    ray.get(actor.__ray_ready__.remote())
    sockets, found = listening(), []
    for pid in tree(os.getpid()):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in sockets:
                    found.append([name, *sockets[link[8:-1]]])
        except OSError:
            continue
    print(json.dumps(found))
"""


def test_the_local_cluster_listens_on_loopback_only(tmp_path):
    """Every listening socket of the private cluster's processes (gcs_server, raylet, workers, agents)
    is on 127.0.0.1, including IPv4-mapped ::ffff:127.0.0.1; none on 0.0.0.0, ::, or the machine's address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    out = subprocess.run([sys.executable, "-c", LISTENERS, str(tmp_path)], capture_output=True, text=True,
                         env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    names = {name for name, _, _ in found}
    assert {"gcs_server", "raylet"} <= names, found
    assert len(found) >= 5
    outside = [f for f in found if f[1] not in ("127.0.0.1", "::ffff:127.0.0.1")]
    assert not outside, outside


def test_a_local_cluster_that_does_not_start_in_time_is_one_line_and_leaves_nothing(tmp_path):
    """Ray gives its GCS server RAY_gcs_server_port_wait_time_s to come up (coopt's default 120 s, for
    loaded machines); at 0 it cannot: one line saying it tries once more, then one line naming the wait,
    exit 2, the half-started gcs_servers stopped and the temporary folders deleted."""
    short_tmp = Path(tempfile.mkdtemp(prefix="ct", dir="/tmp"))        # Ray's socket paths stay short
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(PYTHONPATH=str(ROOT), TMPDIR=str(short_tmp), RAY_gcs_server_port_wait_time_s="0")
        p = _cli(["search", "--space", TINY, "--trials", "1", "--workers", "1", "--study", "slow"], env, tmp_path)
        assert p.returncode == 2, p.stderr[-2000:]
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 2 and "trying once more" in lines[0] and "did not start within 0 s" in lines[1], lines
        assert "Traceback" not in p.stderr
        deadline = time.time() + 30
        while time.time() < deadline and (any(short_tmp.iterdir()) or _processes_naming(str(short_tmp))):
            time.sleep(0.5)
        assert not list(short_tmp.iterdir()) and not _processes_naming(str(short_tmp))
        assert not (tmp_path / "mlruns" / "studies" / "slow" / "ray").is_symlink()
    finally:
        shutil.rmtree(short_tmp, ignore_errors=True)


def test_a_local_cluster_start_that_times_out_once_is_tried_again(tmp_path, monkeypatch, capsys):
    """Ray's raylet has 30 s to register, with no setting; a start that times out (injected here, as Ray
    raises it) is tried once more in a fresh folder, the failed one's folder removed, and the study runs."""
    import ray
    from coopt.cli import main
    monkeypatch.chdir(tmp_path)
    real, tried = ray.init, []

    def init_timing_out_once(**kw):
        tried.append(kw["_temp_dir"])
        if len(tried) == 1:
            raise Exception("The current node timed out during startup. This could happen because ...")
        return real(**kw)
    monkeypatch.setattr(ray, "init", init_timing_out_once)
    assert main(["search", "--space", TINY, "--trials", "1", "--workers", "1", "--sampler", "random",
                 "--study", "again"]) == 0
    err = capsys.readouterr().err
    assert "did not start in time (a busy machine?); trying once more" in err
    assert len(tried) == 2 and tried[0] != tried[1]
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(t).exists() for t in tried):
        time.sleep(0.5)
    assert not any(Path(t).exists() for t in tried)


def _processes_naming(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(int(pid))
        except OSError:
            pass
    return found
