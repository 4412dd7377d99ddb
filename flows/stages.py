"""Prefect tasks: one per pipeline stage, each a thin wrapper around a `tasks/` function.

A wrapper loads its inputs from `Artifact`s (path + SHA-256), calls the stage function on
plain arrays, stores what it produced as new artifacts under the cache dir, and returns a
small record (flows/records.py): artifact references plus the stage's numbers (`metrics`,
`history`) for the flow to report or hand to a tracker. Caching and retries:
flows/policies.py. Heavy libraries (TensorFlow via relabel.tasks.train, scikit-learn) are
imported inside the tasks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.task_runners import TaskRunner

from relabel.config import MODEL_TITLES, TrainProfile
from relabel.fileio import write_json_atomic
from relabel.flows.artifacts import Artifact, load_array, reference_file, save_array, save_file
from relabel.flows.code_keys import code_fingerprint
from relabel.flows.policies import IO_RETRIES, SelfHealing, compute
from relabel.flows.records import (
    CleanModelRef,
    CorrectionRef,
    DatasetRef,
    FeaturesRef,
    FoldRef,
    ModelScores,
    NoiseReport,
    PipelineSummary,
    SplitRef,
    StudentRef,
    TrainedModel,
)

log = logging.getLogger(__name__)

# "<profile> <data hash>" of the running pipeline, for task-run names. A context variable, not
# Prefect tags: a tagged task run costs extra API calls (tag concurrency slots) per task.
_RUN_LABEL: ContextVar[str] = ContextVar("relabel_run_label", default="")


@contextlib.contextmanager
def run_labels(profile: str, data_hash: str) -> Iterator[None]:
    """Name every task run started inside "<stage> [<profile> <data hash>]"."""
    token = _RUN_LABEL.set(f"{profile} {data_hash[:12]}")
    try:
        yield
    finally:
        _RUN_LABEL.reset(token)


def _current_run_label() -> str:
    # Module level on purpose: Dask/Ray pickle a task with its run-name function by value, and
    # a nested function's globals go along; a ContextVar cannot be pickled, this function is
    # pickled by reference (module + name).
    return _RUN_LABEL.get()


def stage_name(title: str) -> Callable[..., str]:
    """A task-run name function: "<title> [<profile> <data hash>]"; a fold number or model
    name among the task's parameters is added after the title. (Thread runners carry the
    label to their tasks; elsewhere the profile parameter stands in.)"""

    def name(parameters: dict[str, Any]) -> str:
        detail = ""
        if "fold" in parameters:
            detail = f" {parameters['fold']}"
        elif "half" in parameters:
            detail = f" {parameters['half']}"
        elif parameters.get("evidence") == "students":
            detail = " again (teacher + students)"
        elif isinstance(parameters.get("model"), TrainedModel):
            detail = f" {parameters['model'].name}"
        if parameters.get("round_number", 1) > 1:
            detail += f" round {parameters['round_number']}"
        label = _current_run_label()
        if not label and isinstance(parameters.get("profile"), TrainProfile):
            label = parameters["profile"].name
        return f"{title}{detail} [{label}]" if label else f"{title}{detail}"

    return name


# --------------------------------------------------------------------------- stages

# Task identity (`Task.task_key`) -> the stage (MLflow stage run) its wall time counts towards;
# filled by `stage_task` as the module defines its tasks.
STAGE_OF_TASK: dict[str, str] = {}


def stage_task(stage: str, *, cached: bool = True, **options: Any) -> Callable[..., Any]:
    """`prefect.task` for a pipeline stage: cached by `compute(stage)` unless `cached=False`
    (the task brings its own cache policy), its wall time counted towards `stage`."""

    def decorate(fn: Callable[..., Any]) -> Any:
        stage_fn = task(**(compute(stage) if cached else {}), **options)(fn)
        STAGE_OF_TASK[stage_fn.task_key] = stage
        return stage_fn

    return decorate




def _ingest_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cheap identity of the dataset: for a folder its files' names, sizes and mtimes (no
    image is read), for an S3 prefix its listing (keys, sizes, ETags); and the code ingest
    runs (tasks/ingest.py, relabel.storage, ...), as every stage's key holds."""
    from relabel.tasks.ingest import stat_fingerprint

    data = str(parameters["data"])
    if data.startswith("s3://"):
        from relabel.storage import prefix_fingerprint

        identity = prefix_fingerprint(data)
    elif Path(data).is_dir():
        identity = stat_fingerprint(Path(data))
    else:
        identity = f"missing-{time.time_ns()}"  # never a hit: the task will report the error
    return (f"{identity}|{code_fingerprint(context.task.fn)}|"
            f"{Path(parameters['cache_dir']).resolve()}|{parameters.get('workers')}")


