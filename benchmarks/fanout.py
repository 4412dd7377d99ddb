"""Fan-out timing: the clean-model folds on the thread runner vs a local Dask cluster.

    .venv/bin/python benchmarks/fanout.py                  # smoke profile, demo data
    .venv/bin/python benchmarks/fanout.py --repeats 3 --profile smoke --data DIR

Each measurement runs the same stages as flows/scaleout.py in a fresh cache dir (so nothing
is served from Prefect's cache), against a throwaway local Prefect API, and times only the
fan-out: from submitting the k fold tasks to having all k results. Dataset ingestion, the
split and Model I (the folds' starting weights) run before the clock starts. Runners are
measured interleaved (threads, dask-new, dask-running, threads, ...) so background load on a
shared machine hits all of them alike.

Figures printed (seconds, per repeat and the median):
  threads       ThreadPoolTaskRunner, one thread per fold, in the flow's process
  dask-new      DaskTaskRunner that starts its own LocalCluster (k worker processes on
                127.0.0.1) and stops it: what `task_runner: dask` without an address costs
  dask-running  DaskTaskRunner connecting to an already running 2-worker LocalCluster
                (`dask_address`): the fan-out alone, workers already warm after repeat 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import relabel  # noqa: E402,F401  (offline environment defaults)
from relabel.config import PROFILES, PipelineConfig  # noqa: E402
from relabel.quiet import parse_args_quietly  # noqa: E402

RUNNERS = ("threads", "dask-new", "dask-running")


def timed_fan_out(config: PipelineConfig) -> float:
    """Seconds the k fold tasks take on `config.task_runner`, inside a Prefect flow."""
    from prefect import flow

    from relabel.flows.policies import results_in
    from relabel.flows.scaleout import fan_out_folds, fold_inputs

    @flow(name="relabel-fanout-benchmark")
    def measure(config: PipelineConfig) -> float:
        with results_in(config.cache_dir):
            inputs = fold_inputs(config)  # ingest, split, Model I: before the clock starts
            started = time.perf_counter()
            folds = fan_out_folds(config, inputs)
            seconds = time.perf_counter() - started
        assert len(folds) == config.train.folds
        return seconds

    return measure(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset folder (default: `relabel demo-data` defaults, generated)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parse_args_quietly(parser, argv)

    from distributed import LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    from relabel.flows.runners import local_dask_cluster_kwargs

    folds = PROFILES[args.profile].folds
    with tempfile.TemporaryDirectory(prefix="relabel-fanout-") as tmp:
        work = Path(tmp)
        data = args.data
        if data is None:
            from relabel.tasks.demodata import generate_demo_data

            data = generate_demo_data(work / "data", seed=args.seed)
        seconds: dict[str, list[float]] = {name: [] for name in RUNNERS}
        with prefect_test_harness(server_startup_timeout=None), \
                LocalCluster(**local_dask_cluster_kwargs(folds)) as cluster:
            for repeat in range(args.repeats):
                for name in RUNNERS:
                    config = PipelineConfig(
                        data=str(data), profile=args.profile, seed=args.seed,
                        cache_dir=work / f"cache-{name}-{repeat}",
                        task_runner="threads" if name == "threads" else "dask",
                        dask_address=cluster.scheduler_address if name == "dask-running"
                        else None,
                    )
                    seconds[name].append(round(timed_fan_out(config), 2))
                    print(f"repeat {repeat + 1} {name}: {seconds[name][-1]} s", flush=True)

    figures = {"profile": args.profile, "folds": folds, "data": str(args.data or "demo-data"),
               "seconds": seconds,
               "median_seconds": {k: round(statistics.median(v), 2) for k, v in seconds.items()}}
    print(json.dumps(figures))
    if args.out is not None:
        from relabel.fileio import write_json_atomic

        write_json_atomic(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
