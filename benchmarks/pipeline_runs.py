"""Wall time of the demo pipeline: a cold run, a cached rerun, and a resumed run.

    .venv/bin/python benchmarks/pipeline_runs.py [--data demo-data] [--profile smoke]

Each run is the command a user types, `relabel run`, in a fresh process on Prefect's
temporary local API (so every figure includes starting that API, ~13 s here, while the
CLI imports its libraries):

1. cold: an empty cache dir; every stage computes;
2. cached: the same command again; every stage is served from the cache;
3. resumed: seed + 1 (nothing past ingestion/features cached), killed with SIGKILL as soon
   as "Correct noisy labels" has finished (i.e. while Model II retrains), then rerun: the
   figure is the rerun's wall time; its log shows which stages came from cache.

Defaults to ./demo-data (`relabel demo-data`: 5,000 training, 1,500 clean, 1,000 test
images), generated into a temporary folder when absent. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relabel.quiet import parse_args_quietly

ROOT = Path(__file__).resolve().parents[1]
# The command to time; --relabel replaces it (e.g. a script running a frozen copy of the code,
# since a shared working tree can change under a benchmark and invalidate the cache).
RELABEL = [str(Path(sys.executable).with_name("relabel"))]
STATE = re.compile(r"Task run '([^\[']+?)(?: \[[^\]]*\])?' - Finished in state (\w+)")


def run(args: list[str], log: Path, kill_after: str | None = None) -> tuple[float, str]:
    """Run `relabel run ARGS` in the log's folder (MLflow's default mlflow.db lands there);
    with `kill_after`, SIGKILL it once that stage has finished."""
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen([*RELABEL, "run", *args], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=log.parent)
        while process.poll() is None:
            if kill_after and f"Task run '{kill_after}" in log.read_text(errors="replace"):
                os.killpg(process.pid, signal.SIGKILL)
            time.sleep(0.2)
    return time.perf_counter() - started, log.read_text(errors="replace")


def states(output: str) -> dict[str, list[str]]:
    by_state: dict[str, list[str]] = {}
    for stage, state in STATE.findall(output):
        by_state.setdefault(state, []).append(stage.strip())
    return by_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "demo-data")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--relabel", help="command to run instead of .venv/bin/relabel")
    options = parse_args_quietly(parser)
    if options.relabel:
        RELABEL[:] = [options.relabel]
    work = Path(tempfile.mkdtemp(prefix="relabel-bench-"))
    data = options.data
    if not (data / "noisy_labels.csv").is_file():
        data = work / "demo-data"
        subprocess.run([*RELABEL, "demo-data", str(data)], check=True, capture_output=True)
    common = ["--data", str(data), "--profile", options.profile,
              "--cache-dir", str(work / "cache"), "--output-dir", str(work / "out"), "--overwrite"]
    cold, cold_log = run(common, work / "cold.log")
    cached, cached_log = run(common, work / "cached.log")
    killed_after, _ = run([*common, "--seed", "1"], work / "killed.log",
                          kill_after="Correct noisy labels")
    resumed, resumed_log = run([*common, "--seed", "1"], work / "resumed.log")
    print(json.dumps({
        "data": str(data), "profile": options.profile, "logs": str(work),
        "cold_run_seconds": round(cold, 1),
        "cached_rerun_seconds": round(cached, 1),
        "killed_after_seconds": round(killed_after, 1),
        "resumed_run_seconds": round(resumed, 1),
        "cold_states": states(cold_log),
        "cached_states": states(cached_log),
        "resumed_states": states(resumed_log),
    }, indent=2))


if __name__ == "__main__":
    main()
