"""relabel.settings: offline, quiet defaults that never override the user; Prefect state local
to the folder relabel runs in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relabel.settings import OFFLINE_DEFAULTS, apply_offline_defaults


def test_offline_defaults_do_not_override_the_user() -> None:
    env = {"DO_NOT_TRACK": "false"}
    applied = apply_offline_defaults(env)
    assert env["DO_NOT_TRACK"] == "false" and "DO_NOT_TRACK" not in applied
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_importing_relabel_sets_the_environment() -> None:
    import relabel  # noqa: F401

    for key in OFFLINE_DEFAULTS:
        assert key in os.environ
    assert os.environ["DO_NOT_TRACK"] in ("true", "1")


@pytest.mark.slow
def test_prefect_state_is_local_to_the_folder_relabel_runs_in(tmp_path: Path) -> None:
    """A fresh process without PREFECT_HOME keeps Prefect's database in ./.prefect, never in
    the user's global ~/.prefect; an explicit PREFECT_HOME still wins."""
    code = ("import relabel, prefect.settings as s; "
            "print(s.get_current_settings().home)")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_HOME"}
    home = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()
    assert Path(home) == tmp_path / ".prefect"
    env["PREFECT_HOME"] = str(tmp_path / "mine")
    home = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()
    assert Path(home) == tmp_path / "mine"
