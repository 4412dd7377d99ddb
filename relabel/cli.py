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


def _local_data(data: str, cache_dir: Path) -> Path:
    """A local folder for `data`; `s3://` locations are fetched into the cache first."""
    if data.startswith("s3://"):
        from relabel.storage import fetch_prefix

        return fetch_prefix(data, cache_dir / "s3")
    return Path(data)


if __name__ == "__main__":
    app()
