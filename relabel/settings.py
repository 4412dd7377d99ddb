"""Environment defaults that keep relabel offline, quiet and reproducible.

Prefect and MLflow phone home unless told not to, and a cold Prefect temporary server can
take longer to start than its default timeout on a 2-core machine. The user's own values
always win: we only fill in what is unset.

Prefect's state (its database of runs, deployments and work pools) lives in `.prefect/` of
the folder relabel runs in, beside MLflow's `mlflow.db`, not in the user's global
`~/.prefect`: another project's runs never show up here, and deleting a clone deletes
its deployments.
"""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_DEFAULTS: dict[str, str] = {
    # MLflow accepts only the exact string "true" here.
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # A cold temporary server needs ~20 s here; its default timeout is 20 s.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_UI_ENABLED_CHECK_UPDATES": "false",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # One graph op at a time (each still uses every core). With TensorFlow's default
    # inter-op pool, oneDNN's bfloat16 kernels split their sums differently depending on
    # which ops overlap, so two bfloat16 trainings with one seed differed (in about half
    # of the tries); float32 did not. Cost measured on a 2-core EPYC: ~3.5% images/s.
    "TF_NUM_INTEROP_THREADS": "1",
    # Rich progress bars and colour codes are noise in logs and CI.
    "PREFECT_LOGGING_COLORS": "false",
    # MLflow's tqdm bar ("Downloading artifacts") as it copies each model file it logs:
    # carriage returns in a log; relabel reports its own progress.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}


def project_defaults() -> dict[str, str]:
    """OFFLINE_DEFAULTS plus the project-local Prefect home (absolute: it must not move
    when a process changes directory)."""
    return {**OFFLINE_DEFAULTS, "PREFECT_HOME": str(Path.cwd() / ".prefect")}


def apply_offline_defaults(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set each default that is not already set; return the ones this call set."""
    env = os.environ if environ is None else environ
    applied = {}
    for key, value in project_defaults().items():
        if key not in env:
            env[key] = value
            applied[key] = value
    return applied
