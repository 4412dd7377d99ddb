"""The relabel pipeline as one Prefect flow: the old notebook's sections, in order.

ingest -> explore noise -> features -> baseline -> Model I -> clean model (the teacher: one
model, or k folds) -> label correction -> [cross-fitted students -> correction again, per
self-training round] -> retrain (Model II) -> score -> predict the test folder.

Every stage is a task in flows/stages.py, cached on its inputs' hashes, the profile fields it
reads and the code it runs (flows/code_keys.py), so a rerun skips straight to the first
stage whose inputs, fields or code changed, and a run killed in
the middle resumes at the interrupted stage. Run it with `relabel run`, or deploy it
(prefect.yaml: `train`, `train-gpu`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from relabel.config import PipelineConfig
from relabel.flows.policies import results_in
from relabel.flows.progress_artifacts import PrefectProgressArtifacts
from relabel.flows.records import DatasetRef, FoldRef, PipelineSummary, StudentRef
from relabel.flows.runners import make_task_runner
from relabel.flows.stages import (
    STAGE_OF_TASK,
    combine_clean_folds,
    combine_students,
    correct_noisy_labels,
    explore_noise,
    extract_features,
    ingest_dataset,
    publish_results,
    resolve_clean_labels,
    retrain_model2,
    run_labels,
    score_model,
    split_clean_labels,
    train_baseline,
    train_clean_model,
    train_model1,
    train_students,
)
from relabel.flows.timing import stage_seconds
from relabel.progress import reporting_to
from relabel.tracking import finish_tracking, mark_failed_hook, start_tracking


def run_name(profile: str, data_hash: str) -> str:
    return f"{profile}-{data_hash[:12]}"


def _initial_run_name() -> str:
    """Before ingestion the content hash is unknown: profile + dataset location for now."""
    config = flow_run.parameters.get("config") or {}
    if isinstance(config, PipelineConfig):
        config = config.model_dump()
    return f"{config.get('profile', 'smoke')}-{Path(str(config.get('data', 'data'))).name}"


def _rename_run(profile: str, data: DatasetRef) -> str:
    """Once the data hash is known, rename the flow run to "<profile>-<data hash>"."""
    from prefect import get_client

    name = run_name(profile, data.content_hash)
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, name=name)
    return name


def _needs_model1(config: PipelineConfig) -> bool:
    """Model I is trained when asked for, or when Model II's stages start from it."""
    starts_from_it = "model1" in (config.train.clean_init, config.train.retrain_init)
    return "model1" in config.models or ("model2" in config.models and starts_from_it)


@flow(name="relabel-pipeline", flow_run_name=_initial_run_name, log_prints=True,
      on_failure=[mark_failed_hook], on_crashed=[mark_failed_hook])
def pipeline(config: PipelineConfig = PipelineConfig()) -> PipelineSummary:  # noqa: B008
    """Train Baseline, Model I and Model II on a dataset and predict its test folder."""
    cache, profile, seed = config.cache_dir, config.train, config.seed
    get_run_logger().info(config.precision_note())
    started = dt.datetime.now()
    with results_in(cache), reporting_to(PrefectProgressArtifacts()):
        data = ingest_dataset(config.data, cache, config.ingest_workers)
        name = _rename_run(config.profile, data)
        tracker = start_tracking(config, name, data.content_hash, data.summary)  # MLflow
        with run_labels(config.profile, data.content_hash):
            clean = resolve_clean_labels(data, cache)
            split = split_clean_labels(clean, config.validation_size, profile.folds, seed,
                                       profile.max_train_images, cache)
            noise = explore_noise(clean, data.noisy_labels, split, cache)
            features = extract_features(data.images, data.test_images, cache)
            baseline = model1 = model2 = clean_model = correction = None
            folds: list[FoldRef] = []
            students: list[StudentRef] = []  # every round's
            latest: list[StudentRef] = []  # the last round's
            teacher_correction: dict[str, float] = {}
            round_corrections: list[dict[str, float]] = []
            if "baseline" in config.models:
                baseline = train_baseline(features, data.noisy_labels, split, seed, cache)
            if _needs_model1(config):
                model1 = train_model1(data.images, data.noisy_labels, noise, split, profile,
                                      seed, cache)
            if "model2" in config.models:
                folds = train_clean_model(make_task_runner(config), data.images, clean, split,
                                          model1, profile, seed, cache)
                clean_model = combine_clean_folds(folds, data.num_images, cache)
                correction = correct_noisy_labels(clean_model, data.noisy_labels, clean, noise,
                                                  split, config.correction, config.threshold,
                                                  profile, cache)
                rounds = profile.self_training_rounds if profile.self_training else 0
                if rounds:
                    teacher_correction = correction.metrics
                for round_number in range(1, rounds + 1):
                    latest = train_students(make_task_runner(config), data.images, clean,
                                            split, correction, profile, seed, cache,
                                            teacher=folds[0].model,
                                            previous=latest or None)
                    students += latest
                    mixed = combine_students(clean_model, latest, split,
                                             profile.teacher_weight, cache,
                                             round_number=round_number,
                                             noisy_labels=data.noisy_labels, noise=noise,
                                             seed=seed)
                    correction = correct_noisy_labels(mixed, data.noisy_labels, clean, noise,
                                                      split, config.correction,
                                                      config.threshold, profile, cache,
                                                      evidence="students",
                                                      round_number=round_number)
                    round_corrections.append({**correction.metrics, **mixed.metrics})
                model2 = retrain_model2(data.images, clean, split, correction, model1, profile,
                                        seed, cache,
                                        student=latest[0].model if latest else None)
            models = [m for m, key in ((baseline, "baseline"), (model1, "model1"),
                                       (model2, "model2")) if m and key in config.models]
            scores = [score_model(m, data, clean, features, split, profile, cache)
                      for m in models]
            summary = PipelineSummary(
                run_name=name, profile=config.profile, data_hash=data.content_hash,
                dataset_dir=data.directory, cache_dir=str(Path(cache).resolve()),
                clean_labels_sha256=clean.sha256, config=config.model_dump(mode="json"),
                train_profile=profile.model_dump(mode="json"), counts=split.counts,
                noise=noise, clean_model=clean_model,
                correction=correction, teacher_correction=teacher_correction,
                round_corrections=round_corrections,
                students=students, models={m.name: m for m in models},
                scores={s.name: s for s in scores},
            )
            summary.stage_seconds = stage_seconds(STAGE_OF_TASK)
            run_dir, summary.outputs = publish_results(config.output_dir, config.runs_dir,
                                                       started, summary)
            summary.run_dir = str(run_dir)
            finish_tracking(tracker, summary, folds)
    get_run_logger().info("results in %s: %s", summary.run_dir, summary.headline())
    return summary