def _dataset_artifacts(folder: Path) -> dict[str, Artifact]:
    """One artifact per array of an ingested dataset folder. The folder is immutable: its
    arrays are hashed once, and the hashes reused (artifact-hashes.json)."""
    hashes_file = folder / "artifact-hashes.json"
    if hashes_file.is_file():
        try:
            return {k: Artifact(**v) for k, v in json.loads(hashes_file.read_text()).items()}
        except (ValueError, TypeError) as exc:  # truncated or corrupt: hash the arrays again
            get_run_logger().warning("%s unreadable (%s): hashing the arrays again",
                                     hashes_file, type(exc).__name__)
    refs = {p.stem: reference_file(p) for p in sorted(folder.glob("*.npy"))}
    write_json_atomic(hashes_file, {k: v.model_dump() for k, v in refs.items()})
    return refs


def _dataset_fault(folder: Path, refs: dict[str, Artifact]) -> str | None:
    """What is wrong with a reused dataset folder: a required array missing, or any array
    gone or changed since it was hashed; None when nothing is."""
    for name in ("images", "noisy_labels", "clean_labels"):  # test_* are optional
        if name not in refs:
            return f"{folder / name}.npy is missing"
    return next(filter(None, (a.fault() for a in refs.values())), None)


@stage_task("data", cached=False, name="Ingest dataset", task_run_name="Ingest dataset [{data}]",
            cache_policy=SelfHealing(
                policy=TASK_SOURCE + CachePolicy.from_cache_key_fn(_ingest_cache_key)),
            persist_result=True, result_serializer="json", **IO_RETRIES)
def ingest_dataset(data: str, cache_dir: Path, workers: int | None = None) -> DatasetRef:
    """Validate the dataset folder (or fetch the S3 prefix) into a content-addressed artifact."""
    from relabel.tasks.ingest import ingest

    local = Path(data)
    if data.startswith("s3://"):
        from relabel.storage import fetch_prefix

        local = fetch_prefix(data, Path(cache_dir) / "s3")
    result = ingest(local, cache_dir, workers)
    refs = _dataset_artifacts(result.dataset_dir.resolve())
    if result.from_cache and (fault := _dataset_fault(result.dataset_dir, refs)):
        # ingest's index still names this folder, but a file in it is gone or changed (a
        # pruned or damaged cache): build the folder again from the data.
        get_run_logger().warning("ingested dataset damaged: %s; ingesting %s again",
                                 fault, data)
        shutil.rmtree(result.dataset_dir)
        result = ingest(local, cache_dir, workers)
        refs = _dataset_artifacts(result.dataset_dir.resolve())
    folder = result.dataset_dir.resolve()
    return DatasetRef(
        content_hash=result.content_hash, directory=str(folder), images=refs["images"],
        noisy_labels=refs["noisy_labels"], clean_labels=refs["clean_labels"],
        test_images=refs.get("test_images"), test_labels=refs.get("test_labels"),
        summary=result.summary,
    )


