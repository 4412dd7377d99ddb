"""relabel.prefect_server: the temporary API of `relabel run` answers, and never outlives the
process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STARTER = """\
import os, signal
from relabel.prefect_server import TemporaryAPI
api = TemporaryAPI().start()
print(api.process.pid, flush=True)
api.wait()
print("up", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # like an OOM kill: no stop(), no atexit
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0]
    except FileNotFoundError:
        return True
    return state in "ZX"  # a zombie waiting for init counts as gone


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_temporary_api_answers_then_dies_with_a_killed_starter(tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    starter = subprocess.run([sys.executable, "-c", STARTER], env=env, capture_output=True,
                             text=True, timeout=240)
    assert starter.returncode == -signal.SIGKILL, starter.stderr[-3000:]
    server_pid, up = starter.stdout.split()
    assert up == "up"
    deadline = time.monotonic() + 30
    while not _gone(int(server_pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(int(server_pid)), f"server {server_pid} outlived the killed relabel run"
    assert (tmp_path / "prefect" / "logs" / "temporary-server.log").is_file()
