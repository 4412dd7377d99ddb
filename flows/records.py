"""The typed records the pipeline's tasks pass to each other: artifact references (path +
SHA-256, see flows/artifacts.py) and each stage's numbers. Small JSON, never arrays: Prefect
persists them as task results (see flows/policies.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from relabel.flows.artifacts import Artifact


class DatasetRef(BaseModel):
    """An ingested dataset: its content hash and one artifact per array."""

    content_hash: str
    directory: str
    images: Artifact
    noisy_labels: Artifact
    clean_labels: Artifact  # the dataset's own; see resolve_clean_labels for merged sets
    test_images: Artifact | None = None
    test_labels: Artifact | None = None
    summary: dict[str, Any] = {}


    @property
    def num_images(self) -> int:
        return int(self.summary["num_images"])


class SplitRef(BaseModel):
    """Image indices (0-based, tasks.split.plan_splits): clean-labelled training images
    (`train_idx`), the held-out validation images (never trained on; scores are reported on
    them), the images without a clean label used for training (`noisy_idx`; capped by the
    smoke profile), and k (train, holdout) folds of the clean training images."""

    train_idx: Artifact
    val_idx: Artifact
    noisy_idx: Artifact
    folds: list[tuple[Artifact, Artifact]]
    counts: dict[str, int]


class NoiseReport(BaseModel):
    """T[i, j] = P(noisy = j | true = i), estimated on the clean training images; per-class
    noise rates 1 - T[i, i]; and the two plots."""

    transition: Artifact
    noise_rates: dict[str, float]
    overall_noise_rate: float
    plots: dict[str, Artifact]


class FeaturesRef(BaseModel):
    """Colour-histogram features (int64 [n, 15]) of the training and test images."""

    train: Artifact
    test: Artifact | None = None


class TrainedModel(BaseModel):
    """A trained classifier. `metrics`: seconds, images_per_second, epochs, ...; `history`:
    per-epoch curves (loss, accuracy, val_accuracy, lr) for Keras models."""

    name: str
    kind: Literal["sklearn", "keras"]
    model: Artifact
    metrics: dict[str, float] = {}
    history: dict[str, list[float]] = {}


class FoldRef(BaseModel):
    """One clean-model fold: its model and its probabilities on its held-out clean images
    (out-of-fold) and on every image it did not train on or hold out."""

    fold: int
    model: TrainedModel
    holdout_idx: Artifact
    holdout_proba: Artifact
    predict_idx: Artifact
    predict_proba: Artifact


class StudentRef(BaseModel):
    """One cross-fitted student (tasks.self_training): trained on the clean labels and the
    corrected labels of noisy half `half`; its probabilities on the other half and on the
    validation images (`predict_idx`, `predict_proba`); with neighbour votes, the image
    ids [p, k] of each predicted image's nearest neighbours in its embedding."""

    half: int
    round_number: int = 1
    model: TrainedModel
    predict_idx: Artifact
    predict_proba: Artifact
    neighbour_idx: Artifact | None = None


class CorrectionRef(BaseModel):
    """Corrected labels of the images without a clean label (`noisy_idx`): soft `targets`
    float32 [n, 10], hard `labels`, `confidence`, and `keep` (rows Model II trains on).
    `metrics`: counts, and `validation_correction_accuracy`: how often the correction
    recovers the true label on the held-out validation images."""

    noisy_idx: Artifact
    targets: Artifact
    labels: Artifact
    confidence: Artifact
    keep: Artifact
    metrics: dict[str, float]


class ModelScores(BaseModel):
    """One model's scores (accuracy, macro_f1, per_class_f1; see tasks.evaluate) on the
    validation images (None in a production run, which has none) and, when the test folder
    has labels, on the test images; plus its predicted test labels (int64 [T])."""

    name: str
    validation: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    test_predictions: Artifact | None = None

    def heldout(self) -> tuple[str, dict[str, Any]] | None:
        """The score on clean images no training saw, for gating a model: the validation
        images', else the labelled test folder's (a production run); None without either."""
        if self.validation:
            return "validation", self.validation
        if self.test:
            return "test", self.test
        return None


class CleanModelRef(BaseModel):
    """The clean model's p(true label | image): `proba` float32 [N, 10] (out-of-fold on the
    clean training images, fold mean elsewhere, NaN rows where no fold predicted) and
    `fold_proba` float32 [F, N, 10] (each fold's own predictions, NaN where it made none;
    None for a one-model teacher: there is no disagreement to read). `metrics`: numbers of
    the step that made it (neighbour votes: their fitted temperature, weight, share)."""

    proba: Artifact
    fold_proba: Artifact | None = None
    metrics: dict[str, float] = {}


class PipelineSummary(BaseModel):
    """What a run produced: scores per model (validation, and test when labelled), each
    model's training numbers and curves, the noise estimate, the clean model's and the
    correction's outputs, and where the published files are. Everything a tracker needs."""

    run_name: str
    profile: str
    data_hash: str
    dataset_dir: str
    cache_dir: str
    clean_labels_sha256: str
    config: dict[str, Any]
    # The profile that trained: overrides applied, precision "auto" resolved for the machine.
    train_profile: dict[str, Any] = {}
    counts: dict[str, int]
    noise: NoiseReport
    clean_model: CleanModelRef | None = None
    correction: CorrectionRef | None = None  # the labels Model II trained on
    # With self-training: the teacher-only correction's metrics (what the students improved).
    teacher_correction: dict[str, float] = {}
    # Each self-training round's correction metrics, in order (the last: `correction`'s).
    round_corrections: list[dict[str, float]] = []
    students: list[StudentRef] = []  # every round's, in order
    models: dict[str, TrainedModel] = {}
    scores: dict[str, ModelScores] = {}
    outputs: dict[str, str] = {}
    run_dir: str = ""  # the run's folder (runs/<time>-<run name>/ unless --output-dir)
    stage_seconds: dict[str, float] = {}  # wall time per stage (flows.stages.STAGE_OF_TASK)

    def results_table(self) -> str:
        """Each model's accuracy, rounded, with its standard error: what a run ends with."""
        def cell(scores: dict[str, Any] | None) -> str:
            if not scores:
                return "-"
            n = sum(map(sum, scores["confusion"]))
            p = scores["accuracy"]
            return f"{100 * p:.1f}% ± {100 * (p * (1 - p) / max(n, 1)) ** 0.5:.1f}"

        with_val = any(s.validation for s in self.scores.values())
        with_test = any(s.test for s in self.scores.values())
        if self.scores and not (with_val or with_test):
            return ("no accuracy to report: a production run (validation_size 0) without a "
                    "labelled test folder has no held-out images; a run with a validation "
                    "split on the same data estimates it")
        header = ("model",) + (("validation (held-out clean)",) if with_val else ()) + (
            ("test folder",) if with_test else ())
        rows = [header] + [
            (name,) + ((cell(s.validation),) if with_val else ())
            + ((cell(s.test),) if with_test else ()) for name, s in self.scores.items()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                         for row in rows)

    def headline(self) -> dict[str, float]:
        """Validation (and test) accuracy per model: the numbers a person looks at first."""
        out = {f"{n} validation accuracy": s.validation["accuracy"]
               for n, s in self.scores.items() if s.validation}
        out.update({f"{n} test accuracy": s.test["accuracy"]
                    for n, s in self.scores.items() if s.test})
        return out