def _clean_labels_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Changes exactly when a new clean-label version is merged for this dataset."""
    from relabel.tasks.labels import CleanLabelStore

    dataset: DatasetRef = parameters["dataset"]
    store = CleanLabelStore(parameters["cache_dir"], dataset.content_hash)
    latest = store.latest()
    return f"{dataset.clean_labels.sha256}|{latest.path.resolve() if latest else 'none'}"


@stage_task("data", cached=False, name="Resolve clean labels",
            task_run_name=stage_name("Resolve clean labels"),
            cache_policy=SelfHealing(
                policy=TASK_SOURCE + CachePolicy.from_cache_key_fn(_clean_labels_cache_key)),
            persist_result=True, result_serializer="json", **IO_RETRIES)
def resolve_clean_labels(dataset: DatasetRef, cache_dir: Path) -> Artifact:
    """The newest merged clean-label set of this dataset (`relabel labels add`), or the
    dataset's own clean labels when none was merged. int64 [N], -1 = unknown."""
    from relabel.tasks.labels import CleanLabelStore

    latest = CleanLabelStore(cache_dir, dataset.content_hash).latest()
    if latest is None:
        return dataset.clean_labels
    return Artifact(path=str(latest.path.resolve()), sha256=reference_file(latest.path).sha256)


@stage_task("data", name="Split clean labels", task_run_name=stage_name("Split clean labels"))
def split_clean_labels(
    clean_labels: Artifact, validation_size: float, folds: int, seed: int,
    max_noisy: int | None, cache_dir: Path,
) -> SplitRef:
    """Hold out `validation_size` of the clean labels (stratified), cut the rest into
    `folds` stratified folds for the clean model; keep at most `max_noisy` noisy images."""
    from relabel.tasks.split import plan_splits

    labels = load_array(clean_labels)
    plan = plan_splits(labels, validation_size, folds, seed, max_noisy)
    return SplitRef(
        train_idx=save_array(cache_dir, "split", plan.clean_train_idx),
        val_idx=save_array(cache_dir, "split", plan.val_idx),
        noisy_idx=save_array(cache_dir, "split", plan.noisy_idx),
        folds=[(save_array(cache_dir, "split", train), save_array(cache_dir, "split", holdout))
               for train, holdout in plan.folds],
        counts={"clean_train": len(plan.clean_train_idx), "validation": len(plan.val_idx),
                "noisy_train": len(plan.noisy_idx), "noisy_only": int((labels < 0).sum())},
    )


@stage_task("noise", name="Explore label noise",
            task_run_name=stage_name("Explore label noise"))
def explore_noise(
    clean_labels: Artifact, noisy_labels: Artifact, split: SplitRef, cache_dir: Path
) -> NoiseReport:
    """Estimate the noise transition matrix on the clean training images and plot it."""
    from relabel.constants import CLASS_NAMES
    from relabel.tasks.noise import (
        estimate_transition,
        noise_rates,
        overall_noise_rate,
        plot_noise_rates,
        plot_transition,
    )

    idx = load_array(split.train_idx)
    transition = estimate_transition(load_array(clean_labels)[idx], load_array(noisy_labels)[idx])
    rates = noise_rates(transition)
    plots = {
        "transition_matrix.png": save_file(
            cache_dir, "plots", ".png", lambda p: plot_transition(transition, p)),
        "noise_rates.png": save_file(
            cache_dir, "plots", ".png", lambda p: plot_noise_rates(rates, p)),
    }
    return NoiseReport(
        transition=save_array(cache_dir, "noise", transition),
        noise_rates={name: float(r) for name, r in zip(CLASS_NAMES, rates, strict=True)},
        overall_noise_rate=float(overall_noise_rate(transition)),
        plots=plots,
    )


@stage_task("baseline", name="Extract colour features",
            task_run_name=stage_name("Extract colour features"))
def extract_features(
    images: Artifact, test_images: Artifact | None, cache_dir: Path
) -> FeaturesRef:
    """The old notebook's 15 colour-histogram counts per image (baseline input)."""
    from relabel.tasks.features import rgb_histogram

    train = save_array(cache_dir, "features", rgb_histogram(load_array(images, mmap=True)))
    test = None
    if test_images is not None:
        test = save_array(cache_dir, "features", rgb_histogram(load_array(test_images, mmap=True)))
    return FeaturesRef(train=train, test=test)


def _noisy_label_pool(split: SplitRef) -> Any:
    from relabel.tasks.split import noisy_label_pool

    return noisy_label_pool(load_array(split.train_idx), load_array(split.noisy_idx))


