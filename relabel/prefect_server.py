"""A local Prefect stack: server on 127.0.0.1, work pools, deployments, a worker.

Used by `relabel server` and by the tests, so both start and stop the stack the same way.
Everything runs as child processes of the caller, each in its own process group, and
`stop_process` ends them by their own process id (an idle `prefect worker` ignores one
SIGINT; the second stops it; SIGKILL of the group is the last resort).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
LOCAL_POOL = "relabel-local"
GPU_POOL = "relabel-gpu"
GPU_TEMPLATE = PROJECT_DIR / "infra" / "k8s" / "gpu-base-job-template.json"
PREFECT = str(Path(sys.executable).with_name("prefect"))


class PrefectStackError(RuntimeError):
    """A server, pool, deployment or worker did not come up; the message says which."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stack_env(api_url: str, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """Environment for Prefect child processes talking to `api_url`."""
    env = dict(os.environ if base is None else base)
    env.update({
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "PWD": str(PROJECT_DIR),  # prefect.yaml's pull step: flow runs start in the project
        **extra,
    })
    return env


def log_dir(env: Mapping[str, str]) -> Path:
    """Where `relabel server` writes the server's and the worker's logs: PREFECT_HOME/logs."""
    folder = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect") / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start_server(port: int, env: Mapping[str, str], log_file: Path | None = None,
                 ui: bool = True) -> subprocess.Popen:
    """`prefect server start` on 127.0.0.1:`port` (returns at once; see wait_for_api).

    The UI learns its API address from PREFECT_UI_API_URL, which Prefect derives from its
    port *setting*, not from `--port`: without it the UI on any other port calls :4200."""
    server_env = {
        **env,
        "PREFECT_UI_ENABLED": "true" if ui else "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    }
    server_env.pop("PREFECT_API_URL", None)  # the server itself must not point at an API
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_for_api(api_url: str, timeout: float = 120,
                 process: subprocess.Popen | None = None) -> None:
    """Poll `api_url`/health until it answers; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise PrefectStackError(f"Prefect server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if json.loads(response.read()) is True:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise PrefectStackError(f"Prefect API at {api_url} did not answer within {timeout:.0f} s")


def _prefect(args: list[str], env: Mapping[str, str], what: str,
            ok_if: str | None = None) -> str:
    """Run the prefect CLI; a failure whose output contains `ok_if` counts as success."""
    result = subprocess.run([PREFECT, *args], env=dict(env), cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and not (ok_if and ok_if in result.stdout + result.stderr):
        raise PrefectStackError(f"{what} failed (exit {result.returncode}):\n"
                                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def ensure_pools(env: Mapping[str, str]) -> list[str]:
    """Create (if missing) the local process pool and, when prefect-kubernetes is installed,
    the GPU pool from the infra template (it only waits there for a Kubernetes worker).
    Returns the pool names that exist afterwards."""
    _prefect(["work-pool", "create", LOCAL_POOL, "--type", "process"], env,
             f"creating work pool {LOCAL_POOL}", ok_if="already exists")
    try:
        import prefect_kubernetes  # noqa: F401
    except ImportError:
        return [LOCAL_POOL]
    if not GPU_TEMPLATE.is_file():
        return [LOCAL_POOL]
    _prefect(["work-pool", "create", GPU_POOL, "--type", "kubernetes",
              "--base-job-template", str(GPU_TEMPLATE)], env, f"creating work pool {GPU_POOL}",
             ok_if="already exists")
    return [LOCAL_POOL, GPU_POOL]


def deploy_all(env: Mapping[str, str], pools: list[str]) -> str:
    """`prefect deploy` every deployment of prefect.yaml whose pool exists."""
    if GPU_POOL in pools:
        return _prefect(["--no-prompt", "deploy", "--all"], env, "prefect deploy --all")
    names = ["train", "watch-clean-labels", "retrain-on-new-labels"]
    args = ["--no-prompt", "deploy"] + [a for n in names for a in ("--name", n)]
    return _prefect(args, env, "prefect deploy")


def start_worker(env: Mapping[str, str], pool: str = LOCAL_POOL,
                 log_file: Path | None = None) -> subprocess.Popen:
    """A process worker for `pool`, polling every PREFECT_WORKER_QUERY_SECONDS."""
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", pool, "--type", "process"],
        env=dict(env), cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(process: subprocess.Popen | None, grace: float = 10) -> None:
    """SIGINT, a second SIGINT (an idle worker needs two), then SIGKILL of its group."""
    if process is None or process.poll() is not None:
        return
    for _ in range(2):
        try:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=grace / 2)
            break
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break
    # Whatever is left of its process group (started with a new session: only its own
    # children, e.g. a flow run the worker started) goes too.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout=grace)


# Runs in the temporary API's process before it becomes uvicorn: the kernel sends it SIGTERM
# when the process that started it dies, even by SIGKILL (Linux), so a killed `relabel run`
# never leaves a server behind. The setting survives exec.
_EXEC_WITH_PARENT_DEATH_SIGNAL = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass  # not Linux: the starter's stop() is the only stop
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)  # the starter died before the signal was armed
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


class TemporaryAPI:
    """Prefect's temporary local API for one `relabel run`, started by relabel instead of
    lazily by Prefect's first client call.

    It is the same server Prefect starts on its own when no PREFECT_API_URL is set (uvicorn
    on `create_app`, UI and background services off, `PREFECT__SERVER_EPHEMERAL`), but it
    starts as soon as the data is validated, so its ~12 s boot runs on the second core while
    this process imports TensorFlow, MLflow and the flows; and this process never imports
    Prefect's server package (~6 s). Its log goes to PREFECT_HOME/logs/temporary-server.log.
    It stops with `stop()`, and with the process that started it if that one is killed.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if env is None else env)
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log_file = log_dir(self._env) / "temporary-server.log"
        self.process: subprocess.Popen | None = None
        # A first run in this project: the server creates its database (~10 s more), and
        # nothing is cached yet.
        home = Path(self._env.get("PREFECT_HOME") or Path.home() / ".prefect")
        self.new_database = ("PREFECT_API_DATABASE_CONNECTION_URL" not in self._env
                             and not (home / "prefect.db").exists())

    def start(self) -> TemporaryAPI:
        server_env = {
            **self._env, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        server_env.pop("PREFECT_API_URL", None)
        with open(self.log_file, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _EXEC_WITH_PARENT_DEATH_SIGNAL, str(os.getpid()),
                 "-m", "uvicorn", "--factory",
                 "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
                env=server_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    def wait(self, timeout: float = 180) -> str:
        """Block until the API answers; returns its URL."""
        try:
            wait_for_api(self.api_url, timeout=timeout, process=self.process)
        except PrefectStackError as exc:
            raise PrefectStackError(f"{exc} (its log: {self.log_file})") from None
        return self.api_url

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> TemporaryAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
