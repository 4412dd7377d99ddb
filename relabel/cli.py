"""The `relabel` command line. Heavy libraries are imported inside commands, so `--help`
and light commands start fast."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

import relabel  # noqa: F401  (sets the offline environment defaults)
from relabel.constants import DEFAULT_CACHE_DIR, MODEL_KEYS, PROFILE_NAMES
from relabel.run_folders import DEFAULT_RUNS_DIR

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

    from relabel.config import PipelineConfig
    from relabel.prefect_server import TemporaryAPI

app = typer.Typer(
    name="relabel",
    help="Train image classifiers when most labels are wrong.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


_VERBOSE = False  # --verbose: tracebacks for expected errors too


@app.callback()
def main(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="debug logs, and tracebacks for every error")] = False) -> None:
    global _VERBOSE
    _VERBOSE = verbose
    _setup_logging(verbose)


def _expected_error(exc: BaseException) -> str | None:
    """The message of a failure the user can fix (bad input, file system, storage, tracking
    store, config), or None for a bug. Classes are looked up only in modules already
    imported, so the light commands stay light."""
    import sys

    for module, name in (("relabel.tasks.ingest", "IngestError"),
                         ("relabel.serving", "PredictError"),
                         ("relabel.tasks.split", "SplitError"),
                         ("relabel.storage", "StorageError"),
                         ("relabel.tracking", "TrackingError"),
                         ("pydantic", "ValidationError")):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return str(exc)
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else "file system"
        return f"{where}: {exc.strerror or exc}"
    return None


def console_main() -> None:
    """The installed `relabel` script: run_cli, with TensorFlow's C++ probe lines filtered
    out of stderr unless --verbose (relabel.quiet; in-process callers keep their stderr),
    and a quick exit: once the interpreter's exit handlers have run (threads joined, logs
    and MLflow/Prefect queues flushed), the process ends without the module teardown that
    follows, where TensorFlow's native destructors take ~3 s after a training run."""
    import atexit
    import sys

    status = [1]  # an exception escaping run_cli: Python prints it, then exits 1

    def exit_now() -> None:
        logging.shutdown()  # registered before this handler, so it would run after it
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status[0])

    # Exit handlers run last-registered first: registered before the libraries are
    # imported, this one runs after theirs.
    atexit.register(exit_now)
    if not {"--verbose", "-v"} & set(sys.argv[1:]):
        from relabel.quiet import filter_native_stderr

        filter_native_stderr()
    try:
        run_cli()
        status[0] = 0
    except SystemExit as exc:  # a str code was printed by Python already; it exits 1
        status[0] = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        raise


def run_cli() -> None:
    """The `relabel` command. One rule for every subcommand: an expected failure prints one
    `error: <what>: <why>` line and exits 2; a traceback only with --verbose (or for a bug).
    Usage errors are click's own (exit 2); everything else propagates out of `app()`."""
    import sys

    try:
        app()
    except Exception as exc:
        message = _expected_error(exc)
        if message is None or _VERBOSE:
            raise
        typer.echo(f"error: {message}", err=True)
        sys.exit(2)


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Argument(help="folder to create")] = Path("demo-data"),
    num_train: int = 5000,
    num_clean: int = 1500,
    num_test: int = 1000,
    noise_rate: float = 0.6,
    pair_flip_fraction: float = 0.0,
    seed: int = 0,
    overwrite: bool = False,
) -> None:
    """Generate a small deterministic dataset in the layout relabel reads."""
    from relabel.tasks.demodata import generate_demo_data

    try:
        path = generate_demo_data(
            out, num_train, num_clean, num_test, noise_rate, pair_flip_fraction, seed, overwrite
        )
    except (FileExistsError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"demo data written to {path}")