@stage_task("baseline", name="Train baseline", task_run_name=stage_name("Train baseline"))
def train_baseline(
    features: FeaturesRef, noisy_labels: Artifact, split: SplitRef, seed: int, cache_dir: Path
) -> TrainedModel:
    """The old notebook's baseline: logistic regression on colour histograms, fitted to the
    noisy labels of the training images (validation images excluded)."""
    import time

    import joblib

    from relabel.tasks.baseline import fit_baseline

    x, noisy = load_array(features.train), load_array(noisy_labels)
    pool = _noisy_label_pool(split)
    started = time.perf_counter()
    model = fit_baseline(x[pool], noisy[pool], seed)
    seconds = time.perf_counter() - started
    artifact = save_file(cache_dir, "models", ".joblib", lambda p: joblib.dump(model, p))
    return TrainedModel(name=MODEL_TITLES["baseline"], kind="sklearn", model=artifact,
                        metrics={"seconds": seconds, "train_images": float(len(pool))})


def _keras_record(name: str, result: Any, cache_dir: Path) -> TrainedModel:
    """Save a TrainResult's model as an artifact and keep its numbers."""
    from relabel.tasks.train import save_model

    artifact = save_file(cache_dir, "models", ".keras", lambda p: save_model(result.model, p))
    metrics = {"seconds": float(result.seconds), "epochs": float(result.epochs),
               "images_per_second": float(result.images_per_second)}
    if result.gflops_per_second is not None:
        metrics["gflops_per_second"] = float(result.gflops_per_second)
    history = {k: [float(v) for v in values] for k, values in result.history.items()}
    return TrainedModel(name=name, kind="keras", model=artifact, metrics=metrics, history=history)


@stage_task("model1", name="Train Model I (noisy labels)",
            task_run_name=stage_name("Train Model I"))
def train_model1(
    images: Artifact, noisy_labels: Artifact, noise: NoiseReport, split: SplitRef,
    profile: TrainProfile, seed: int, cache_dir: Path,
) -> TrainedModel:
    """Model I: the CNN trained on the noisy labels with forward loss correction by T."""
    from relabel.tasks.model1 import train_model1 as fit_model1

    x, noisy = load_array(images, mmap=True), load_array(noisy_labels)
    pool = _noisy_label_pool(split)
    result = fit_model1(x[pool], noisy[pool], load_array(noise.transition),
                        profile, seed)
    return _keras_record(MODEL_TITLES["model1"], result, cache_dir)


def _initial_model(model1: TrainedModel | None, init: str,
                   student: TrainedModel | None = None,
                   teacher: TrainedModel | None = None) -> Any:
    """The network to start from when the profile says so (`clean_init`, `student_init`,
    `retrain_init`: "model1" = Model I, "teacher" = the first clean-model fold, "student" =
    the first self-training student), else None (scratch)."""
    if init == "scratch":
        return None
    start = {"model1": model1, "student": student, "teacher": teacher}[init]
    if start is None:
        raise ValueError(f"the profile starts from {init}, but none was trained")
    from relabel.tasks.train import load_model

    return load_model(start.model.local_path())


@stage_task("clean-model", name="Train clean-model fold",
            task_run_name=stage_name("Train clean-model fold"))
def train_clean_fold(
    images: Artifact, clean_labels: Artifact, split: SplitRef, fold: int,
    model1: TrainedModel | None, profile: TrainProfile, seed: int, cache_dir: Path,
) -> FoldRef:
    """One fold of the clean model: trained on the clean labels outside its holdout
    (starting from Model I when `profile.clean_init` says so); predicts its holdout
    (out-of-fold) and every noisy and validation image."""
    from relabel.tasks.clean_model import fold_prediction_idx
    from relabel.tasks.clean_model import train_clean_fold as fit_fold

    x, labels = load_array(images, mmap=True), load_array(clean_labels)
    train_idx, holdout_idx = (load_array(a) for a in split.folds[fold])
    predict_idx = fold_prediction_idx(load_array(split.noisy_idx), load_array(split.val_idx))
    result = fit_fold(x, labels, train_idx, holdout_idx, predict_idx, profile, seed, fold,
                      initial_model=_initial_model(model1, profile.clean_init),
                      batch_size=profile.clean_batch_size,
                      translate_pixels=profile.clean_translate_pixels,
                      cutout_pixels=profile.clean_cutout_pixels)
    return FoldRef(
        fold=fold,
        model=_keras_record(f"clean fold {fold}", result.train, cache_dir),
        holdout_idx=save_array(cache_dir, "clean-model", result.holdout_idx),
        holdout_proba=save_array(cache_dir, "clean-model", result.holdout_proba),
        predict_idx=save_array(cache_dir, "clean-model", result.predict_idx),
        predict_proba=save_array(cache_dir, "clean-model", result.predict_proba),
    )


