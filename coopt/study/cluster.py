"""Ray for a study: a private local cluster, or an existing one; actors that only evaluate.

Why the actors only evaluate: a worker on another machine sees nothing of the
driver's disk, so everything a trial needs (design parameters, template name,
workload, mapper options, budgets) travels with the task and the result comes
back as data; the driver alone asks, tells, writes records and logs.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from coopt.errors import CooptError


class RayError(CooptError):
    """Ray cannot be started or joined."""


def evaluate_task(task: dict):
    """Default evaluation: map the network on the design (coopt.study.trial.evaluate_design); with a
    screening budget, map it cheaply first and in full only if it could enter the task's front."""
    from dataclasses import replace

    from coopt.energy.select import set_method
    from coopt.study.screening import could_enter_front
    from coopt.study.trial import evaluate_design

    set_method(task.get("energy"))

    def at(budget: int):
        rec = evaluate_design(task["number"], task["params"], task["template"], task["template_params"],
                              task["dataflow"], task["network"], replace(task["mapper"], budget=budget),
                              task["budgets"], task["objectives"], sparsity=task.get("sparsity"))
        rec.mapper_budget = budget
        return rec

    screen = task.get("screen")
    if screen:
        cheap = at(screen["budget"])
        directions = [d for _, d in task["objectives"]]
        if not could_enter_front(cheap.objectives, cheap.violations, screen["front"], directions, screen["slack"]):
            cheap.screened = True
            return cheap
        full = at(task["mapper"].budget)
        full.seconds += cheap.seconds
        return full
    return at(task["mapper"].budget)


class Evaluator:
    """A Ray actor: evaluates one design per call with ``fn`` and returns the record as JSON plus where
    and when it ran (host, pid, Ray node)."""

    def __init__(self, fn=None):
        self.fn = fn or evaluate_task
        try:
            import ray
            self.node = ray.get_runtime_context().get_node_id() or ""
        except Exception:
            self.node = ""
        self.where = f"{socket.gethostname()}:{os.getpid()}"

    def evaluate(self, task: dict) -> dict:
        started = time.time()
        rec = self.fn(task)
        rec.worker = f"{self.where}:{self.node[:12]}"
        rec.started_at, rec.finished_at = started, time.time()
        return rec.to_json()

    def pid(self) -> int:
        return os.getpid()


def token_source() -> str | None:
    """Where Ray will take its auth token from, in its order: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH,
    ~/.ray/auth_token (None: no token anywhere)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named or Path.home() / ".ray" / "auth_token")
    try:
        if path.is_file() and path.stat().st_size > 0:
            return f"RAY_AUTH_TOKEN_PATH ({path})" if named else f"{path} (left by an earlier `ray start`?)"
    except OSError:
        pass
    return None


def token_available() -> bool:
    return token_source() is not None


def check_ray_address(address: str) -> None:
    """``--ray-address`` before anything starts, in seconds: HOST:PORT with a port in range, a head that
    accepts a connection, and a token to show it (Ray 2.60 clusters require one)."""
    if address == "auto":
        return
    addr = address.removeprefix("ray://")
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        raise RayError(f"--ray-address {address!r} is not HOST:PORT", key="--ray-address",
                       expected="the head's HOST:PORT (port 1-65535) as printed by `ray start --head`, or auto")
    if not _reachable(addr, timeout=3.0):
        raise RayError(f"no Ray cluster answers at {address}", key="--ray-address",
                       expected="the head's HOST:PORT as printed by `ray start --head`")
    if os.environ.get("RAY_AUTH_MODE", "token") == "token" and not token_available():
        raise RayError("the Ray cluster needs its auth token and none is set", key="--ray-address",
                       expected="RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token as on the head "
                                "(`ray get-auth-token` there prints it)")
    token = _token()
    if token is not None and _token_refused(addr, token):
        raise RayError(f"the Ray cluster at {address} refused this client's auth token (from {token_source()})",
                       key="--ray-address", expected="the head's token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
                                                     "or ~/.ray/auth_token (`ray get-auth-token` on the head)")


def _token() -> str | None:
    """The token Ray would send (its sources in its order), None when there is none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _token_refused(addr: str, token: str) -> bool:
    """Ask the head's GCS one cheap question with the token (gRPC, 5 s): True only when it answers
    UNAUTHENTICATED (ray.init would retry for about 30 s before saying so)."""
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:
        return False
    with grpc.insecure_channel(addr) as channel:
        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=5)
        except grpc.RpcError as e:
            return e.code() == grpc.StatusCode.UNAUTHENTICATED
    return False


