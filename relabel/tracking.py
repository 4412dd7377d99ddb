"""MLflow tracking of pipeline runs, with explicit run ids.

Layout of one pipeline run in the MLflow UI (experiment `PipelineConfig.mlflow_experiment`)::

    <profile>-<data hash>            parent run: full config as params, dataset input
    |                                (mlflow.data), headline metrics of every stage
    |                                (`model2.validation_accuracy`, `noise_rate`, ...),
    |                                label_prediction.csv, metrics.json, promotion.json
    +- data                          counts, observed noise rate, sample_grid.png
    +- noise                         per-class noise rates, transition + rates heat maps
    +- baseline | model1 | model2    training numbers, per-epoch curves (step metrics),
    |                                validation/test accuracy, macro F1, per-class F1,
    |                                classification reports, confusion matrices, curves PNG;
    |                                model2 also: Keras + pyfunc models, registry decision
    +- clean-model                   one grandchild run per fold (curves, numbers)
    +- correction                    correction accuracy on the validation images, counts

A stage served from the cache is not logged again: the pipeline run gets the tag
`relabel.stage_run.<stage>` naming the earlier run that logged the same content (and its
metrics, so runs still compare side by side); a reproduced model links to the logged model
and registry version instead of a copy.

Why explicit ids: MLflow's fluent API keeps "the active run" per thread, while Prefect runs
tasks on worker threads (or Dask/Ray workers). Every call here goes through `MlflowClient`
with a run id, so it does not matter which thread logs what.

Where runs go: `MLFLOW_TRACKING_URI` when set (e.g. `http://127.0.0.1:5000` for a shared
server whose artifacts live on S3), else MLflow 3's own default, a SQLite file `mlflow.db`
in the working directory (no server needed; `relabel mlflow-ui` browses it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relabel.constants import MODEL_KEYS

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from relabel.config import PipelineConfig
    from relabel.registry import PromotionDecision

log = logging.getLogger(__name__)

MODEL_SHA_TAG = "relabel.model_sha256"  # the logged file's bytes: a cached rerun reuses it
# What a stage run logged (stage_content_key) and the metrics it added to its pipeline run
# (JSON): a later run whose stage came from the cache links to it instead of logging again.
STAGE_CONTENT_TAG = "relabel.stage_content"
HEADLINE_TAG = "relabel.stage_headline"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PARENT_KIND = "pipeline"
_BATCH = 900  # MLflow accepts at most 1000 metrics / 100 params per log_batch call


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, else a SQLite store `mlflow.db` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def warm_up(experiment: str) -> None:
    """Open the tracking store (MLflow keeps its engine per URI: a SQLite store's schema
    check costs ~2 s once per process) while something else is waited for. Errors are
    left to the run itself, which reports them properly."""
    if not tracking_enabled():
        return
    try:
        Tracker(experiment)
    except Exception:  # noqa: BLE001 - the flow's start_tracking raises it again, in context
        log.debug("tracking warm-up failed", exc_info=True)


def _artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts. `RELABEL_MLFLOW_ARTIFACTS` (e.g.
    `s3://bucket/mlflow`: the client then writes artifacts to S3 itself, with the standard
    AWS credentials) wins; for a SQLite store the default is `mlruns/` beside the database
    file (MLflow would use `./mlruns` of whatever the working directory is); servers
    choose their own (`--artifacts-destination`). Existing experiments keep theirs."""
    configured = os.environ.get("RELABEL_MLFLOW_ARTIFACTS")
    if configured:
        return configured.rstrip("/")
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///"):]).resolve()
    return (database.parent / "mlruns").as_uri()


def tracking_enabled() -> bool:
    """False when RELABEL_TRACKING is 0/false/off/no (e.g. quick local experiments)."""
    return os.environ.get("RELABEL_TRACKING", "1").strip().lower() not in (
        "0", "false", "off", "no")


def start_tracking(config: PipelineConfig, run_name: str, data_hash: str,
                   dataset_summary: Mapping[str, Any] | None = None) -> Tracker | None:
    """The flow's entry point: a Tracker with its pipeline run started, or None when
    tracking is disabled."""
    if not tracking_enabled():
        log.info("MLflow tracking disabled (RELABEL_TRACKING=%s)",
                 os.environ.get("RELABEL_TRACKING"))
        return None
    tracker = Tracker(config.mlflow_experiment)
    tracker.start_pipeline(config, run_name, data_hash, dataset_summary)
    return tracker