def train_clean_model(
    runner: TaskRunner, images: Artifact, clean_labels: Artifact, split: SplitRef,
    model1: TrainedModel | None, profile: TrainProfile, seed: int, cache_dir: Path,
) -> list[FoldRef]:
    """The k clean-model folds as parallel task runs on `runner` (see flows.runners)."""
    return _fan_out(runner, train_clean_fold, [
        dict(images=images, clean_labels=clean_labels, split=split, fold=fold, model1=model1,
             profile=profile, seed=seed, cache_dir=cache_dir)
        for fold in range(len(split.folds))])


def _fan_out(runner: TaskRunner, stage: Any, calls: list[dict[str, Any]]) -> list[Any]:
    """Submit `stage` once per parameter set to `runner`; the results in that order. When
    the wait ends early (Ctrl-C, SIGTERM, a failed call), the calls still running stop at
    their next batch, because the runner's exit waits for them."""
    from relabel.progress import stoppable

    with stoppable() as stop, runner:
        futures = [runner.submit(stage, parameters=parameters) for parameters in calls]
        try:
            return [future.result() for future in futures]
        except BaseException:
            stop.set()
            raise


@stage_task("clean-model", name="Combine clean-model folds",
            task_run_name=stage_name("Combine clean-model folds"))
def combine_clean_folds(folds: list[FoldRef], num_images: int, cache_dir: Path) -> CleanModelRef:
    """Out-of-fold probabilities on the clean training images, the fold ensemble's mean
    everywhere else (tasks.clean_model.combine_folds), and the per-fold stack for review
    (k >= 2 folds only)."""
    from relabel.tasks.clean_model import FoldResult, combine_folds, stack_folds

    results = [
        FoldResult(fold=f.fold, holdout_idx=load_array(f.holdout_idx),
                   holdout_proba=load_array(f.holdout_proba),
                   predict_idx=load_array(f.predict_idx),
                   predict_proba=load_array(f.predict_proba), train=None)
        for f in folds
    ]
    return CleanModelRef(
        proba=save_array(cache_dir, "clean-model", combine_folds(results, num_images)),
        fold_proba=save_array(cache_dir, "clean-model", stack_folds(results, num_images))
        if len(results) > 1 else None,
    )


@stage_task("correction", name="Correct noisy labels",
            task_run_name=stage_name("Correct noisy labels"))
def correct_noisy_labels(
    clean_model: CleanModelRef, noisy_labels: Artifact, clean_labels: Artifact,
    noise: NoiseReport, split: SplitRef, method: Literal["posterior", "threshold"],
    threshold: float, profile: TrainProfile, cache_dir: Path,
    evidence: Literal["teacher", "students"] = "teacher", round_number: int = 1,
) -> CorrectionRef:
    """New labels for the noisy training images, from the clean model's probabilities
    (temperature fitted to the noisy labels' likelihood) and the noisy label: the posterior
    under T, or the old notebook's confidence threshold; `profile.keep_fraction` per class.
    `evidence` names where `clean_model` came from (the teacher, or teacher + students of
    self-training round `round_number`; both only name the task run)."""
    from relabel.tasks.correct import correct_noisy_images

    correction, metrics = correct_noisy_images(
        load_array(clean_model.proba), load_array(noisy_labels), load_array(clean_labels),
        load_array(noise.transition), noisy_idx=load_array(split.noisy_idx),
        val_idx=load_array(split.val_idx),
        method=method, threshold=threshold, keep_fraction=profile.keep_fraction)
    source = "the teacher" if evidence == "teacher" else f"self-training round {round_number}"
    if "validation_correction_accuracy" in metrics:
        log.info(
            "labels corrected from %s: %.2f%% right on the validation images (noisy labels: "
            "%.2f%%)", source, 100 * metrics["validation_correction_accuracy"],
            100 * metrics["validation_noisy_label_accuracy"])
    else:
        log.info("labels corrected from %s: %.1f%% changed (no validation images to measure "
                 "them: a production run)", source, 100 * metrics["changed_from_noisy"])
    return CorrectionRef(
        noisy_idx=split.noisy_idx,
        targets=save_array(cache_dir, "correction", correction.targets),
        labels=save_array(cache_dir, "correction", correction.labels),
        confidence=save_array(cache_dir, "correction", correction.confidence),
        keep=save_array(cache_dir, "correction", correction.keep),
        metrics=metrics,
    )