def _reachable(address: str, timeout: float = 5.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


# Run beside a private local cluster: when the driver dies (even by SIGKILL) it stops every process
# that still holds the cluster's temporary folder (Ray's agents outlive the raylet) and deletes it.
START_ATTEMPTS = 2
# what ray.init raises when its GCS server or raylet does not come up in time (Ray 2.60)
START_TIMEOUTS = ("Timed out waiting for file", "timed out during startup")

REAPER = r"""
import os, shutil, signal, sys, time
pid, tmp = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGINT, signal.SIG_IGN)
while pid > 0:                      # pid 0: the driver is already gone
    if not os.path.isdir(tmp):
        sys.exit(0)                     # the driver ended normally and cleaned up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
def holders():
    out = set()
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) in (os.getpid(), os.getppid()):     # itself, and who asked
            continue
        try:
            if tmp in open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace"):
                out.add(int(p)); continue
            for fd in os.listdir(f"/proc/{p}/fd"):
                if os.readlink(f"/proc/{p}/fd/{fd}").startswith(tmp):
                    out.add(int(p)); break
        except OSError:
            pass
    return out
for sig in (signal.SIGTERM, signal.SIGKILL):
    for p in holders():
        try:
            os.kill(p, sig)
        except OSError:
            pass
    time.sleep(2)
if sys.argv[3:] != ["keep"]:
    shutil.rmtree(tmp, ignore_errors=True)
"""


def reap_after(pid: int, tmp: str) -> None:
    """Start the reaper for ``tmp`` (its own session: a Ctrl-C to the driver's group leaves it)."""
    import subprocess

    subprocess.Popen([sys.executable, "-c", REAPER, str(pid), tmp], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop_cluster(temp_dir: str) -> int:
    """Stop every Ray process of the cluster whose ``--temp-dir`` is ``temp_dir`` (its GCS server, raylet,
    workers and agents: every process holding that folder), and no other Ray process on the host, as
    ``ray stop`` would; the folder (its logs) is kept.  Returns how many processes were running."""
    import subprocess

    tmp = Path(temp_dir).expanduser().resolve()
    if not (tmp / "session_latest").exists() or tmp in (Path("/"), Path.home()):
        raise RayError(f"{temp_dir} is not a Ray temporary folder (no session_latest in it)", key="TEMP_DIR",
                       expected="the --temp-dir given to `ray start` (coopt's own clusters stop by themselves)")
    before = _holders(str(tmp))
    subprocess.run([sys.executable, "-c", REAPER, "0", str(tmp), "keep"], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
    left = _holders(str(tmp))
    if left:
        raise RayError(f"processes {sorted(left)} of the cluster in {temp_dir} did not stop", key="TEMP_DIR",
                       expected="processes you may signal (the cluster's owner runs this)")
    return len(before)


def _holders(tmp: str) -> set[int]:
    """Processes with ``tmp`` on their command line (Ray passes its session folder to each)."""
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                if tmp in (p / "cmdline").read_bytes().decode(errors="replace"):
                    out.add(int(p.name))
            except OSError:
                pass
    return out


class _stderr_captured:
    """Redirect file descriptor 2 into a temporary file (C++ log lines included) and give its text."""

    def __enter__(self):
        self.file = tempfile.TemporaryFile()
        sys.stderr.flush()
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self.text

    def text(self) -> str:
        self.file.seek(0)
        return self.file.read().decode(errors="replace")

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        return False


# Ray's switch for single-machine clusters (meant for macOS/Windows; read when ray is imported).  At 0,
# Ray's node address is 127.0.0.1 and gcs_server, raylet, the workers and the agents all listen there;
# without it ray.init turns _node_ip_address="127.0.0.1" into the machine's outside address
# (services.resolve_ip_for_localhost) and they listen on every interface.
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_only(on: bool):
    """``LOOPBACK_ONLY_ENV=0`` while Ray is imported and the local cluster starts (its processes inherit
    it), then as before: a ``ray start`` this process runs later must not inherit it (a worker node
    refuses to start under it)."""
    before = os.environ.get(LOOPBACK_ONLY_ENV)
    if on:
        os.environ[LOOPBACK_ONLY_ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LOOPBACK_ONLY_ENV, None)
        else:
            os.environ[LOOPBACK_ONLY_ENV] = before


class RayCluster:
    """``with RayCluster(address, workers, study_dir) as ray_cluster``: start or join Ray, cap the workers
    at the cluster's CPUs, and on exit shut down and delete the local cluster's temporary folder."""

    def __init__(self, address: str | None, workers: int, study_dir: Path, warn=None):
        self.address, self.workers, self.study_dir = address, workers, Path(study_dir)
        self.warn = warn or (lambda msg: print(msg, file=sys.stderr))
        self.tmp: str | None = None
        self.started = False

    def __enter__(self) -> RayCluster:
        if self.address:                  # read by Ray when it is imported: set before
            os.environ.setdefault("RAY_AUTH_MODE", "token")        # Ray 2.60 clusters require the token
            os.environ.setdefault("RAY_py_gcs_connect_timeout_s", "8")
        with _loopback_only(not self.address):
            import ray

            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            if ray.is_initialized():
                return self._cap()
            if self.address:
                self._join()
            else:
                self._start_local()
        self.started = True
        return self._cap()

    def _join(self) -> None:
        import ray

        addr = self.address.removeprefix("ray://") if self.address != "auto" else self.address
        if addr != "auto" and not _reachable(addr):
            raise RayError(f"no Ray cluster answers at {self.address}", key="--ray-address",
                           expected="the head's HOST:PORT as printed by `ray start --head`")
        if os.environ.get("RAY_AUTH_MODE") == "token" and not token_available():
            raise RayError("the Ray cluster needs its auth token and none is set", key="--ray-address",
                           expected="RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token as on the head "
                                    "(`ray get-auth-token` there prints it)")
        with _stderr_captured() as captured:       # Ray's C++ core retries loudly on stderr
            try:
                ray.init(address=addr, log_to_driver=False, configure_logging=False)
                return
            except Exception as e:
                error = " ".join(str(e).split())[:200] or type(e).__name__
        if "InvalidAuthToken" in captured() or "Unauthenticated" in captured():
            raise RayError(f"the Ray cluster at {self.address} refused this client's auth token (from {token_source()})",
                           key="--ray-address", expected="the head's token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
                                                         "or ~/.ray/auth_token (`ray get-auth-token` on the head)")
        raise RayError(f"cannot join the Ray cluster at {self.address}: {error}", key="--ray-address",
                       expected="a running cluster (ray start --head) and its token")

    def _start_local(self) -> None:
        link = self.study_dir / "ray"
        if link.is_symlink():                          # a killed run's folder: we hold the study lock
            old = os.readlink(link)
            if Path(old).name.startswith("coopt-ray-") and Path(old).is_dir():
                reap_after(0, old)                     # stop what is left of it, delete it
            link.unlink()
        cpus = max(1, min(self.workers, os.cpu_count() or 1))     # a private cluster needs no more
        if self.workers > cpus:
            self.warn(f"coopt search: --workers {self.workers} capped at {cpus}: this machine has {cpus} CPUs")
            self.workers = cpus
        # Ray waits 30 s for its GCS server's port file; a busy machine (CI, a laptop compiling) can take
        # longer, and the study would die before its first trial. RAY_gcs_server_port_wait_time_s overrides.
        # Its raylet's 30 s to register has no setting: a start that times out is tried once more.
        wait_s = os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
        for attempt in range(START_ATTEMPTS):
            if self._init_local(cpus):
                return
            if attempt + 1 < START_ATTEMPTS:
                self.warn("coopt search: the local Ray cluster did not start in time (a busy machine?); "
                          "trying once more")
        raise RayError(f"the local Ray cluster did not start within {wait_s} s", key="--workers",
                       expected="a less loaded machine, or a longer wait in RAY_gcs_server_port_wait_time_s")

    def _init_local(self, cpus: int) -> bool:
        """Start the private cluster in a fresh temporary folder; False (and nothing left) when it timed out."""
        import ray

        self.tmp = tempfile.mkdtemp(prefix="coopt-ray-")   # short: Ray's socket paths must stay < 108 chars
        link = self.study_dir / "ray"
        link.symlink_to(self.tmp)
        reap_after(os.getpid(), self.tmp)
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=self.tmp,
                     log_to_driver=False, configure_logging=False)
            return True
        except Exception as e:
            if not any(text in str(e) for text in START_TIMEOUTS):
                raise
        reap_after(0, self.tmp)                         # the half-started gcs_server and raylet, the folder
        link.unlink(missing_ok=True)
        self.tmp = None
        return False

    def _cap(self) -> RayCluster:
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus and self.workers > cpus:
            self.warn(f"coopt search: --workers {self.workers} capped at {cpus}: the Ray cluster has {cpus} CPUs")
            self.workers = cpus
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            import ray
            ray.shutdown()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            link = self.study_dir / "ray"
            if link.is_symlink():
                link.unlink()

    def actor(self, fn=None):
        """A new evaluating actor (one CPU)."""
        import ray

        if getattr(self, "_cls", None) is None:
            self._cls = ray.remote(num_cpus=1, max_restarts=0)(Evaluator)
        return self._cls.remote(fn)
