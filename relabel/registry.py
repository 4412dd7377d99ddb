"""Models in MLflow: logging a Keras classifier (Keras flavour + an image->class-name pyfunc),
registering Model II, and promoting it to `champion` only when it is better.

Promotion gate
--------------
Every registered version carries its held-out clean metric as a version tag
(`relabel.heldout_accuracy`: accuracy on the validation images with clean labels, which
no model trains on; in a production run, which has none, on the labelled test folder). A
new version gets alias `champion` only if that number is strictly higher than the current
champion's (the first version is champion by default); otherwise it gets `challenger`. A
version nothing held out measured gets no tag and no alias: a person promotes it, and
while it is champion no measured version replaces it automatically. The decision, both
numbers and the lock holder are returned as a `PromotionDecision` and logged to the run by
the tracker.

The promotion lock
------------------
"Read the champion's number, compare, move the alias" is a read-modify-write: two pipelines
finishing at once could both read the old champion, both decide they win, and both report
"champion" while the alias ends on whichever wrote last (possibly the worse one). MLflow
has no compare-and-set on aliases, so the critical section is guarded by a lock built on the
one atomic primitive every MLflow backend (SQL store, REST server, Databricks) offers:
**creating a registered model whose name already exists fails** (unique name; the server
answers RESOURCE_ALREADY_EXISTS). The lock is the registered model `<name>.promotion-lock`:

- acquire: `create_registered_model(lock)`; on RESOURCE_ALREADY_EXISTS, poll with jittered
  exponential backoff until `timeout` (then raise `PromotionLockTimeout`);
- the lock records its holder (host, pid, random token) and acquisition time as tags;
- release: delete the lock model, only if it still carries our token;
- a crashed holder cannot wedge promotions forever: a lock older than `stale_after` seconds
  is broken (deleted) and the acquire retried; creation is still atomic, so two waiters that
  break the same stale lock cannot both get it.

Because the decision is re-read *inside* the lock, the outcome of any set of concurrent
promotions equals some serial order of them: at most one of several equally good versions
becomes champion, and the final champion has the best metric seen.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import random
import socket
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import relabel.tasks
from relabel.constants import CLASS_NAMES, IMAGE_SHAPE

log = logging.getLogger(__name__)

MODEL_NAME = "relabel-model2"
CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_TAG = "relabel.heldout_accuracy"
LOCK_SUFFIX = ".promotion-lock"
PACKAGE_DIR = Path(__file__).resolve().parent  # relabel/
# Where relabel.tasks is imported from: ../tasks in a checkout (pyproject's package-dir maps
# it), relabel/tasks/ in a wheel install. Never PACKAGE_DIR.parent / "tasks": in a wheel
# install that is site-packages/tasks, missing or someone else's package.
TASKS_DIR = Path(relabel.tasks.__file__).resolve().parent


def _serving_code(folder: Path) -> Path:
    """The `relabel` package as a serving environment imports it: relabel/ with the task
    modules as relabel/tasks/, wherever they are installed. Flows are not needed to
    predict."""
    import shutil

    compiled = shutil.ignore_patterns("__pycache__", "*.pyc")

    def ignore(directory: str, names: list[str]) -> set[str]:
        # A wheel install has tasks/ and flows/ inside the package: tasks/ is copied once,
        # below, and flows/ not at all.
        skipped = set(compiled(directory, names))
        if Path(directory) == PACKAGE_DIR:
            skipped |= {"tasks", "flows"} & set(names)
        return skipped

    target = folder / "relabel"
    shutil.copytree(PACKAGE_DIR, target, ignore=ignore)
    shutil.copytree(TASKS_DIR, target / "tasks", ignore=compiled)
    return target


class PromotionLockTimeout(TimeoutError):
    """Another promotion held the lock for longer than we were willing to wait."""


@dataclass(frozen=True)
class PromotionDecision:
    """What the gate decided for one version, and on which numbers."""

    model_name: str
    version: str
    alias: str  # "champion" or "challenger"
    metric_name: str
    new_value: float
    champion_version: str | None  # the champion before this decision (None: first version)
    champion_value: float | None
    reason: str

    @property
    def promoted(self) -> bool:
        return self.alias == CHAMPION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------ the pyfunc


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Raw RGB images uint8 [n, 32, 32, 3] in, class names ("cat", ...) out.

    Wraps the Keras model (artifact `keras_model`, a .keras file) with the project's own
    prediction code (`tasks.predict.predict_batch`, shipped in the model's `code/`), so
    `mlflow models serve` and `mlflow.pyfunc.load_model(...).predict` answer exactly like
    the pipeline's predictions, test-time augmentation included.
    """

    # The input is a uint8 tensor described by the logged signature; MLflow's type-hint
    # validation of predict() cannot express that (and warns when there are no hints).
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from relabel.tasks.train import load_model

        self._model = load_model(context.artifacts["keras_model"])

    @property
    def keras_model(self) -> Any:
        """The wrapped Keras model (logits out), for callers that want probabilities."""
        return self._model

    def predict(self, context, model_input, params=None):
        from relabel.tasks.predict import predict_batch

        images = np.asarray(model_input)
        if images.dtype != np.uint8:
            # JSON from `mlflow models serve` arrives as numbers; refuse anything lossy.
            if images.size and (images.min() < 0 or images.max() > 255
                                or not np.all(np.equal(np.mod(images, 1), 0))):
                raise ValueError("images: expected integer pixel values 0..255 (uint8 RGB)")
            images = images.astype(np.uint8)
        indices = predict_batch(self._model, images, tta=bool((params or {}).get("tta", True)))
        return np.asarray(CLASS_NAMES, dtype=object)[indices]