def finish_tracking(tracker: Tracker | None, summary: Any, folds: Sequence[Any] = ()) -> None:
    """The flow's exit point: log the finished run's summary, gate Model II, end the run.
    A tracking failure ends the MLflow run FAILED and propagates (clear error in Prefect)."""
    if tracker is None:
        return
    started = time.perf_counter()
    try:
        runs = tracker.log_summary(summary, folds, stage_seconds=summary.stage_seconds)
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish(metrics={"tracking_seconds": time.perf_counter() - started})
    linked = len(tracker.linked_stages)
    log.info("MLflow: %d stage runs logged, %d linked (unchanged), under %s in %.1f s (%s)",
             len(runs) - linked, linked, tracker.parent_run_id,
             time.perf_counter() - started, tracker.uri)


def mark_failed_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect on_failure/on_crashed hook: end the flow run's open MLflow runs as FAILED,
    so the UI never shows a dead run as still running."""
    if not tracking_enabled():
        return
    try:
        config = (flow_run.parameters or {}).get("config") or {}
        experiment = (config.get("mlflow_experiment") if isinstance(config, dict)
                      else getattr(config, "mlflow_experiment", None)) or "relabel"
        closed = fail_open_runs(str(flow_run.id), experiment)
        if closed:
            log.info("marked %d MLflow run(s) of flow run %s FAILED", closed, flow_run.id)
    except Exception as exc:  # noqa: BLE001 - a hook must never mask the real failure
        log.warning("could not mark MLflow runs failed: %s", exc)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _metric_key(key: str) -> str:
    """MLflow keys allow letters, digits, _ - . / and spaces; map anything else to _."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def slug(name: str) -> str:
    """Stage/model display name -> run-name and metric-prefix form ("Model II" -> "model2")."""
    from relabel.config import MODEL_TITLES

    known = {title: key for key, title in MODEL_TITLES.items()}
    return known.get(name, _metric_key(name.lower().replace(" ", "-")))