def _correction(correction: CorrectionRef) -> Any:
    from relabel.tasks.correct import Correction

    return Correction(
        targets=load_array(correction.targets), labels=load_array(correction.labels),
        confidence=load_array(correction.confidence), keep=load_array(correction.keep),
    )


@stage_task("self-training", name="Train self-training student",
            task_run_name=stage_name("Train student"))
def train_student(
    images: Artifact, clean_labels: Artifact, split: SplitRef, correction: CorrectionRef,
    half: int, profile: TrainProfile, seed: int, cache_dir: Path,
    teacher: TrainedModel | None = None, round_number: int = 1,
    previous: TrainedModel | None = None,
) -> StudentRef:
    """One cross-fitted student: clean labels + noisy half `half` with the corrected labels
    of `correction`; scores the other half and the validation images. In round 1 it starts
    from the teacher's weights when `profile.student_init` says so; in later rounds from
    `previous`, the same half's student of the round before."""
    from relabel.tasks.self_training import student_name
    from relabel.tasks.self_training import train_student as fit_student

    if (round_number > 1) != (previous is not None):
        raise ValueError(f"round {round_number}: a student continues the round before's "
                         "student from round 2 on, and only then")
    initial_model = (_initial_model(None, "student", student=previous) if previous else
                     _initial_model(None, profile.student_init, teacher=teacher))
    result = fit_student(
        load_array(images, mmap=True), load_array(split.train_idx), load_array(clean_labels),
        load_array(correction.noisy_idx), load_array(correction.targets),
        load_array(split.val_idx), half, profile, seed, round_number=round_number,
        initial_model=initial_model)
    return StudentRef(
        half=half, round_number=round_number,
        model=_keras_record(student_name(half, round_number), result.train, cache_dir),
        predict_idx=save_array(cache_dir, "self-training", result.predict_idx),
        predict_proba=save_array(cache_dir, "self-training", result.predict_proba),
        neighbour_idx=None if result.neighbour_idx is None else save_array(
            cache_dir, "self-training", result.neighbour_idx),
    )


def train_students(
    runner: TaskRunner, images: Artifact, clean_labels: Artifact, split: SplitRef,
    correction: CorrectionRef, profile: TrainProfile, seed: int, cache_dir: Path,
    teacher: TrainedModel | None = None, previous: list[StudentRef] | None = None,
) -> list[StudentRef]:
    """Both students of one self-training round as task runs on `runner` (one after the
    other on the thread runner). Round 1 (`previous` None): `teacher` (the first
    clean-model fold) is their start when `profile.student_init` says so. A later round
    continues `previous`, the round before's students, one per half."""
    from relabel.tasks.self_training import HALVES

    by_half = {s.half: s for s in previous or []}
    if previous and sorted(by_half) != list(range(HALVES)):
        raise ValueError(f"previous: need one student per half, got {sorted(by_half)}")
    round_number = previous[0].round_number + 1 if previous else 1
    return _fan_out(runner, train_student, [
        dict(images=images, clean_labels=clean_labels, split=split, correction=correction,
             half=half, profile=profile, seed=seed, cache_dir=cache_dir,
             teacher=teacher if profile.student_init == "teacher" and not previous else None,
             round_number=round_number,
             previous=by_half[half].model if previous else None)
        for half in range(HALVES)])