# The pyfunc is logged as MLflow "models from code": this script (run when the model loads)
# plus the relabel code beside it, not a pickled ImageClassifier. The logged model is then
# readable source, and MLflow no longer warns on every log_model that unpickling it may run
# arbitrary code.
_MODEL_CODE = '''"""relabel's image classifier as an MLflow pyfunc (models from code)."""
import mlflow

from relabel.registry import ImageClassifier

mlflow.models.set_model(ImageClassifier())
'''


def image_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *IMAGE_SHAPE))]),
        outputs=Schema([ColSpec(DataType.string, "label")]),
        params=ParamSchema([ParamSpec("tta", DataType.boolean, True)]),
    )


def image_example() -> np.ndarray:
    """A valid input of the logged pyfunc (one black image), saved with the model as its
    serving example. MLflow predicts it once while logging (a warning if the logged model
    cannot answer), and warns on every log_model that has none."""
    return np.zeros((1, *IMAGE_SHAPE), np.uint8)


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged model, stated explicitly: letting MLflow infer them
    loads the model in a subprocess (~10 s each time)."""
    names = ("mlflow", "tensorflow", "keras", "numpy", "pydantic", "cloudpickle")
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def log_keras_classifier(run_id: str, keras_path: str | os.PathLike[str],
                         name: str = "classifier", keras_flavour: bool = True,
                         tracking_uri: str | None = None) -> str:
    """Log a trained .keras model to `run_id`: as the `keras` flavour (`<name>-keras`, for
    Keras users) and as the image->class-name pyfunc (`<name>`, for serving). Returns the
    pyfunc's model URI (what `register_and_promote` registers).

    Uses the fluent API inside `start_run(run_id=...)`: the active run is per thread, so
    this is safe from any Prefect worker thread as long as the run id is explicit.
    """
    keras_path = Path(keras_path)
    if not keras_path.is_file():
        raise FileNotFoundError(f"{keras_path}: no such model file")
    if tracking_uri:  # the fluent API must write where the caller's client writes
        mlflow.set_tracking_uri(tracking_uri)
    signature = image_signature()
    requirements = pip_requirements()
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        if keras_flavour:
            from mlflow import keras as mlflow_keras

            from relabel.tasks.train import load_model

            keras_signature = mlflow.models.ModelSignature(inputs=signature.inputs)
            # No input_example: mlflow.keras.log_model(input_example=...) fails in 3.17.2.
            mlflow_keras.log_model(load_model(keras_path), name=f"{name}-keras",
                                   signature=keras_signature, pip_requirements=requirements)
        with tempfile.TemporaryDirectory(prefix="relabel-code-") as staging:
            model_code = Path(staging) / "image_classifier.py"
            model_code.write_text(_MODEL_CODE)
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(model_code),
                artifacts={"keras_model": str(keras_path)},
                code_paths=[str(_serving_code(Path(staging)))],
                signature=signature,
                input_example=image_example(),
                pip_requirements=requirements,
            )
    return info.model_uri


def log_sklearn_model(run_id: str, joblib_path: str | os.PathLike[str], name: str = "baseline",
                      tracking_uri: str | None = None) -> str:
    """Log the baseline (a scikit-learn estimator saved with joblib; input: the int64 [n, 15]
    colour-histogram features of tasks.features) in the sklearn flavour; returns its URI."""
    import joblib
    from mlflow import sklearn as mlflow_sklearn

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    requirements = [f"{n}=={importlib.metadata.version(n)}"
                    for n in ("mlflow", "scikit-learn", "numpy", "joblib")]
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        info = mlflow_sklearn.log_model(joblib.load(joblib_path), name=name,
                                        pip_requirements=requirements)
    return info.model_uri


# ---------------------------------------------------------------------- the lock


class PromotionLock:
    """Cross-process, cross-host mutex for one registered model's aliases (see module doc)."""

    def __init__(self, client: MlflowClient, model_name: str, timeout: float = 120.0,
                 stale_after: float = 600.0) -> None:
        self.client, self.name = client, model_name + LOCK_SUFFIX
        self.timeout, self.stale_after = timeout, stale_after
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        while True:
            try:
                self.client.create_registered_model(
                    self.name,
                    tags={"relabel.lock_holder": self.token,
                          "relabel.lock_acquired_at": f"{time.time():.3f}"},
                    description="Held while a relabel run promotes a model version. Safe "
                                "to delete only if no promotion is running.",
                )
                return
            except MlflowException as exc:
                # On SQL stores a losing insert is reported by re-reading the lock; if the holder
                # released it in between, that read says "does not exist": lost race, retry.
                if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                    raise
            self._break_if_stale()
            if time.monotonic() > deadline:
                raise PromotionLockTimeout(
                    f"{self.name}: held by {self._holder()} for more than {self.timeout:.0f} "
                    "s; another promotion is running or crashed (the lock is broken "
                    f"automatically after {self.stale_after:.0f} s)")
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)

    def _holder(self) -> str:
        try:
            return self.client.get_registered_model(self.name).tags.get(
                "relabel.lock_holder", "?")
        except MlflowException:
            return "nobody (just released)"

    def _break_if_stale(self) -> None:
        try:
            lock = self.client.get_registered_model(self.name)
        except MlflowException:
            return  # released meanwhile
        acquired = float(lock.tags.get("relabel.lock_acquired_at", "0") or 0)
        if time.time() - acquired > self.stale_after:
            log.warning("breaking stale promotion lock %s held by %s since %.0f s", self.name,
                        lock.tags.get("relabel.lock_holder"), time.time() - acquired)
            try:
                self.client.delete_registered_model(self.name)
            except MlflowException:
                pass  # someone else broke it first

    def release(self) -> None:
        try:
            lock = self.client.get_registered_model(self.name)
        except MlflowException:
            log.warning("promotion lock %s vanished while held (broken as stale?)", self.name)
            return
        if lock.tags.get("relabel.lock_holder") == self.token:
            self.client.delete_registered_model(self.name)
        else:
            log.warning("promotion lock %s was taken over by %s; not deleting it", self.name,
                        lock.tags.get("relabel.lock_holder"))

    def __enter__(self) -> PromotionLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------- the gate


