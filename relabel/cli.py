"""The `relabel` command line. Heavy libraries are imported inside commands, so `--help`
and light commands start fast."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

import relabel  # noqa: F401  (sets the offline environment defaults)

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


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    _setup_logging(verbose)


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
    from tasks.demodata import generate_demo_data

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
    cache_dir: Path = Path(".relabel-cache"),
    workers: int | None = None,
) -> None:
    """Validate a dataset and write its content-addressed artifact; print the summary."""
    from tasks.ingest import IngestError
    from tasks.ingest import ingest as run_ingest

    try:
        result = run_ingest(_local_data(data, cache_dir), cache_dir, workers)
    except IngestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({**result.summary, "dataset_dir": str(result.dataset_dir),
                           "from_cache": result.from_cache}, indent=2))


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
    import numpy as np

    from tasks.ingest import IngestError, load_dataset
    from tasks.ingest import ingest as run_ingest
    from tasks.labels import CleanLabelStore
    from tasks.review import RUN_FOLD_PROBA, RUN_METRICS, RUN_PROBA, review_dataset

    try:
        run_info: dict = {}
        if run_dir is not None:
            if not run_dir.is_dir():
                raise IngestError(f"{run_dir}: run folder not found")
            if (run_dir / RUN_METRICS).is_file():
                run_info = json.loads((run_dir / RUN_METRICS).read_text())
            proba = proba or run_dir / RUN_PROBA
            if fold_proba is None and (run_dir / RUN_FOLD_PROBA).is_file():
                fold_proba = run_dir / RUN_FOLD_PROBA
            data = data or run_info.get("dataset_dir")
            out = out or run_dir / "review"
        if proba is None or data is None:
            raise IngestError(
                "give a run folder, or both --proba and --data"
                + (f" ({run_dir / RUN_METRICS} names no dataset_dir)" if run_dir else "")
            )
        cache = cache_dir or Path(run_info.get("cache_dir", ".relabel-cache"))
        for path in (proba, fold_proba):
            if path is not None and not path.is_file():
                raise IngestError(f"{path}: probabilities file not found")
        folder = _local_data(data, cache)
        if (folder / "images.npy").is_file():  # an ingested artifact folder
            dataset = load_dataset(folder)
        else:
            dataset = run_ingest(folder, cache).load()
        # Labels merged by `relabel labels add` count as known: never request them again.
        clean = CleanLabelStore(cache, dataset.content_hash).current(dataset.clean_labels)
        outputs = review_dataset(
            dataset, np.load(proba), out or Path("review"), num_requests=num_requests,
            top_n=top_n, method=method, strategy=strategy,  # type: ignore[arg-type]
            fold_proba=None if fold_proba is None else np.load(fold_proba),
            clean_labels=clean, include_clean=include_clean, seed=seed,
        )
    except (IngestError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({
        "label_issues": outputs.num_issues, "label_requests": outputs.num_requests,
        **{p.stem: str(p) for p in outputs.artifact_paths},
    }, indent=2))


def _local_data(data: str, cache_dir: Path) -> Path:
    """A local folder for `data`; `s3://` locations are fetched into the cache first."""
    if data.startswith("s3://"):
        from relabel.storage import fetch_prefix

        return fetch_prefix(data, cache_dir / "s3")
    return Path(data)


if __name__ == "__main__":
    app()