@stage_task("self-training", name="Combine teacher and students",
            task_run_name=stage_name("Combine teacher and students"))
def combine_students(
    teacher: CleanModelRef, students: list[StudentRef], split: SplitRef,
    teacher_weight: float | None, cache_dir: Path, round_number: int = 1,
    noisy_labels: Artifact | None = None, noise: NoiseReport | None = None, seed: int = 0,
) -> CleanModelRef:
    """New p(true label | image) for the correction: each noisy image's teacher
    probabilities mixed with those of the student that never saw it (`students`: one
    round's; `round_number` only names the task run; `teacher_weight` None: fitted to the
    noisy labels' likelihood), then, where the students found neighbours, with their
    neighbours' noisy-label votes (both need `noisy_labels` and `noise`)."""
    from relabel.tasks.self_training import (
        StudentResult,
        add_neighbour_votes,
        fit_teacher_weight,
    )
    from relabel.tasks.self_training import combine_students as combine

    results = [StudentResult(half=s.half, predict_idx=load_array(s.predict_idx),
                             predict_proba=load_array(s.predict_proba), train=None,
                             neighbour_idx=None if s.neighbour_idx is None
                             else load_array(s.neighbour_idx))
               for s in students]
    val_idx = load_array(split.val_idx)
    teacher_proba = load_array(teacher.proba)
    votes_wanted = any(r.neighbour_idx is not None for r in results)
    if (teacher_weight is None or votes_wanted) and (noisy_labels is None or noise is None):
        raise ValueError("fitting the teacher weight and the students' neighbour votes need "
                         "noisy_labels and noise")
    if noisy_labels is not None and noise is not None:
        labels, transition = load_array(noisy_labels), load_array(noise.transition)
    metrics: dict[str, float] = {}
    if teacher_weight is None:
        teacher_weight, nll = fit_teacher_weight(teacher_proba, results, val_idx, labels,
                                                 transition)
        metrics["teacher_weight"] = teacher_weight
        log.info("teacher weight %.2f (fitted to the noisy labels: NLL %.5f; 0: %.5f, "
                 "1: %.5f)", teacher_weight, nll[teacher_weight], nll[0.0], nll[1.0])
    mixed = combine(teacher_proba, results, val_idx, teacher_weight)
    if votes_wanted:
        mixed, votes = add_neighbour_votes(mixed, results, val_idx, labels, transition,
                                           seed=seed)
        metrics |= {"neighbour_votes_temperature": votes.temperature,
                    "neighbour_votes_weight": votes.weight,
                    "neighbour_votes_same_class_share": votes.same_class_share}
        log.info(
            "neighbour votes (%d per image): model temperature %.3f, weight %.3f, same-class "
            "share %.3f (fitted to the noisy labels)", results[0].neighbour_idx.shape[1],
            votes.temperature, votes.weight, votes.same_class_share)
    return CleanModelRef(proba=save_array(cache_dir, "self-training", mixed), metrics=metrics)


@stage_task("model2", name="Retrain (Model II)", task_run_name=stage_name("Retrain Model II"))
def retrain_model2(
    images: Artifact, clean_labels: Artifact, split: SplitRef, correction: CorrectionRef,
    model1: TrainedModel | None, profile: TrainProfile, seed: int, cache_dir: Path,
    student: TrainedModel | None = None,
) -> TrainedModel:
    """Model II: trained on the clean training labels plus the kept corrected labels
    (starting from Model I or the first student when `profile.retrain_init` says so)."""
    from relabel.tasks.model2 import retrain_model2 as fit_model2

    result = fit_model2(load_array(images, mmap=True), load_array(split.train_idx),
                        load_array(clean_labels), load_array(correction.noisy_idx),
                        _correction(correction), profile, seed,
                        initial_model=_initial_model(model1, profile.retrain_init, student),
                        weight_by_confidence=profile.weight_by_confidence)
    return _keras_record(MODEL_TITLES["model2"], result, cache_dir)