def _version_metric(client: MlflowClient, name: str, version: str) -> float | None:
    raw = client.get_model_version(name, version).tags.get(METRIC_TAG)
    return None if raw is None else float(raw)


def register_version(client: MlflowClient, model_uri: str, run_id: str, metric: float | None,
                     model_name: str = MODEL_NAME) -> str:
    """Register `model_uri` under `model_name` with its held-out metric as a version tag
    (none when no held-out images measured it)."""
    try:
        client.create_registered_model(
            model_name, description="relabel Model II: CIFAR-style classifier trained on "
            "corrected noisy labels. Alias `champion` = best held-out clean accuracy so far.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # MLflow 3 logged models ("models:/m-<id>") are registered by id, as mlflow.register_model
    # does; the server refuses the bare URI as a source otherwise.
    model_id = model_uri.split("/", 1)[1] if model_uri.startswith("models:/m-") else None
    version = client.create_model_version(
        model_name, model_uri, run_id=run_id,
        tags={} if metric is None else {METRIC_TAG: repr(float(metric))},
        model_id=model_id)
    return str(version.version)


def promote(client: MlflowClient, version: str, metric: float, model_name: str = MODEL_NAME,
            lock_timeout: float = 120.0) -> PromotionDecision:
    """Give `version` alias champion if `metric` beats the champion's, else challenger.

    `metric`: held-out clean accuracy of this version (higher is better). The decision is
    made under `PromotionLock`, so racing promotions cannot both read the old champion.
    """
    guard = PromotionLock(client, model_name, timeout=lock_timeout)
    guard.acquire()
    try:
        try:
            current = client.get_model_version_by_alias(model_name, CHAMPION)
            champion_version: str | None = str(current.version)
            champion_value = _version_metric(client, model_name, champion_version)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE",
                                      "NOT_FOUND"):
                raise
            champion_version, champion_value = None, None
        if champion_version is None:
            alias, reason = CHAMPION, "first registered version: champion by default"
        elif champion_version == str(version):
            alias, reason = CHAMPION, "already the champion"
        elif champion_value is None:
            # Only a person gives an unmeasured version (a production run's) the alias.
            alias = CHALLENGER
            reason = (f"champion v{champion_version} has no held-out score (a person promoted "
                      "it): a measured version does not replace it automatically")
        elif metric > champion_value:
            alias = CHAMPION
            reason = (f"held-out accuracy {metric:.4f} beats champion v{champion_version}'s "
                      f"{champion_value:.4f}")
        else:
            alias = CHALLENGER
            reason = (f"held-out accuracy {metric:.4f} does not beat champion "
                      f"v{champion_version}'s {champion_value:.4f}")
        client.set_registered_model_alias(model_name, alias, str(version))
        decision = PromotionDecision(model_name, str(version), alias, METRIC_TAG, float(metric),
                                     champion_version, champion_value, reason)
        client.set_model_version_tag(model_name, str(version), "relabel.promotion",
                                     json.dumps(decision.as_dict(), sort_keys=True))
    finally:
        guard.release()
    log.info("%s v%s -> %s (%s)", model_name, version, alias, reason)
    return decision