@app.command()
def ingest(
    data: Annotated[str, typer.Argument(help="dataset folder or s3://bucket/prefix")],
    cache_dir: Path = DEFAULT_CACHE_DIR,
    workers: Annotated[int | None, typer.Option(min=1, help="decoding processes")] = None,
) -> None:
    """Validate a dataset and write its content-addressed artifact; print the summary."""
    from relabel.storage import local_folder
    from relabel.tasks.ingest import IngestError
    from relabel.tasks.ingest import ingest as run_ingest

    try:
        result = run_ingest(local_folder(data, cache_dir), cache_dir, workers)
    except IngestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({**result.summary, "dataset_dir": str(result.dataset_dir),
                           "from_cache": result.from_cache}, indent=2))


@app.command("predict")
def predict_command(
    images: Annotated[list[Path], typer.Argument(help="PNG files and/or folders of PNGs")],
    model: Annotated[str, typer.Option(
        help="champion or challenger (the registry's aliases), a run folder, or a .keras "
        "file")] = "champion",
    out: Annotated[Path | None, typer.Option(
        help="write the table here (CSV) instead of printing it")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="images per batch")] = 1024,
) -> None:
    """Predict the class of new 32x32 RGB images: one row per file with class id, class
    name and confidence."""
    from relabel.serving import predict_files

    predictions = predict_files([str(p) for p in images], model, batch_size)
    if out is None:
        typer.echo(predictions.to_csv(), nl=False)
    else:
        predictions.write_csv(out)
    typer.echo(f"{len(predictions.files)} images predicted by {predictions.model} "
               f"({predictions.images_per_second:.0f} images/s)"
               + (f"; written to {out}" if out else ""), err=True)


