"""MLflow tracking against a real `mlflow server` (SQLite backend) whose artifacts live on a
real S3-compatible store (SeaweedFS), both on 127.0.0.1 and started here.

A tracked run logs config, dataset, curves, scores, plots, reports and the model; the model
loads back from `models:/NAME@champion` and predicts class names; the promotion gate holds,
also under racing promotions; the artifact store dying mid-run gives a clear error and
leaves what was logged before intact.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import CHROMIUM, page_text_with, screenshot
from live_servers import MlflowServer, SeaweedFS

from relabel import CLASS_NAMES
from relabel.config import PROFILES, PipelineConfig

pytestmark = pytest.mark.slow
ARTIFACT_BUCKET = "mlflow-artifacts"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SeaweedFS, MlflowServer]]:
    root = tmp_path_factory.mktemp("servers")
    s3 = SeaweedFS(root / "weed", root / "weed.log")
    with s3:
        s3.client().create_bucket(Bucket=ARTIFACT_BUCKET)
        server = MlflowServer(root / "mlflow", f"s3://{ARTIFACT_BUCKET}/mlartifacts", s3.env)
        with server:
            yield s3, server


@pytest.fixture()
def tracking(servers, monkeypatch: pytest.MonkeyPatch) -> tuple[SeaweedFS, MlflowServer]:
    """Point this process at the server; the client needs no S3 credentials (the server
    proxies artifacts), and fails fast instead of retrying for minutes."""
    s3, server = servers
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    import mlflow

    mlflow.set_tracking_uri(server.uri)
    return s3, server


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real (tiny) Model II: 2 epochs of the smoke profile on 300 demo images."""
    from relabel.tasks.demodata import generate_demo_data
    from relabel.tasks.evaluate import evaluate
    from relabel.tasks.ingest import ingest
    from relabel.tasks.predict import predict_batch
    from relabel.tasks.train import save_model, train_classifier

    root = tmp_path_factory.mktemp("model")
    data_dir = generate_demo_data(root / "data", num_train=300, num_clean=100, num_test=40)
    result = ingest(data_dir, root / "cache")
    data = result.load(mmap=False)
    train, val = np.arange(0, 240), np.arange(240, 300)
    trained = train_classifier(data.images[train], data.noisy_labels[train], PROFILES["smoke"],
                               epochs=2, seed=0, eval_images=data.images[val],
                               eval_labels=data.noisy_labels[val])
    path = save_model(trained.model, root / "model2.keras")
    predicted = predict_batch(trained.model, data.test_images)
    return {"path": path, "result": trained, "data": data, "ingest": result,
            "evaluation": evaluate(data.test_labels, predicted), "predicted": predicted}