def stage_content_key(stage: str, content: Any) -> str:
    """Hash of what a stage run logs: its records (artifact paths and SHA-256s, metrics,
    curves), equal whenever the stage was served from the cache."""
    from pydantic_core import to_jsonable_python

    text = json.dumps([stage, to_jsonable_python(content)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used; the message says which and what to do."""


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (seconds, not MLflow's minutes of retries) when an http(s) tracking URI
    does not answer its /health endpoint."""
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as answer:
            if answer.status == 200:
                return
            problem = f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise TrackingError(
        f"MLflow tracking server {uri} is not answering ({problem}); start it, fix "
        "MLFLOW_TRACKING_URI (unset: ./mlflow.db), or set RELABEL_TRACKING=off")


class Tracker:
    """One pipeline run's MLflow record. Thread-safe: every call names its run id."""

    def __init__(self, experiment: str = "relabel", uri: str | None = None) -> None:
        from mlflow import MlflowClient

        self.uri = uri or tracking_uri()
        check_server(self.uri)
        self.client: MlflowClient = MlflowClient(self.uri)
        self.experiment_name = experiment
        self.experiment_id = self._experiment_id(experiment)
        self.parent_run_id: str | None = None
        self.linked_stages: list[str] = []  # served from the cache: linked, not logged
        self._started = time.time()

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_artifact_root(self.uri))
        except MlflowException:  # created by a concurrent run between our two calls
            return self.client.get_experiment_by_name(name).experiment_id

    # ------------------------------------------------------------------ runs

    def start_pipeline(
        self,
        config: PipelineConfig,
        run_name: str,
        data_hash: str | None = None,
        dataset_summary: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create the parent run: config params, data hash and counts, dataset input."""
        all_tags = {"relabel.kind": PARENT_KIND, "relabel.profile": config.profile,
                    "relabel.data": str(config.data), **(tags or {})}
        if data_hash:
            all_tags["relabel.data_hash"] = data_hash
        try:  # link back to the Prefect flow run when there is one
            from prefect.runtime import flow_run

            if flow_run.id:
                all_tags["prefect.flow_run_id"] = str(flow_run.id)
                all_tags["prefect.flow_run_name"] = str(flow_run.name)
        except Exception:  # noqa: BLE001 - Prefect absent or not in a flow: nothing to link
            pass
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        self.parent_run_id = run.info.run_id
        self._started = time.time()
        self.log_params(self.parent_run_id, config.flat_params())
        if dataset_summary:
            self.log_dataset(self.parent_run_id, str(config.data), data_hash or "",
                             dataset_summary)
        log.info("MLflow run %s (%s) in experiment %s at %s", run_name, self.parent_run_id,
                 self.experiment_name, self.uri)
        return self.parent_run_id

    def child_run(self, name: str, parent_run_id: str | None = None,
                  tags: Mapping[str, str] | None = None) -> str:
        """A run nested under `parent_run_id` (default: the pipeline run)."""
        parent = parent_run_id or self._parent()
        run = self.client.create_run(
            self.experiment_id, run_name=name,
            tags={"mlflow.parentRunId": parent, "relabel.kind": "stage",
                  "relabel.stage": name, **(tags or {})},
        )
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def finish(self, status: str = "FINISHED", metrics: Mapping[str, float] | None = None) -> None:
        """End the pipeline run, logging its total wall time."""
        parent = self._parent()
        self.log_metrics(parent, {"wall_seconds": time.time() - self._started, **(metrics or {})})
        self.end_run(parent, status)

    def _parent(self) -> str:
        if self.parent_run_id is None:
            raise RuntimeError("no pipeline run: call start_pipeline() first")
        return self.parent_run_id

    # ------------------------------------------------------------------ logging

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(_metric_key(k), str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start:start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Log every finite number of `metrics` (others are skipped, not errors)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_metric_key(k), float(v), now, step)
                 for k, v in metrics.items() if _finite(v)]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, metrics=items[start:start + _BATCH])

    def log_history(self, run_id: str, history: Mapping[str, Sequence[float]]) -> None:
        """Per-epoch curves as step metrics: history["loss"][e] -> metric "loss", step e+1.
        In the UI: the run's Model metrics tab draws them against the step axis."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_metric_key(key), float(value), now, epoch)
                 for key, values in history.items()
                 for epoch, value in enumerate(values, start=1) if _finite(value)]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, metrics=items[start:start + _BATCH])

    def log_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    def log_file(self, run_id: str, path: str | os.PathLike[str],
                 artifact_path: str | None = None, name: str | None = None) -> None:
        """Log one file; `name` renames it (cache artifacts are named by their hash)."""
        path = Path(path)
        if name is None or name == path.name:
            self._store_artifact(run_id, path, artifact_path)
            return
        with tempfile.TemporaryDirectory(prefix="relabel-artifact-") as tmp:
            renamed = Path(tmp) / name
            try:
                os.link(path, renamed)  # no copy when on the same filesystem
            except OSError:
                shutil.copyfile(path, renamed)
            self._store_artifact(run_id, renamed, artifact_path)

    def _store_artifact(self, run_id: str, path: Path, artifact_path: str | None) -> None:
        try:
            self.client.log_artifact(run_id, str(path), artifact_path)
        except Exception as exc:  # noqa: BLE001 - re-raised with what/where in one line
            detail = " ".join(str(exc).split())[:400]
            raise TrackingError(
                f"storing artifact {artifact_path or '.'}/{path.name} of run {run_id} via "
                f"{self.uri} failed ({type(exc).__name__}): {detail}") from exc

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_json(self, run_id: str, payload: Any, artifact_file: str) -> None:
        self.client.log_text(run_id, json.dumps(payload, indent=2, sort_keys=True, default=str),
                             artifact_file)

    def log_dataset(self, run_id: str, source: str, digest: str,
                    summary: Mapping[str, Any], context: str = "training") -> None:
        """The dataset as an MLflow dataset input (name, content digest, source, schema) plus
        its counts as params, so runs on the same data group together in the UI."""
        import numpy as np
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.types import Schema, TensorSpec

        location = source if "://" in source else str(Path(source).resolve())
        with warnings.catch_warnings():  # "local" is registered twice in MLflow: harmless
            warnings.simplefilter("ignore", UserWarning)
            dataset_source = resolve_dataset_source(location)  # s3://, https://, a path
        schema = Schema([
            TensorSpec(np.dtype(np.uint8), (-1, 32, 32, 3), "images"),
            TensorSpec(np.dtype(np.int64), (-1,), "noisy_labels"),
            TensorSpec(np.dtype(np.int64), (-1,), "clean_labels"),
        ])
        dataset = MetaDataset(dataset_source, name=f"relabel-{digest[:12] or 'data'}",
                              digest=digest[:32] or None, schema=schema)
        entity = dataset._to_mlflow_entity()
        self.client.log_inputs(run_id, [DatasetInput(entity, [
            InputTag("mlflow.data.context", context)])])
        counts = {f"data.{k}": summary[k] for k in ("num_images", "num_clean", "num_test")
                  if k in summary}
        self.log_params(run_id, {**counts, "data.content_hash": digest})
        if summary.get("noise_rate") is not None:
            self.log_metrics(run_id, {"data.observed_noise_rate": summary["noise_rate"]})

    def log_evaluation(self, run_id: str, evaluation: Mapping[str, Any], prefix: str,
                       title: str, folder: Path) -> dict[str, float]:
        """Scores of tasks.evaluate.evaluate: `<prefix>_accuracy`, `<prefix>_macro_f1`,
        `<prefix>_f1.<class>`, the classification report and a confusion-matrix PNG.
        Returns the scalar metrics logged."""
        from relabel.tasks.plots import plot_confusion_matrix

        metrics = {f"{prefix}_accuracy": evaluation["accuracy"],
                   f"{prefix}_macro_f1": evaluation["macro_f1"]}
        metrics.update({f"{prefix}_f1.{name}": value
                        for name, value in evaluation.get("per_class_f1", {}).items()})
        self.log_metrics(run_id, metrics)
        if evaluation.get("report"):
            self.log_text(run_id, evaluation["report"],
                          f"reports/{prefix}_classification_report.txt")
        if evaluation.get("confusion") is not None:
            png = plot_confusion_matrix(evaluation["confusion"],
                                        folder / f"{prefix}_confusion.png",
                                        title=f"{title}: {prefix} confusion")
            self.log_file(run_id, png, "plots")
        return metrics

    def log_training(self, run_id: str, metrics: Mapping[str, float],
                     history: Mapping[str, Sequence[float]], title: str,
                     folder: Path) -> None:
        """Training numbers (seconds, images/s, epochs, ...) and per-epoch curves, as step
        metrics and as a PNG."""
        from relabel.tasks.plots import plot_training_curves

        self.log_metrics(run_id, {f"train_{k}" if not k.startswith("train") else k: v
                                  for k, v in metrics.items()})
        if history and any(len(v) for v in history.values()):
            self.log_history(run_id, history)
            png = plot_training_curves(history, folder / f"{slug(title)}_curves.png",
                                       title=f"{title}: training curves")
            self.log_file(run_id, png, "plots")

    def log_promotion(self, run_id: str, decision: PromotionDecision) -> None:
        """The registry decision and both numbers, on the model's run and the parent."""
        values = {"promotion.new_heldout_accuracy": decision.new_value,
                  "promotion.promoted": 1.0 if decision.promoted else 0.0}
        if decision.champion_value is not None:
            values["promotion.champion_heldout_accuracy"] = decision.champion_value
        tags = {"relabel.registered_model": decision.model_name,
                "relabel.model_version": decision.version,
                "relabel.alias": decision.alias,
                "relabel.promotion_reason": decision.reason}
        for target in {run_id, self._parent()}:
            self.log_metrics(target, values)
            self.log_tags(target, tags)
        self.log_json(self._parent(), decision.as_dict(), "promotion.json")

    # ----------------------------------------------------------- flow adapter

    def log_summary(self, summary: Any, folds: Sequence[Any] = (), register: bool = True,
                    stage_seconds: Mapping[str, float] | None = None) -> dict[str, str]:
        """Log a finished `relabel.flows.records.PipelineSummary` as child runs of the pipeline
        run (see the module docstring for the layout); register and gate Model II.

        `summary` is duck-typed (records with `.metrics`, `.history`, artifact `.path`), so
        this module does not import the flows; `folds`: the clean model's `FoldRef`s.
        `stage_seconds`: optional wall time per stage name, logged as `wall_seconds` on
        that stage's run. Returns the run ids.
        """
        from relabel.tasks.plots import plot_sample_grid

        parent = self._parent()
        seconds = dict(stage_seconds or {})
        runs: dict[str, str] = {}
        headline: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix="relabel-mlflow-") as tmp:
            folder = Path(tmp)

            def log_data(run: str) -> dict[str, float]:
                counts = {f"count.{k}": v for k, v in (summary.counts or {}).items()}
                self.log_metrics(run, counts)
                self.log_params(run, {"data_hash": summary.data_hash,
                                      "dataset_dir": summary.dataset_dir,
                                      "clean_labels_sha256": summary.clean_labels_sha256})
                try:
                    from relabel.tasks.ingest import load_dataset

                    data = load_dataset(summary.dataset_dir)
                    grid = plot_sample_grid(data.images, data.noisy_labels, data.clean_labels,
                                            folder / "sample_grid.png", seed=0)
                    self.log_file(run, grid, "plots")
                    self.log_file(parent, grid, "plots")
                except Exception as exc:  # noqa: BLE001 - a missing plot must not fail the run
                    log.warning("sample grid not logged: %s", exc)
                return counts

            def log_noise(run: str) -> dict[str, float]:
                noise = summary.noise
                noise_metrics = {
                    "noise_rate": noise.overall_noise_rate,
                    **{f"noise_rate.{k}": v for k, v in noise.noise_rates.items()}}
                self.log_metrics(run, noise_metrics)
                for plot_name, artifact in noise.plots.items():
                    self.log_file(run, artifact.path, "plots", name=plot_name)
                self.log_file(run, noise.transition.path, "arrays", name="transition.npy")
                return noise_metrics

            def log_clean_model(run: str) -> dict[str, float]:
                self.log_metrics(run, {
                    "folds": len(folds),
                    "train_seconds": sum(f.model.metrics.get("seconds", 0.0) for f in folds)})
                for fold in folds:  # nested one level deeper
                    fold_run = self.child_run(f"clean-fold-{fold.fold}", parent_run_id=run,
                                              tags={"relabel.fold": str(fold.fold)})
                    self.log_training(fold_run, fold.model.metrics, fold.model.history,
                                      f"clean fold {fold.fold}", folder)
                    self._end(fold_run, fold.model.metrics.get("seconds"))
                return {}

            def log_correction(run: str) -> dict[str, float]:
                self.log_metrics(run, summary.correction.metrics)
                return {f"correction.{k}": v for k, v in summary.correction.metrics.items()}

            def log_self_training(run: str) -> dict[str, float]:
                # The students (nested) and what the teacher alone corrected.
                teacher = {f"teacher_correction.{k}": v
                           for k, v in summary.teacher_correction.items()}
                self.log_metrics(run, teacher)
                for number, metrics in enumerate(summary.round_corrections, start=1):
                    self.log_metrics(run, {f"round_{number}_correction.{k}": v
                                           for k, v in metrics.items()})
                for student in summary.students:
                    tags = {"relabel.half": str(student.half),
                            "relabel.round": str(student.round_number)}
                    student_run = self.child_run(slug(student.model.name), parent_run_id=run,
                                                 tags=tags)
                    self.log_training(student_run, student.model.metrics,
                                      student.model.history, student.model.name, folder)
                    self._end(student_run, student.model.metrics.get("seconds"))
                return teacher

            def log_model(run: str, name: str, key: str, model: Any) -> dict[str, float]:
                # Training numbers, scores, the model (+ the registry for Model II).
                self.log_training(run, model.metrics, model.history, name, folder)
                contributed = {f"{key}.train_seconds": model.metrics.get("seconds", math.nan)}
                score = summary.scores.get(name)
                if score is not None:
                    for prefix, evaluation in (("validation", score.validation),
                                               ("test", score.test)):
                        if evaluation:
                            logged = self.log_evaluation(run, evaluation, prefix, name, folder)
                            contributed.update({f"{key}.{k}": v for k, v in logged.items()
                                                if "_f1." not in k})
                earlier = self.logged_model(model.model.sha256)
                if earlier is not None:
                    # The same bytes were logged (and registered) by an earlier run (a
                    # retraining that reproduced them): link to it instead of a copy.
                    self._link_logged_model(run, key, *earlier)
                elif model.kind == "keras" and key == "model2":
                    self._log_model2(run, model, score, register)
                elif model.kind == "keras":  # Model I: same flavours, not registered
                    from relabel.registry import log_keras_classifier

                    uri = log_keras_classifier(run, model.model.path, tracking_uri=self.uri)
                    self.log_tags(run, {"relabel.model_uri": uri})
                else:
                    from relabel.registry import log_sklearn_model

                    uri = log_sklearn_model(run, model.model.path, tracking_uri=self.uri)
                    self.log_tags(run, {"relabel.model_uri": uri})
                if earlier is None:
                    self.log_tags(run, {MODEL_SHA_TAG: model.model.sha256})
                return contributed

            stages: list[tuple[str, Any, Callable[[str], Mapping[str, float]], dict]] = [
                ("data", [summary.data_hash, summary.counts, summary.clean_labels_sha256],
                 log_data, {}),
                ("noise", summary.noise, log_noise, {}),
            ]
            if summary.clean_model is not None or folds:
                stages.append(("clean-model", list(folds), log_clean_model, {}))
            if summary.correction is not None:
                stages.append(("correction", summary.correction, log_correction, {}))
            if summary.students:
                stages.append(("self-training",
                               [summary.students, summary.teacher_correction,
                                summary.round_corrections],
                               log_self_training, {}))
            for name, model in summary.models.items():
                key = slug(name)
                stages.append((key, [model, summary.scores.get(name)],
                               functools.partial(log_model, name=name, key=key, model=model),
                               {"relabel.model": name, "relabel.model_kind": model.kind}))
            for stage, content, log_stage, tags in stages:
                runs[stage], contributed = self._stage_run(
                    stage, content, log_stage, seconds.get(stage), tags)
                headline.update(contributed)

            # the published files
            for name, path in (summary.outputs or {}).items():
                if Path(path).is_file() and not name.endswith(".npy"):
                    self.log_file(parent, path, "outputs")
            headline.update({f"{stage}.wall_seconds": value for stage, value in seconds.items()})
            self.log_metrics(parent, headline)
        return runs

    def _stage_run(self, stage: str, content: Any,
                   log_stage: Callable[[str], Mapping[str, float]], seconds: float | None,
                   tags: Mapping[str, str]) -> tuple[str, dict[str, float]]:
        """Log one stage as a child run of the pipeline run, or, when a finished earlier
        run logged exactly this content (the stage was served from the cache), link the
        pipeline run to it (tag `relabel.stage_run.<stage>`) instead of logging and
        registering it again. Returns (run id, the metrics it adds to the pipeline run)."""
        key = stage_content_key(stage, content)
        found = self.client.search_runs(
            [self.experiment_id], max_results=1, order_by=["attributes.start_time ASC"],
            filter_string=f"tags.`{STAGE_CONTENT_TAG}` = '{key}' and "
                          "attributes.status = 'FINISHED'")
        if found and HEADLINE_TAG in found[0].data.tags:
            earlier = found[0]
            self.log_tags(self._parent(), {f"relabel.stage_run.{stage}": earlier.info.run_id})
            if "relabel.model_uri" in earlier.data.tags and stage == "model2":
                self.log_tags(self._parent(),
                              {"relabel.model_uri": earlier.data.tags["relabel.model_uri"]})
            log.info("%s: unchanged since MLflow run %s (served from the cache); linked, "
                     "not logged again", stage, earlier.info.run_id)
            self.linked_stages.append(stage)
            return earlier.info.run_id, json.loads(earlier.data.tags[HEADLINE_TAG])
        run = self.child_run(stage, tags=tags)
        contributed = {k: float(v) for k, v in log_stage(run).items()}
        self.log_tags(run, {STAGE_CONTENT_TAG: key, HEADLINE_TAG: json.dumps(contributed)})
        self._end(run, seconds)
        return run, contributed

    def logged_model(self, sha256: str) -> tuple[str, str] | None:
        """(run id, model URI) of the run that logged the model file with this SHA-256."""
        found = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{MODEL_SHA_TAG}` = '{sha256}'",
            max_results=1, order_by=["attributes.start_time ASC"])
        if not found or "relabel.model_uri" not in found[0].data.tags:
            return None
        return found[0].info.run_id, found[0].data.tags["relabel.model_uri"]

    def _link_logged_model(self, run: str, key: str, earlier_run: str, model_uri: str) -> None:
        tags = {"relabel.model_uri": model_uri, "relabel.model_logged_by_run": earlier_run}
        if key == "model2":
            from relabel.registry import MODEL_NAME

            versions = self.client.search_model_versions(
                f"name = '{MODEL_NAME}' and run_id = '{earlier_run}'")
            if versions:
                tags["relabel.registered_version"] = str(versions[0].version)
            self.log_tags(self._parent(), {"relabel.model_uri": model_uri})
        self.log_tags(run, tags)
        log.info("%s: unchanged since MLflow run %s; linked to %s, not logged again", key,
                 earlier_run, model_uri)

    def _log_model2(self, run: str, model: Any, score: Any, register: bool) -> None:
        from relabel.registry import log_keras_classifier

        model_uri = log_keras_classifier(run, model.model.path, name="classifier",
                                         tracking_uri=self.uri)
        self.log_tags(run, {"relabel.model_uri": model_uri})
        self.log_tags(self._parent(), {"relabel.model_uri": model_uri})
        if register and score is not None:
            self.register_model2(run, model_uri, score)

    def register_model2(self, run: str, model_uri: str, score: Any,
                        model_name: str | None = None) -> PromotionDecision | None:
        """Register Model II (`model_uri`, logged by `run`) and gate it on its held-out score
        (`score`: a flows.records.ModelScores; its `heldout()`: the validation images', else
        a labelled test folder's).
        Returns the decision; None when nothing held out measured it (a production run
        without test labels): the version is registered with no alias, for a person to
        promote, never promoted on no evidence."""
        from relabel.registry import MODEL_NAME, promote, register_version

        model_name = model_name or MODEL_NAME
        heldout = score.heldout()
        if heldout is None:
            version = register_version(self.client, model_uri, run, None, model_name)
            self.log_tags(run, {"relabel.registered_model": model_name,
                                "relabel.model_version": version})
            log.warning("%s v%s registered without an alias: no held-out images scored it "
                        "(validation_size 0 and no test_labels.csv); give it alias champion in "
                        "the MLflow UI once you trust it", model_name, version)
            return None
        split, evaluation = heldout
        metric = float(evaluation["accuracy"])
        version = register_version(self.client, model_uri, run, metric, model_name)
        decision = promote(self.client, version, metric, model_name)
        if split != "validation":
            log.info("%s v%s gated on the labelled test folder (no validation images: a "
                     "production run)", model_name, version)
        self.log_promotion(run, decision)
        return decision

    def _end(self, run_id: str, seconds: float | None, status: str = "FINISHED") -> None:
        if seconds is not None:
            self.log_metrics(run_id, {"wall_seconds": seconds})
        self.end_run(run_id, status)


def fail_open_runs(flow_run_id: str, experiment: str = "relabel",
                   uri: str | None = None) -> int:
    """Mark the runs of a crashed/failed Prefect flow run FAILED (a Prefect state hook).
    Returns how many were still open."""
    from mlflow import MlflowClient

    client = MlflowClient(uri or tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return 0
    parents = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}' and "
                      "attributes.status = 'RUNNING'")
    closed = 0
    for parent in parents:
        children = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and "
                          "attributes.status = 'RUNNING'")
        for run in [*children, parent]:
            client.set_terminated(run.info.run_id, status="FAILED")
            closed += 1
    return closed


def recent_runs(experiment: str = "relabel", limit: int = 10, uri: str | None = None):
    """The last `limit` pipeline runs as a pandas DataFrame, one row per run: name, start,
    status, profile, data hash, noise rate, validation/test accuracy per model, wall time."""
    import mlflow
    import pandas as pd

    if uri:
        mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs(
        experiment_names=[experiment], filter_string=f"tags.`relabel.kind` = '{PARENT_KIND}'",
        max_results=limit, order_by=["attributes.start_time DESC"],
    )
    if frame.empty:
        return pd.DataFrame()
    columns = {"tags.mlflow.runName": "run", "start_time": "started", "status": "status",
               "params.profile": "profile", "tags.relabel.data_hash": "data",
               "metrics.noise_rate": "noise_rate"}
    for model in MODEL_KEYS:
        for split in ("validation", "test"):
            columns[f"metrics.{model}.{split}_accuracy"] = f"{model} {split[:4]} acc"
    columns["tags.relabel.alias"] = "model2 alias"
    columns["metrics.wall_seconds"] = "wall s"
    present = {k: v for k, v in columns.items() if k in frame.columns}
    table = frame[list(present)].rename(columns=present)
    if "data" in table:
        table["data"] = table["data"].str[:12]
    if "started" in table:
        table["started"] = pd.to_datetime(table["started"]).dt.strftime("%m-%d %H:%M")
    return table