@app.command("review")
def review(
    run_dir: Annotated[Path | None, typer.Argument(
        help="a finished run's output folder (clean_proba.npy, metrics.json)")] = None,
    proba: Annotated[Path | None, typer.Option(
        help="out-of-sample probabilities .npy float [N, 10] (default: RUN_DIR/clean_proba.npy)"
    )] = None,
    data: Annotated[str | None, typer.Option(
        help="dataset folder, raw or ingested (default: the run's dataset_dir)")] = None,
    out: Annotated[Path | None, typer.Option(
        help="output folder (default: RUN_DIR/review, or ./review)")] = None,
    fold_proba: Annotated[Path | None, typer.Option(
        help="per-fold probabilities .npy [F, N, 10] (default: RUN_DIR/clean_fold_proba.npy "
        "when present)")] = None,
    num_requests: Annotated[int, typer.Option(min=0, help="size of the request list")] = 500,
    top_n: Annotated[int, typer.Option(min=1, help="tiles per gallery section")] = 64,
    method: Annotated[str, typer.Option(
        help="cleanlab ranking: self_confidence or normalized_margin")] = "self_confidence",
    strategy: Annotated[str, typer.Option(help="entropy, margin or random")] = "entropy",
    include_clean: Annotated[bool, typer.Option(
        help="also look for label issues among clean-labelled images")] = False,
    cache_dir: Annotated[Path | None, typer.Option(
        help="artifact cache (default: the run's cache_dir, or .relabel-cache)")] = None,
    seed: int = 0,
) -> None:
    """Rank likely-wrong labels, pick the images to label next, and render a gallery.

    Fill in the written label_requests.csv and give it to `relabel labels add`.
    """
    from relabel.reviewing import review_run
    from relabel.tasks.ingest import IngestError

    try:
        result = review_run(
            run_dir, proba=proba, data=data, out=out, fold_proba=fold_proba,
            cache_dir=cache_dir, num_requests=num_requests, top_n=top_n,
            method=method, strategy=strategy,  # type: ignore[arg-type]
            include_clean=include_clean, seed=seed)
    except (IngestError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    outputs = result.outputs
    typer.echo(json.dumps({
        "num_label_issues": outputs.num_issues, "num_label_requests": outputs.num_requests,
        "files": {p.name: str(p) for p in outputs.artifact_paths},
        "next": result.next_step(),
    }, indent=2))


@app.command("run")
def run(
    data: Annotated[str, typer.Option(help="dataset folder or s3://bucket/prefix")] = "demo-data",
    profile: Annotated[str | None, typer.Option(
        help=f"training budget: {', '.join(PROFILE_NAMES)} (default: demo on the generated "
        "demo data, cpu otherwise)")] = None,
    seed: Annotated[int, typer.Option(help="seed of every split and model")] = 0,
    validation_size: Annotated[float, typer.Option(
        help="share of the clean labels held out to measure the run; 0 = a production run "
        "that trains on all of them (only a labelled test folder then measures it)")] = 0.2,
    models: Annotated[str, typer.Option(
        help=f"comma-separated subset of {','.join(MODEL_KEYS)}")] = ",".join(MODEL_KEYS),
    output_dir: Annotated[Path | None, typer.Option(
        help="this run's folder (label_prediction.csv, metrics.json, plots); default: a new "
        "runs/<time>-<run name>/, with runs/latest pointing at it")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="let --output-dir replace a folder that already holds results")] = False,
    cache_dir: Annotated[Path, typer.Option(
        help="content-addressed artifact cache")] = DEFAULT_CACHE_DIR,
    task_runner: Annotated[str, typer.Option(
        help="where the clean-model folds run: threads, dask or ray")] = "threads",
    refresh_cache: Annotated[bool, typer.Option(
        help="recompute every stage instead of reusing cached results")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="change a profile field for this run: --set retrain_epochs=20 "
        "(repeatable)")] = None,
) -> None:
    """Run the whole pipeline in this process, on Prefect's temporary local API (no server).

    Unchanged stages come from the cache; a run that was killed resumes at the stage it was in.
    """

    from pydantic import ValidationError

    from relabel.config import PipelineConfig, default_profile
    from relabel.run_folders import holds_results

    try:
        config = PipelineConfig(
            data=data, profile=profile or default_profile(data), seed=seed,
            validation_size=validation_size, output_dir=output_dir, cache_dir=cache_dir,
            models=[m.strip() for m in models.split(",") if m.strip()], task_runner=task_runner,
            overrides=_parse_overrides(set_ or []),
        )
    except ValidationError as exc:
        typer.echo(f"error: invalid option: {_validation_message(exc)}", err=True)
        raise typer.Exit(2) from None
    if output_dir is not None and not overwrite and holds_results(output_dir):
        typer.echo(f"error: --output-dir {output_dir}: already holds results (another run's?); "
                   "pass --overwrite to replace it, or leave --output-dir out: each run then "
                   "gets its own runs/<time>-<run name>/", err=True)
        raise typer.Exit(2)
    _check_tracking_server()  # seconds at most; ingesting the data can take minutes
    _validate_local_data(config)
    if refresh_cache:
        os.environ["PREFECT_TASKS_REFRESH_CACHE"] = "true"
    started = time.monotonic()
    with _prefect_api() as api:
        state = _run_pipeline(config, api)
    if not state.is_completed():
        _report_failed_pipeline(state)
    summary = state.result()
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    typer.echo("\n" + summary.results_table())
    published = [name for name in ("label_prediction.csv", "metrics.json")
                 if name in summary.outputs] + ["plots"]
    typer.echo(f"\nwall time {minutes} min {seconds:02d} s; results in {summary.run_dir}/ "
               f"({', '.join(published)})")
    typer.echo("MLflow UI:  relabel mlflow-ui    (runs, curves, plots, the model registry)\n"
               "Prefect UI: relabel server       (deployments, schedules, run history)")


def _check_tracking_server() -> None:
    """An MLflow tracking server that does not answer fails the run before any server
    starts (TrackingError: one `error:` line, exit 2), not minutes later inside the flow."""
    from relabel.tracking import check_server, tracking_enabled, tracking_uri

    if tracking_enabled():
        check_server(tracking_uri())