def _artifact_paths(client, run_id: str, folder: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, folder):
        found |= _artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_tracked_run_logs_everything_and_champion_serves(tracking, tiny_model, tmp_path):
    import mlflow

    from relabel import registry
    from relabel.tracking import Tracker

    s3, server = tracking
    config = PipelineConfig(data=str(tiny_model["ingest"].dataset_dir), profile="smoke")
    tracker = Tracker("test-everything")
    assert tracker.uri == server.uri
    summary = tiny_model["ingest"].summary
    parent = tracker.start_pipeline(config, "smoke-run", data_hash=summary["content_hash"],
                                    dataset_summary=summary)
    run = tracker.child_run("model2")
    result = tiny_model["result"]
    tracker.log_training(run, {"seconds": result.seconds, "epochs": result.epochs,
                               "images_per_second": result.images_per_second},
                         result.history, "Model II", tmp_path)
    tracker.log_evaluation(run, tiny_model["evaluation"], "test", "Model II", tmp_path)
    model_uri = registry.log_keras_classifier(run, tiny_model["path"])
    name = "test-everything-model2"
    version = registry.register_version(tracker.client, model_uri, run, 0.5, model_name=name)
    decision = registry.promote(tracker.client, version, 0.5, model_name=name)
    tracker.log_promotion(run, decision)
    tracker.end_run(run)
    tracker.finish()

    client = tracker.client
    parent_run = client.get_run(parent)
    # The full typed config, profile included, as params; the dataset as an input.
    for key, value in config.flat_params().items():
        assert parent_run.data.params[key] == value
    assert parent_run.data.params["data.num_images"] == "300"
    (dataset_input,) = parent_run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == summary["content_hash"][:32]
    assert parent_run.info.status == "FINISHED" and "wall_seconds" in parent_run.data.metrics
    # Per-epoch curves as step metrics.
    history = client.get_metric_history(run, "loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx(result.history["loss"])
    child = client.get_run(run)
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert child.data.metrics["test_accuracy"] == pytest.approx(
        tiny_model["evaluation"]["accuracy"])
    assert {f"test_f1.{c}" for c in CLASS_NAMES} <= set(child.data.metrics)
    assert child.data.metrics["promotion.new_heldout_accuracy"] == 0.5
    assert {"plots/model2_curves.png", "plots/test_confusion.png",
            "reports/test_classification_report.txt"} <= _artifact_paths(client, run)
    assert "promotion.json" in _artifact_paths(client, parent)
    # The artifacts really are on the S3 store behind the server.
    keys = [o["Key"] for o in s3.client().list_objects_v2(
        Bucket=ARTIFACT_BUCKET, Prefix="mlartifacts/").get("Contents", [])]
    assert any(k.endswith("plots/test_confusion.png") for k in keys)
    assert any(k.endswith("MLmodel") for k in keys)

    # The champion loads by alias and answers class names for raw uint8 images.
    champion = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    test_images = tiny_model["data"].test_images
    served = champion.predict(np.asarray(test_images[:16]))
    assert list(served) == [CLASS_NAMES[i] for i in tiny_model["predicted"][:16]]
    with pytest.raises(Exception, match="(?i)shape|uint8|tensor"):
        champion.predict(np.zeros((2, 28, 28, 3), np.uint8))
    # `relabel predict` / relabel.predict load the same champion through the registry.
    from relabel.serving import load_classifier, predict_images

    keras_champion, where = load_classifier(f"models:/{name}@champion")
    ids, _ = predict_images(np.asarray(test_images[:16]), keras_champion)
    assert list(ids) == list(tiny_model["predicted"][:16]) and name in where
    # The Keras flavour loads back as a Keras model for Keras users.
    (logged,) = [m for m in client.search_logged_models([tracker.experiment_id])
                 if m.source_run_id == run and m.name == "classifier-keras"]
    keras_model = mlflow.keras.load_model(logged.model_uri)
    assert keras_model.output_shape[-1] == len(CLASS_NAMES)


@pytest.fixture()
def model_uri(tracking, tiny_model) -> tuple:
    """One logged pyfunc to register as many versions as a test needs."""
    from relabel import registry
    from relabel.tracking import Tracker

    tracker = Tracker("test-registry")
    tracker.start_pipeline(PipelineConfig(), "registry-run")
    run = tracker.child_run("model2")
    uri = registry.log_keras_classifier(run, tiny_model["path"], keras_flavour=False)
    return tracker, run, uri


def test_promotion_gate(model_uri) -> None:
    from relabel import registry

    tracker, run, uri = model_uri
    client, name = tracker.client, "test-gate"

    def register_and_promote(metric: float) -> registry.PromotionDecision:
        version = registry.register_version(client, uri, run, metric, model_name=name)
        return registry.promote(client, version, metric, model_name=name)

    first = register_and_promote(0.50)
    assert first.alias == "champion" and first.champion_version is None
    worse = register_and_promote(0.40)
    assert worse.alias == "challenger"
    assert (worse.champion_version, worse.champion_value) == (first.version, 0.50)
    tie = register_and_promote(0.50)
    assert tie.alias == "challenger"  # must beat, not match
    better = register_and_promote(0.61)
    assert better.alias == "champion" and better.champion_value == 0.50
    assert client.get_model_version_by_alias(name, "champion").version == better.version
    assert client.get_model_version_by_alias(name, "challenger").version == tie.version
    # No lock left behind.
    assert not client.search_registered_models(f"name = '{name}{registry.LOCK_SUFFIX}'")


def test_a_production_run_is_gated_on_the_test_folder_or_left_to_a_person(model_uri) -> None:
    """validation_size 0: Model II has no validation score. A labelled test folder gates it;
    without one it is registered with no alias, and once a person promotes it, measured
    versions do not replace it automatically."""
    from relabel import registry
    from relabel.flows.records import ModelScores

    tracker, run, uri = model_uri
    client, name = tracker.client, "test-production"
    measured = tracker.register_model2(
        run, uri, ModelScores(name="Model II", test={"accuracy": 0.7}), model_name=name)
    assert measured.alias == "champion" and measured.new_value == 0.7
    unmeasured = tracker.register_model2(run, uri, ModelScores(name="Model II"),
                                         model_name=name)
    assert unmeasured is None
    (newest,) = [v for v in client.search_model_versions(f"name = '{name}'")
                 if int(v.version) == 2]
    assert not newest.aliases and registry.METRIC_TAG not in newest.tags
    assert client.get_run(run).data.tags["relabel.model_version"] == "2"
    client.set_registered_model_alias(name, "champion", "2")  # a person promotes it
    later = tracker.register_model2(
        run, uri, ModelScores(name="Model II", validation={"accuracy": 0.9}), model_name=name)
    assert later.alias == "challenger" and "no held-out score" in later.reason
    assert client.get_model_version_by_alias(name, "champion").version == "2"


class SlowChampionReads:
    """An MlflowClient that pauses after reading the champion alias: widens promote()'s
    read-decide-write window so that any race between promotions shows."""

    def __init__(self, client, pause: float) -> None:
        self._client, self._pause = client, pause

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def get_model_version_by_alias(self, *args, **kwargs):
        try:
            return self._client.get_model_version_by_alias(*args, **kwargs)
        finally:
            time.sleep(self._pause)


def _race(tracker, run, uri, name: str, metrics: list[float]) -> list:
    """Register one version per metric, then promote them all at once from threads, each
    through a client that pauses after reading the champion (SlowChampionReads)."""
    from relabel import registry

    client = tracker.client
    base = registry.register_version(client, uri, run, 0.30, model_name=name)
    registry.promote(client, base, 0.30, model_name=name)
    versions = [registry.register_version(client, uri, run, m, model_name=name)
                for m in metrics]
    barrier = threading.Barrier(len(versions))
    decisions: list = [None] * len(versions)
    errors: list[BaseException] = []

    def racer(k: int) -> None:
        try:
            barrier.wait(timeout=30)
            decisions[k] = registry.promote(SlowChampionReads(client, 0.4), versions[k],
                                            metrics[k], model_name=name)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(k,)) for k in range(len(versions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return decisions


def test_racing_promotions_do_not_both_win(model_uri) -> None:
    tracker, run, uri = model_uri
    client = tracker.client
    # Equally good versions racing: serially, the first wins and the rest tie -> challenger.
    decisions = _race(tracker, run, uri, "test-race", [0.9, 0.9, 0.9])
    winners = [d for d in decisions if d.promoted]
    assert len(winners) == 1
    assert client.get_model_version_by_alias("test-race", "champion").version == \
        winners[0].version
    # Different numbers racing: the best one ends as champion, whatever the order.
    decisions = _race(tracker, run, uri, "test-race-2", [0.7, 0.95, 0.8])
    champion = client.get_model_version_by_alias("test-race-2", "champion")
    assert champion.version == decisions[1].version


class _NoLock:
    """Stands in for PromotionLock to show what the lock prevents."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass


def test_promotions_race_without_the_lock(model_uri, monkeypatch) -> None:
    # The race of the test above with the lock taken out: several "winners". This is what
    # the lock prevents, and shows that the assertions above can fail.
    from relabel import registry

    tracker, run, uri = model_uri
    monkeypatch.setattr(registry, "PromotionLock", _NoLock)
    unlocked = _race(tracker, run, uri, "test-race-unlocked", [0.9, 0.9, 0.9])
    assert sum(d.promoted for d in unlocked) > 1


def test_stale_lock_is_broken(model_uri) -> None:
    from relabel import registry

    tracker, run, uri = model_uri
    client, name = tracker.client, "test-stale"
    crashed = registry.PromotionLock(client, name)
    crashed.acquire()  # a holder that died without releasing
    with pytest.raises(registry.PromotionLockTimeout, match="held by"):
        registry.PromotionLock(client, name, timeout=0.5).acquire()
    with registry.PromotionLock(client, name, timeout=5, stale_after=0.0):
        pass  # broke the stale lock, got it, released it
    assert not client.search_registered_models(f"name = '{name}{registry.LOCK_SUFFIX}'")


def test_artifact_store_dying_mid_run(tracking, tmp_path: Path) -> None:
    """S3 behind the server stops: logging an artifact fails with a clear error, metrics
    still land (SQLite), earlier artifacts survive, and logging works again after restart."""
    from relabel.tracking import Tracker, TrackingError

    s3, _ = tracking
    tracker = Tracker("test-s3-fault")
    tracker.start_pipeline(PipelineConfig(), "fault-run")
    run = tracker.child_run("model2")
    before = tmp_path / "before.txt"
    before.write_text("logged before the fault\n")
    tracker.log_file(run, before, "reports")
    s3.kill()
    try:
        after = tmp_path / "after.txt"
        after.write_text("logged during the fault\n")
        started = time.monotonic()
        with pytest.raises(TrackingError, match="storing artifact reports/after.txt") as info:
            tracker.log_file(run, after, "reports")
        print("error seen by the user:", info.value)
        assert time.monotonic() - started < 120
        tracker.log_metrics(run, {"still_tracked": 1.0})  # the tracking DB is unaffected
        tracker.end_run(run, "FAILED")
    finally:
        s3.start()
    client = tracker.client
    assert client.get_run(run).info.status == "FAILED"
    assert client.get_run(run).data.metrics["still_tracked"] == 1.0
    deadline = time.monotonic() + 60
    while True:  # SeaweedFS answers 500 until its volumes re-register after a restart
        try:
            local = client.download_artifacts(run, "reports/before.txt", str(tmp_path / "dl"))
            break
        except Exception:  # noqa: BLE001
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert Path(local).read_text() == "logged before the fault\n"
    tracker.log_file(run, after, "reports")
    assert "reports/after.txt" in _artifact_paths(client, run)


def test_pipeline_flow_tracks_a_complete_run(tracking, prefect_api, tmp_path, monkeypatch):
    """The real Prefect pipeline (smoke profile, tiny demo data) against the server: the run
    tree, metrics, artifacts and registry decision a user sees; `relabel compare` lists it."""
    import mlflow
    from typer.testing import CliRunner

    from relabel.cli import app
    from relabel.flows.pipeline import pipeline
    from relabel.registry import MODEL_NAME
    from relabel.tasks.demodata import generate_demo_data

    data_dir = generate_demo_data(tmp_path / "data", num_train=300, num_clean=150, num_test=40)
    config = PipelineConfig(data=str(data_dir), output_dir=tmp_path / "out",
                            cache_dir=tmp_path / "cache", profile="smoke",
                            mlflow_experiment="test-pipeline")
    summary = pipeline(config=config)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("test-pipeline")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    parent = by_name[summary.run_name]
    assert {"data", "noise", "clean-model", "clean-fold-0", "clean-fold-1", "correction",
            "self-training", "student-0", "student-1", "student-0-round-2",
            "student-1-round-2", "baseline", "model1", "model2"} <= set(by_name)
    # The correction Model II trained on, and the teacher-only one the students improved.
    assert "teacher_correction.validation_correction_accuracy" in parent.data.metrics
    assert by_name["student-1"].data.tags["relabel.half"] == "1"
    assert by_name["student-1-round-2"].data.tags["relabel.round"] == "2"
    assert "round_2_correction.validation_correction_accuracy" in \
        by_name["self-training"].data.metrics
    assert all(r.info.status == "FINISHED" for r in runs)
    assert parent.data.tags["prefect.flow_run_id"]
    assert parent.data.params["train.folds"] == "2"
    for model in ("baseline", "model1", "model2"):
        assert parent.data.metrics[f"{model}.validation_accuracy"] == pytest.approx(
            summary.scores[{"baseline": "Baseline", "model1": "Model I",
                            "model2": "Model II"}[model]].validation["accuracy"])
    assert 0 < parent.data.metrics["noise_rate"] < 1
    # Wall time per stage, from the flow's Prefect task runs.
    assert parent.data.metrics["model2.wall_seconds"] > 0
    assert by_name["model1"].data.metrics["wall_seconds"] > 0
    assert {"outputs/label_prediction.csv", "outputs/metrics.json", "plots/sample_grid.png",
            "promotion.json"} <= _artifact_paths(client, parent.info.run_id)
    assert {"plots/transition_matrix.png", "plots/noise_rates.png", "arrays/transition.npy"} \
        <= _artifact_paths(client, by_name["noise"].info.run_id)
    logged = {(m.source_run_id, m.name) for m in
              client.search_logged_models([experiment.experiment_id])}
    for stage, names in (("baseline", ["baseline"]), ("model1", ["classifier", "classifier-keras"]),
                         ("model2", ["classifier", "classifier-keras"])):
        assert {(by_name[stage].info.run_id, n) for n in names} <= logged
    model2 = by_name["model2"]
    assert [m.step for m in client.get_metric_history(model2.info.run_id, "loss")] == [1, 2]
    assert parent.data.tags["relabel.alias"] in ("champion", "challenger")
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    assert set(champion.predict(np.zeros((3, 32, 32, 3), np.uint8))) <= set(CLASS_NAMES)

    result = CliRunner().invoke(app, ["compare", "--experiment", "test-pipeline", "--json"])
    assert result.exit_code == 0, result.output
    assert summary.run_name in result.output and "model2 vali acc" in result.output

    # A rerun served from the cache logs a new pipeline run that links to the stage runs
    # (and models, registry versions) logged above instead of logging and registering copies;
    # its headline metrics are the same.
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    stage_runs = client.search_runs([experiment.experiment_id],
                                    filter_string="tags.`relabel.kind` = 'stage'")
    pipeline(config=config.model_copy(update={"output_dir": tmp_path / "out-again"}))
    newest = client.search_runs([experiment.experiment_id],
                                filter_string="tags.`relabel.kind` = 'pipeline'",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert newest.info.run_id != parent.info.run_id and newest.info.status == "FINISHED"
    for stage in ("data", "noise", "clean-model", "correction", "self-training", "baseline",
                  "model1", "model2"):
        assert newest.data.tags[f"relabel.stage_run.{stage}"] == by_name[stage].info.run_id
    assert newest.data.tags["relabel.model_uri"] == parent.data.tags["relabel.model_uri"]
    carried = [k for k in parent.data.metrics if k.startswith(
        ("count.", "noise_rate", "correction.", "teacher_correction.", "model2.validation"))
        and not k.endswith("wall_seconds")]  # this run's own times
    assert "model2.validation_accuracy" in carried and any(k.startswith("count.") for k in carried)
    for key in carried:
        assert newest.data.metrics[key] == pytest.approx(parent.data.metrics[key]), key
    assert len(client.search_runs([experiment.experiment_id],
                                  filter_string="tags.`relabel.kind` = 'stage'")) \
        == len(stage_runs)
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == len(versions)
    assert {(m.source_run_id, m.name) for m in
            client.search_logged_models([experiment.experiment_id])} == logged

    if CHROMIUM.is_file():
        _check_mlflow_ui(tracking[1].uri, experiment.experiment_id, parent, by_name, tmp_path)


def _check_mlflow_ui(uri: str, experiment_id: str, parent: Any, by_name: dict[str, Any],
                     tmp_path: Path) -> None:
    """What a user must see in the MLflow UI: the pipeline run, its child runs, its plots,
    and the registered model with its champion alias."""
    from relabel.registry import MODEL_NAME

    runs_page = f"{uri}/#/experiments/{experiment_id}/runs"
    text = page_text_with(tmp_path, runs_page, parent.info.run_name)
    assert parent.info.run_name in text, text[:3000]
    screenshot(tmp_path, runs_page, "mlflow-ui-runs", budget_ms=30000)
    run_page = f"{uri}/#/experiments/{experiment_id}/runs/{parent.info.run_id}"
    text = page_text_with(tmp_path, run_page, parent.info.run_name, "model2.validation_accuracy")
    assert parent.info.run_name in text and "model2.validation_accuracy" in text, text[:3000]
    for child in ("model2", "noise"):  # a child run's page names its parent run
        child_page = f"{uri}/#/experiments/{experiment_id}/runs/{by_name[child].info.run_id}"
        text = page_text_with(tmp_path, child_page, child, parent.info.run_name)
        assert child in text and parent.info.run_name in text, (child, text[:3000])
    artifacts_page = f"{run_page}/artifacts"
    text = page_text_with(tmp_path, artifacts_page, "plots", "outputs")
    assert "plots" in text and "outputs" in text, text[:3000]
    screenshot(tmp_path, f"{run_page}/artifacts/plots/sample_grid.png", "mlflow-ui-plots",
               budget_ms=30000)
    model_page = f"{uri}/#/models/{MODEL_NAME}"
    text = page_text_with(tmp_path, model_page, MODEL_NAME, "champion")
    assert MODEL_NAME in text and "champion" in text, text[:3000]
    screenshot(tmp_path, model_page, "mlflow-ui-registered-model", budget_ms=30000)


def _promote_in_process(uri: str, name: str, version: str, gate, results) -> None:
    """One racer process (module-level so `spawn` can import it)."""
    from mlflow import MlflowClient

    from relabel import registry

    client = MlflowClient(uri)
    gate.wait(timeout=180)  # all processes leave together, once each has imported mlflow
    decision = registry.promote(SlowChampionReads(client, 0.3), version, 0.9, model_name=name)
    results.put((version, decision.alias))


def test_racing_promotions_across_processes_on_sqlite(tmp_path: Path) -> None:
    """The embedded default store (SQLite file) shared by separate processes: the lock
    holds there too, and SQLite's own write locking produces no errors."""
    import multiprocessing

    from mlflow import MlflowClient

    from relabel import registry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("race", artifact_location=tmp_path.as_uri())
    run = client.create_run(experiment).info.run_id
    base = registry.register_version(client, f"runs:/{run}/m", run, 0.3, model_name="race")
    registry.promote(client, base, 0.3, model_name="race")
    versions = [registry.register_version(client, f"runs:/{run}/m", run, 0.9,
                                          model_name="race") for _ in range(3)]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    gate = context.Barrier(len(versions))
    processes = [context.Process(target=_promote_in_process,
                                 args=(uri, "race", v, gate, results)) for v in versions]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=180) for _ in processes]
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert sorted(alias for _, alias in outcomes) == ["challenger", "challenger", "champion"]
    (winner,) = [v for v, alias in outcomes if alias == "champion"]
    assert str(client.get_model_version_by_alias("race", "champion").version) == winner