def _predict(model: TrainedModel, images: Any, features: Any, profile: TrainProfile) -> Any:
    from relabel.tasks.predict import predict_labels

    return predict_labels(model.kind, model.model.local_path(), images, features,
                          tta=profile.tta)


@stage_task("scoring", name="Score model", task_run_name=stage_name("Score"))
def score_model(
    model: TrainedModel, dataset: DatasetRef, clean_labels: Artifact, features: FeaturesRef,
    split: SplitRef, profile: TrainProfile, cache_dir: Path,
) -> ModelScores:
    """Accuracy and F1 on the validation images (none in a production run) and on the test
    images when labelled; predict the test folder."""
    from relabel.tasks.evaluate import evaluate

    val_idx = load_array(split.val_idx)
    scores = ModelScores(name=model.name)
    if val_idx.size:  # a production run has none
        images = load_array(dataset.images, mmap=True)
        feats = load_array(features.train)
        predicted = _predict(model, images[val_idx], feats[val_idx], profile)
        scores.validation = evaluate(load_array(clean_labels)[val_idx], predicted)
    if dataset.test_images is not None:
        test_x = load_array(dataset.test_images)
        test_f = load_array(features.test) if features.test is not None else None
        test_predicted = _predict(model, test_x, test_f, profile)
        scores.test_predictions = save_array(cache_dir, "predictions", test_predicted)
        if dataset.test_labels is not None:
            scores.test = evaluate(load_array(dataset.test_labels), test_predicted)
    return scores


@stage_task("publish", cached=False, name="Publish results",
            task_run_name=stage_name("Publish results"), **IO_RETRIES)
def publish_results(output_dir: Path | None, runs_dir: Path, started: dt.datetime,
                    summary: PipelineSummary) -> tuple[Path, dict[str, str]]:
    """Publish the run's folder whole (relabel.run_folders): label_prediction.csv (one
    column per model, one row per test image), the noise plots, the clean model's
    probabilities (clean_proba.npy, clean_fold_proba.npy: what `relabel review` reads) and
    metrics.json (the summary, paths relative to the project). The default folder is a new
    runs/<time>-<run name>/ and runs/latest points at it; an explicit `output_dir` is
    replaced as a whole. Not cached: always re-written, it is cheap.
    Returns the folder and {file name: path}."""
    from relabel.run_folders import (
        claim_new_folder,
        point_latest,
        portable_paths,
        replace_folder,
        run_folder_name,
        staging_folder,
    )
    from relabel.tasks.predict import write_label_prediction_csv

    name = run_folder_name(started, summary.run_name)
    parent = Path(output_dir).parent if output_dir is not None else Path(runs_dir)
    with staging_folder(parent, name) as staging:
        written: list[str] = []
        columns = {n: load_array(s.test_predictions)
                   for n, s in summary.scores.items() if s.test_predictions is not None}
        if columns:
            write_label_prediction_csv(staging / "label_prediction.csv", columns)
            written.append("label_prediction.csv")
        files = dict(summary.noise.plots)
        if summary.clean_model is not None:
            files["clean_proba.npy"] = summary.clean_model.proba
            if summary.clean_model.fold_proba is not None:
                files["clean_fold_proba.npy"] = summary.clean_model.fold_proba
        for file_name, artifact in files.items():
            shutil.copyfile(artifact.local_path(), staging / file_name)
            written.append(file_name)
        written.append("metrics.json")
        # metrics.json names the final folder: reserve it (a new default folder, never one
        # that exists) before writing, then move the staging folder there in one rename.
        if output_dir is not None:
            folder = Path(output_dir)
        else:
            folder = claim_new_folder(Path(tempfile.mkdtemp(dir=parent)), parent, name)
        try:
            paths = {file_name: str(folder / file_name) for file_name in written}
            record = summary.model_copy(update={"outputs": paths, "run_dir": str(folder)})
            write_json_atomic(staging / "metrics.json",
                              portable_paths(record.model_dump(mode="json")))
            if output_dir is not None:
                replace_folder(staging, folder)
            else:
                os.rename(staging, folder)  # onto the empty reservation: one atomic step
                point_latest(parent, folder)
        except BaseException:
            if output_dir is None:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if still the empty reservation
            raise
    return folder, paths