def _report_failed_pipeline(state: State) -> NoReturn:
    """A failed pipeline run. A failure the user can fix (storage, file system, tracking
    store) is raised again, so that run_cli reports it as every command does (one `error:`
    line, exit 2); anything else exits 1 with Prefect's message, the traceback above it."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, Exception) and _expected_error(exc) is not None:
        raise exc
    typer.echo(f"error: pipeline {state.name}: {state.message}", err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def _prefect_api() -> Iterator[TemporaryAPI | None]:
    """The Prefect API this run reports to: the user's (PREFECT_API_URL, e.g. `relabel
    server`; yields None), else a temporary one on 127.0.0.1 that boots on the second core
    while the caller imports the flows, and stops when the run ends."""
    if os.environ.get("PREFECT_API_URL"):
        yield None
        return
    from relabel.prefect_server import TemporaryAPI

    with TemporaryAPI() as api:
        yield api


def _run_pipeline(config: PipelineConfig, api: TemporaryAPI | None) -> State:
    """`pipeline(config)` on `api` (None: Prefect's configured API)."""
    _use_prefect_console_logging()
    # Imported while a temporary API boots: Prefect, MLflow, the stages.
    import mlflow  # noqa: F401
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from relabel.flows.pipeline import pipeline
    from relabel.prefect_server import PrefectStackError

    if api is None:
        return pipeline(config=config, return_state=True)
    from relabel.tracking import warm_up

    warm_up(config.mlflow_experiment)
    if api.new_database:
        # A first run trains: import TensorFlow (~10 s) while the server creates its DB.
        import tensorflow  # noqa: F401
    try:
        api.wait()
    except PrefectStackError as exc:
        typer.echo(f"error: temporary Prefect API: {exc}", err=True)
        raise typer.Exit(1) from None
    logging.getLogger("relabel").info(
        "Prefect: temporary API at %s (server log: %s)", api.api_url, api.log_file)
    with temporary_settings(updates={PREFECT_API_URL: api.api_url}):
        try:
            return pipeline(config=config, return_state=True)
        finally:
            _send_queued_logs_and_events()


def _send_queued_logs_and_events() -> None:
    """Deliver the run's queued logs and events to the API before it stops: Prefect sends
    them in batches, and at interpreter exit, with the API gone, it retries for ~60 s."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=10)


def _validate_local_data(config: PipelineConfig) -> None:
    """Ingest the dataset before any server or tracking starts, so bad data (or an S3 prefix
    that cannot be read) fails in seconds with the file, line or URL named and leaves no run
    behind; the flow's ingest stage then finds it in the cache (an s3:// prefix is fetched
    into the cache here: the flow downloads nothing again)."""
    from relabel.storage import local_folder
    from relabel.tasks.ingest import IngestError
    from relabel.tasks.ingest import ingest as run_ingest

    try:
        run_ingest(local_folder(config.data, config.cache_dir), config.cache_dir,
                   config.ingest_workers)
    except IngestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _parse_overrides(pairs: list[str]) -> dict[str, str]:
    """["retrain_epochs=20", ...] -> {"retrain_epochs": "20"}; PipelineConfig checks the
    field names and converts the values."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            typer.echo(f"error: --set {pair}: expected FIELD=VALUE, e.g. retrain_epochs=20",
                       err=True)
            raise typer.Exit(2)
        overrides[key.strip()] = value.strip()
    return overrides


def _use_prefect_console_logging() -> None:
    """Let Prefect's console handler print run logs ("Task run 'Train Model I [...]' - ...")
    instead of the plain root handler; keep relabel's own INFO lines (epochs, ingestion)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    import prefect.logging.configuration as prefect_logging

    prefect_logging.setup_logging(incremental=False)
    logging.getLogger("relabel").setLevel(logging.INFO)
    if not _VERBOSE:
        # A failed stage's traceback stays in the Prefect UI (the API log handler) and
        # behind --verbose; the console gets the one-line message.
        loggers = [root, *(logger for logger in list(root.manager.loggerDict.values())
                           if isinstance(logger, logging.Logger))]
        for logger in loggers:
            for handler in logger.handlers:
                if (isinstance(handler, logging.StreamHandler)
                        and not isinstance(handler.formatter, _WithoutTraceback)):
                    handler.setFormatter(_WithoutTraceback(handler.formatter))


class _WithoutTraceback(logging.Formatter):
    """Formats a record as `inner` does, leaving out its traceback and stack."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:  # the other handlers (Prefect's API log) still get the traceback
            record.exc_info, record.exc_text, record.stack_info = saved


def _validation_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", lambda: [])()
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
        for e in errors
    ) or str(exc)


@app.command("server")
def server(
    port: Annotated[int, typer.Option(help="port of the Prefect server on 127.0.0.1")] = 4200,
    worker: Annotated[bool, typer.Option(help="also start a worker for relabel-local")] = True,
    deploy: Annotated[bool, typer.Option(help="prefect deploy --all from prefect.yaml")] = True,
) -> None:
    """Start a Prefect server on 127.0.0.1, the work pools, the deployments and a worker.

    Open the printed URL for the UI; Ctrl-C stops everything this command started.
    """
    import signal

    from relabel import prefect_server as stack

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (kill, a service manager) stops it like Ctrl-C

    signal.signal(signal.SIGTERM, _stop)
    api_url = f"http://127.0.0.1:{port}/api"
    env = stack.stack_env(api_url)
    logs = stack.log_dir(env)
    typer.echo(f"Prefect home: {env['PREFECT_HOME']}\n"
               f"logs: {logs / 'server.log'}, {logs / 'worker.log'}")
    processes = []
    try:
        processes.append(stack.start_server(port, env, log_file=logs / "server.log"))
        stack.wait_for_api(api_url, process=processes[0])
        typer.echo(f"Prefect UI: http://127.0.0.1:{port}   (export PREFECT_API_URL={api_url})")
        pools = stack.ensure_pools(env)
        if deploy:
            stack.deploy_all(env, pools)
            typer.echo("deployed: train, train-gpu, watch-clean-labels, retrain-on-new-labels")
        if worker:
            processes.append(stack.start_worker(env, log_file=logs / "worker.log"))
            typer.echo(f"worker started for work pool {stack.LOCAL_POOL}")
        typer.echo("Ctrl-C to stop")
        while all(p.poll() is None for p in processes):
            time.sleep(1)
        typer.echo("error: a Prefect process exited; stopping", err=True)
        raise typer.Exit(1)
    except stack.PrefectStackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        for process in reversed(processes):
            stack.stop_process(process)


labels_app = typer.Typer(help="Add new clean labels (then retrain).", no_args_is_help=True)
app.add_typer(labels_app, name="labels")


@labels_app.command("add")
def labels_add(
    labels_file: Annotated[Path, typer.Argument(
        help="CSV of image_id,label rows, or an updated clean_labels.csv")],
    data: Annotated[str, typer.Option(help="the dataset the ids refer to")] = "demo-data",
    cache_dir: Path = DEFAULT_CACHE_DIR,
    profile: Annotated[str | None, typer.Option(
        help="profile of the retrain this triggers (default: demo on the generated demo "
        "data, cpu otherwise)")] = None,
    models: Annotated[str, typer.Option(
        help="models that retrain builds (comma-separated)")] = ",".join(MODEL_KEYS),
    output_dir: Annotated[Path | None, typer.Option(
        help="output folder of that retrain (default: its own runs/<time>-<run name>/)")
    ] = None,
    allow_changes: Annotated[bool, typer.Option(
        help="let new labels replace existing clean labels")] = False,
    event: Annotated[bool, typer.Option(
        help="emit relabel.clean-labels.updated (starts retrain-on-new-labels)")] = True,
) -> None:
    """Validate new clean labels and merge them into the dataset's versioned clean-label set;
    then emit the event that starts the `retrain-on-new-labels` deployment."""
    from pydantic import ValidationError

    from relabel.config import PipelineConfig, default_profile
    from relabel.storage import local_folder
    from relabel.tasks.ingest import IngestError
    from relabel.tasks.ingest import ingest as run_ingest
    from relabel.tasks.labels import CleanLabelStore

    try:
        # Absolute paths: the retrain this event starts runs in the worker's folder.
        config = PipelineConfig(
            data=data if data.startswith("s3://") else str(Path(data).resolve()),
            cache_dir=cache_dir.resolve(), profile=profile or default_profile(data),
            output_dir=output_dir.resolve() if output_dir else None,
            runs_dir=DEFAULT_RUNS_DIR.resolve(),
            models=[m.strip() for m in models.split(",") if m.strip()],
        )
        dataset = run_ingest(local_folder(data, cache_dir), cache_dir).load()
        store = CleanLabelStore(cache_dir, dataset.content_hash)
        version, merge = store.add_file(labels_file, dataset.clean_labels,
                                        allow_changes=allow_changes)
    except ValidationError as exc:
        typer.echo(f"error: invalid option: {_validation_message(exc)}", err=True)
        raise typer.Exit(2) from None
    except IngestError as exc:  # LabelError is an IngestError
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({
        "version": version.version if version else 0,
        "file": str(version.path) if version else None, "num_clean": merge.num_clean,
        "added": merge.added, "confirmed": merge.confirmed, "changed": merge.changed,
    }, indent=2))
    if not event:
        return

    if not os.environ.get("PREFECT_API_URL"):
        typer.echo("no PREFECT_API_URL (no server running): labels merged, no event sent; "
                   "`relabel run` uses them", err=True)
        return
    from prefect.events.worker import EventsWorker

    from relabel.fileio import sha256_file
    from relabel.flows.watch import emit_labels_updated

    sent = emit_labels_updated(str(labels_file.resolve()), config, sha256_file(labels_file),
                               version=version.version if version else 0)
    EventsWorker.drain_all(timeout=30)  # send before this process exits
    typer.echo(f"event relabel.clean-labels.updated sent ({sent.id if sent else 'disabled'})")


@app.command("compare")
def compare(
    limit: Annotated[int, typer.Option(min=1, help="how many recent runs")] = 10,
    experiment: Annotated[str, typer.Option(help="MLflow experiment")] = "relabel",
    as_json: Annotated[bool, typer.Option("--json", help="JSON records instead of a table")]
    = False,
) -> None:
    """Recent pipeline runs side by side from MLflow: accuracy per model (validation = the
    held-out clean images; test when labelled), noise rate, profile, Model II alias, wall
    time. Reads MLFLOW_TRACKING_URI, else ./mlflow.db."""
    from relabel.tracking import recent_runs, tracking_uri

    table = recent_runs(experiment, limit)
    if table.empty:
        typer.echo(f"no pipeline runs in experiment {experiment!r} at {tracking_uri()}",
                   err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(table.to_json(orient="records", indent=2))
        return
    import pandas as pd

    with pd.option_context("display.width", 250, "display.max_columns", 30,
                           "display.float_format", "{:.4f}".format):
        typer.echo(table.to_string(index=False))


@app.command("mlflow-ui")
def mlflow_ui(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000,
    backend_store_uri: Annotated[str | None, typer.Option(
        help="tracking store (default: MLFLOW_TRACKING_URI if it is a database, else "
             "sqlite:///mlflow.db)")] = None,
) -> None:
    """Start the MLflow UI on 127.0.0.1 to browse the runs (Ctrl+C stops it)."""
    import sys

    from relabel.tracking import DEFAULT_TRACKING_URI, tracking_uri

    store = backend_store_uri or tracking_uri()
    if store.startswith(("http://", "https://")):
        typer.echo(f"MLFLOW_TRACKING_URI is a server ({store}): open it in a browser.")
        raise typer.Exit(0)
    store = store or DEFAULT_TRACKING_URI
    command = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port",
               str(port), "--backend-store-uri", store, "--workers", "1"]
    # One browsing user needs one worker and no background job runner (MLflow's defaults
    # start 4 workers + a job process: a minute of start-up on a small machine).
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    typer.echo(f"MLflow UI on http://127.0.0.1:{port} (store {store})")
    from relabel.quiet import restore_native_stderr

    restore_native_stderr()  # the filter thread does not survive exec
    os.execv(sys.executable, command)


if __name__ == "__main__":
    app()