def test_experiment_artifacts_directly_on_s3(servers, tmp_path, monkeypatch) -> None:
    """No tracking server: SQLite store here, artifacts written by the client straight to an
    S3 experiment location, endpoint taken from the standard AWS_ENDPOINT_URL."""
    from relabel.tracking import Tracker

    s3, _ = servers
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL")
    monkeypatch.setenv("RELABEL_MLFLOW_ARTIFACTS", f"s3://{ARTIFACT_BUCKET}/direct/")
    tracker = Tracker("direct-s3", uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.artifact_location == f"s3://{ARTIFACT_BUCKET}/direct"
    run = tracker.start_pipeline(PipelineConfig(), "direct")
    tracker.log_text(run, "hello from the client\n", "notes/hello.txt")
    body = s3.client().get_object(
        Bucket=ARTIFACT_BUCKET, Key=f"direct/{run}/artifacts/notes/hello.txt")["Body"].read()
    assert body == b"hello from the client\n"


def test_mlflow_ui_command_serves_on_loopback(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import urllib.request

    from live_servers import free_ports

    port = free_ports(1)[0]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    relabel_cli = Path(sys.executable).parent / "relabel"
    process = subprocess.Popen([str(relabel_cli), "mlflow-ui", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()[-2000:]
                assert time.monotonic() < deadline, "mlflow ui did not start"
                time.sleep(0.5)
    finally:
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def test_failed_flow_hook_closes_open_runs(tmp_path: Path, monkeypatch) -> None:
    """A flow that dies mid-run must not leave its MLflow runs 'RUNNING' forever; runs of
    other flow runs are left alone."""
    from types import SimpleNamespace

    from relabel.tracking import Tracker, mark_failed_hook

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracker = Tracker("hooks")
    parent = tracker.start_pipeline(PipelineConfig(mlflow_experiment="hooks"), "dies",
                                    tags={"prefect.flow_run_id": "flow-run-1"})
    child = tracker.child_run("model1")
    other = Tracker("hooks")
    bystander = other.start_pipeline(PipelineConfig(), "lives",
                                     tags={"prefect.flow_run_id": "flow-run-2"})
    flow_run = SimpleNamespace(id="flow-run-1",
                               parameters={"config": {"mlflow_experiment": "hooks"}})
    mark_failed_hook(None, flow_run, None)
    client = tracker.client
    assert client.get_run(parent).info.status == "FAILED"
    assert client.get_run(child).info.status == "FAILED"
    assert client.get_run(bystander).info.status == "RUNNING"


def test_tracking_server_not_answering_is_a_fast_clear_error(monkeypatch) -> None:
    from live_servers import free_ports

    from relabel.tracking import Tracker, TrackingError

    port = free_ports(1)[0]  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    # Raised by the /health pre-flight, before MLflow's client would retry for minutes.
    with pytest.raises(TrackingError, match=f"127.0.0.1:{port} is not answering.*"
                                            "RELABEL_TRACKING=off"):
        Tracker("unreachable")
