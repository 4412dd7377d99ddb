"""One typed configuration for a whole run.

`PipelineConfig` is what the CLI, the Prefect flows and the benchmarks all take; it is
logged in full with every run. Training sizes live in named `TrainProfile`s so that a test
(`smoke`), this 2-core machine (`cpu`) and a GPU worker (`gpu`) run the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from relabel.constants import DEFAULT_CACHE_DIR, MODEL_KEYS, PROFILE_NAMES
from relabel.hardware import ComputeTier, machine_tier, precision_note, resolve_precision
from relabel.run_folders import DEFAULT_RUNS_DIR

ModelName = Literal[MODEL_KEYS]  # type: ignore[valid-type]
ProfileName = Literal[PROFILE_NAMES]  # type: ignore[valid-type]
# Display names (label_prediction.csv columns, reports), in pipeline order.
MODEL_TITLES: dict[str, str] = dict(zip(MODEL_KEYS, ("Baseline", "Model I", "Model II"),
                                        strict=True))


class TrainProfile(BaseModel):
    """Sizes and schedules of one training budget (see `PROFILES`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    architecture: Literal["airbench", "resnet9", "notebook_cnn"] = "airbench"
    width: float = Field(0.5, gt=0, description="channel-width multiplier of the network")
    model1_width: float | None = Field(
        None, gt=0, description="width multiplier of Model I, the noisy-labels-only "
        "comparison model (None: `width`); no other stage uses Model I unless an *_init "
        "field names it"
    )
    batch_size: int = Field(512, ge=8)
    folds: int = Field(
        1, ge=1, description="models of the clean model (the teacher): 1 = one model on all "
        "the clean training labels; k >= 2 = k-fold cross-fitting, each model on k-1 folds "
        "(out-of-fold predictions of the clean images, for `relabel review`)")
    clean_epochs: int = Field(16, ge=1, description="epochs of each clean-model fold")
    noisy_epochs: int = Field(8, ge=1, description="epochs of Model I on the noisy labels")
    retrain_epochs: int = Field(12, ge=1, description="epochs of Model II's retraining")
    learning_rate: float = Field(0.2, gt=0, description="peak SGD learning rate at batch 512")
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = Field(0.2, ge=0, lt=1)
    warmup_fraction: float = Field(0.15, ge=0, lt=1)
    tta: bool = True
    jit_compile: bool = Field(
        False, description="XLA-compile the training step (measured 1.5-2.5x slower on this "
        "CPU; XLA runs are seeded but not bit-deterministic)"
    )
    precision: Literal["auto", "float32", "mixed_bfloat16"] = Field(
        "float32", description="Keras dtype policy of the network; auto: mixed_bfloat16 where "
        "the hardware computes bfloat16 natively (AVX-512 BF16 or AMX CPUs, Ampere or newer "
        "GPUs), float32 elsewhere (emulated bfloat16 trains ~10x slower)"
    )
    clean_batch_size: int = Field(
        256, ge=8, description="batch of the clean-fold models (small sets: more steps)"
    )
    clean_translate_pixels: int = Field(
        2, ge=0, le=8, description="random translation (pixels) of the clean model's "
        "training images"
    )
    clean_cutout_pixels: int = Field(
        0, ge=0, le=16, description="side of the random square cut out of each of the clean "
        "model's training images (airbench96: 12); 0: off"
    )
    clean_init: Literal["scratch", "model1"] = Field(
        "scratch", description="the clean model starts from scratch or from Model I's "
        "weights; Model I saw the noisy labels the correction then counts a second time"
    )
    retrain_init: Literal["scratch", "model1", "student"] = Field(
        "scratch", description="Model II's retraining starts from scratch, from Model I or "
        "from the first self-training student (needs self_training)"
    )
    self_training: bool = Field(
        False, description="one round of cross-fitted self-training before Model II: two "
        "students, each on the clean labels + one half of the corrected noisy images, "
        "re-score the other half; the correction runs again on teacher + student"
    )
    student_epochs: int = Field(8, ge=1, description="epochs of each self-training student")
    self_training_rounds: int = Field(
        1, ge=1, le=4, description="rounds of self-training: each round after the first "
        "trains each half's student further (from its own weights of the round before) on "
        "the labels the round before corrected, and the correction runs again"
    )
    refine_epochs: int = Field(
        4, ge=1, description="epochs of each student in rounds 2 and later"
    )
    student_init: Literal["scratch", "teacher"] = Field(
        "scratch", description="each student starts from scratch or from the teacher's "
        "weights (the first clean-model fold: it saw clean labels only, so no noisy label "
        "is counted twice)"
    )
    teacher_weight: float | None = Field(
        None, ge=0, le=1, description="weight of the teacher in the geometric mix with a "
        "student's probabilities (0: the student alone; None: the weight that makes the "
        "noisy labels most likely, tasks/self_training.py `fit_teacher_weight`)"
    )
    neighbour_votes: int = Field(
        0, ge=0, description="self-training: each image a student judges also counts the "
        "noisy labels of its k nearest neighbours in that student's embedding (among the "
        "other half's images, never its own; tasks/neighbours.py) as evidence; 0: off (50 "
        "on the reference data: labels +0.1 to +0.75 points, Model II no better; README)"
    )
    keep_fraction: float = Field(
        1.0, gt=0, le=1, description="per class, the most confident share of corrected "
        "noisy images Model II trains on"
    )
    weight_by_confidence: bool = Field(
        False, description="weight each corrected noisy image by its posterior confidence"
    )
    ema_momentum: float | None = Field(
        None, gt=0, lt=1, description="keep an exponential moving average of the weights "
        "(e.g. 0.99 per step) and finish with it, BatchNorm statistics recomputed; None: off "
        "(0.99 on the reference data: Model II 87.60% against 87.70% without; README)"
    )
    mixup_alpha: float = Field(
        0.0, ge=0, description="mixup (tasks/train.py `mix_batch`) in the teacher, the "
        "students and Model II: each training image blended with another, lam ~ Beta(alpha, "
        "alpha), targets alike; 0: off (Model I never mixes: it is the plain comparison)"
    )
    retrain_mixup_alpha: float | None = Field(
        None, ge=0, description="Model II's mixup alpha (None: `mixup_alpha`)"
    )
    max_train_images: int | None = Field(
        None, ge=16, description="cap on noisy training images (smoke tests only)"
    )

    @model_validator(mode="after")
    def _student_needs_self_training(self) -> TrainProfile:
        if self.retrain_init == "student" and not self.self_training:
            raise ValueError("retrain_init='student' needs self_training=True (no student "
                             "is trained without it)")
        if self.student_init == "teacher" and not self.self_training:
            raise ValueError("student_init='teacher' needs self_training=True")
        if self.neighbour_votes and not self.self_training:
            raise ValueError("neighbour_votes needs self_training=True (the votes are read "
                             "in a student's embedding)")
        if self.self_training_rounds > 1 and not self.self_training:
            raise ValueError("self_training_rounds > 1 needs self_training=True")
        if self.model1_width is not None and "model1" in (self.clean_init, self.retrain_init):
            raise ValueError("model1_width: Model I initialises another stage here "
                             "(clean_init or retrain_init='model1'), so it must have `width`")
        return self


PROFILES: dict[str, TrainProfile] = {
    # Seconds: exercises every code path on demo data in tests.
    "smoke": TrainProfile(
        name="smoke", width=0.25, batch_size=128, folds=2, clean_epochs=2, noisy_epochs=1,
        retrain_epochs=2, tta=True, max_train_images=2000, clean_batch_size=128,
        self_training=True, student_epochs=1, student_init="teacher", model1_width=0.25,
        self_training_rounds=2, refine_epochs=1, neighbour_votes=10, mixup_alpha=0.4,
    ),
    # The 60-minute budget on a 2-core CPU for the 50,000-image reference set: full-width
    # airbench in bfloat16 where the CPU has AVX-512 BF16 (AMD EPYC Zen 5: ~1.7x float32).
    # Elsewhere "auto" trains in float32 (on a Zen 3 EPYC, AVX2, bfloat16 is emulated, 10x
    # slower than float32) and TIER_BUDGETS narrows the network to keep the hour; on a CPU
    # with AMX (~1.9x the Zen 5's images/s) TIER_BUDGETS lengthens the schedules instead.
    # Pilots on the reference data (2,000 validation images, SE ~0.8 points):
    # - teacher: one model from scratch on all 8,000 clean training labels, 24 epochs:
    #   82.1%, corrected labels 84.6% (a teacher fine-tuned from a half-data Model I at the
    #   same cost: 81.7% / 84.2%; the old 4 folds from Model I: 83.1%);
    # - self-training: a 10-epoch student on clean + half the corrected images: 84.4% on
    #   unseen images; the correction from teacher + student: 86.6-86.9%.
    # Students start from the teacher's weights (8 epochs instead of 7 from scratch: labels
    # 86.85% vs 85.6%). Model II starts from student 0 and gets 6 epochs. Model I is only
    # the "noisy labels alone" comparison here, so it runs at half width (4.6 min, 45.8%;
    # full width: 5.8 min, 59.9%) to pay for the longer students.
    # Weight decay: Keras decays decoupled, by lr * weight_decay per step, without momentum's
    # amplification, so 5e-4 is weak. Half-width teacher pilot (20 epochs, batch 256, the
    # same 2,000 validation images): weight_decay 5e-4 / 2e-3 / 5e-3 / 1e-2 / 2e-2 at
    # learning_rate 0.2 gave 80.0 / 80.55 / 80.95 / 81.55 / 82.1%; 1e-2 at 0.1: 78.1%.
    # 1e-2 for every stage: the students and Model II run at batch 512, twice the teacher's
    # step size, so their lr * weight_decay equals the pilot's best. The whole run with 2e-2
    # (`--set weight_decay=2e-2`): Model II 86.8% ± 0.8, labels 87.6%, teacher alone 86.3%:
    # no better than 1e-2 (87.4 / 87.45 / 86.1).
    # Shipped (relabel run, fresh cache): Model II 87.4% ± 0.7 held out, labels 87.45%, in
    # 54.8 min (the run before: 87.5%, 51.6 min); with weight_decay 5e-4: 85.6% ± 0.8 in
    # 52.8 min (earlier: 85.2%, 85.9%).
    # Mixup 0.4 in the teacher, the students and Model II (AMX Xeon, 2,000 validation
    # images): teacher pilots (40 epochs, 8,000 clean labels) gave corrected labels 85.60%
    # (alpha 0) / 87.25% (0.4) / 86.30% (1.0); the whole run (`--set mixup_alpha=0.4`):
    # labels 87.50% -> 89.20%, Model II 87.15% -> 88.10% (paired +0.95 +- 0.54); Model II
    # without mixup on the same labels (`--set retrain_mixup_alpha=0`): 88.20%.
    # The teacher's weight in the mix with the students is fitted to the noisy labels'
    # likelihood (`teacher_weight` None; tasks/self_training.py `fit_teacher_weight`). On
    # the mixup run's students (58.5 min, AMX Xeon) it chose 0 (the students alone): labels
    # 88.25% -> 88.60%, Model II 87.55% -> 87.90% (paired +0.35 +- 0.25) against the old 0.3.
    # The teacher's epochs pay most: on an AMD EPYC Zen 4 (bfloat16), a 40-epoch teacher and
    # 5-epoch students (`--set clean_epochs=40 --set student_epochs=5`) against 20 and 8, at
    # about the same wall time: the teacher alone 84.70-84.90% -> 86.85%, labels
    # 86.15-86.55% -> 87.90%, Model II 86.80-87.05% -> 87.70% +- 0.73. Without mixup the
    # 20-epoch teacher's labels were 84.75% (`--set mixup_alpha=0`): mixup neither helps
    # nor hurts it.
    "cpu": TrainProfile(
        name="cpu", width=1.0, batch_size=512, precision="auto", folds=1,
        model1_width=0.5, noisy_epochs=2, clean_epochs=40, clean_batch_size=256,
        clean_init="scratch", self_training=True, student_init="teacher", student_epochs=5,
        retrain_epochs=6, retrain_init="student", weight_decay=1e-2,
        mixup_alpha=0.4,
    ),
}


def _derived(base: str, **changes: Any) -> TrainProfile:
    """Profile `base` with `changes`, validated (pydantic's model_copy(update=) skips that)."""
    return TrainProfile.model_validate({**PROFILES[base].model_dump(), **changes})


# A GPU worker: the cpu recipe (the same weight decay, teacher, students and Model II from a
# student) with the schedules a GPU affords; unverified, no session has had a GPU yet.
# ~4.1 M image passes in all (Model I 42,000 x 10, teacher 8,000 x 60, two students
# ~29,000 x 30, Model II 50,000 x 30); the cpu run's Model II sees 0.3 M in 6 epochs.
PROFILES["gpu"] = _derived("cpu", name="gpu", model1_width=None, noisy_epochs=10,
                           clean_epochs=60, student_epochs=30, retrain_epochs=30)
# `make demo`: the cpu recipe (teacher, cross-fitted students, Model II from a student) at
# quarter width on 5,000 images: 97.2% on the demo test folder in 1.3 min in a fresh clone
# on a Zen 5 EPYC (bfloat16); 97.8% in 3 min on a Zen 3 (float32, no native bfloat16)
# (an earlier session measured 99.2% with this recipe; why they differ is not known yet).
# Shorter schedules miss 95%: a 20-epoch teacher gave 89.6%, 2-epoch students 95.0%.
# No mixup: at these schedules it cost the demo 3.6 points (94.6% against 98.2% on the test
# folder, AMX Xeon).
PROFILES["demo"] = _derived("cpu", name="demo", width=0.25, model1_width=None,
                            noisy_epochs=2, clean_epochs=30, student_epochs=5,
                            retrain_epochs=3, mixup_alpha=0.0)
PROFILES = {name: PROFILES[name] for name in PROFILE_NAMES}

# Profile fields that change with the hardware "auto" trains on (`relabel.hardware.
# compute_tier`) so that the profile keeps its time budget; the base profiles are sized for
# native bfloat16 vector units (the Zen 5). An explicit precision or field (`--set`) wins.
#
# float32 (no native bfloat16: an AVX2-only CPU such as a Zen 3 EPYC). The
# cpu recipe at full width in float32 trains at 113 images/s on a 2-core Zen 3 (2.5-3 h);
# at width 0.375 at 493 images/s, 0.5 at 264, 0.625 at 210 (`benchmarks/train_speed.py
# --configs airbench:0.375 airbench:0.5 --precisions float32 --xla off --steps 6`; 0.4375:
# 335, which would stretch the training stages to about an hour). Whole runs on the Zen 3
# (fresh cache, 2,000 held-out images):
# - width 0.5, the same schedules: 79.7 min, Model II 85.8% +- 0.8;
# - width 0.375 (Model I too), the same schedules: 41.3 min, Model II 83.55% +- 0.83,
#   labels 84.05%, the teacher alone 81.9%;
# - and a 30-epoch teacher, 10-epoch students (below): 43.0 min, Model II 84.35% +- 0.81,
#   labels 84.85%, the teacher alone 83.1%.
#
# amx (an Intel Xeon with AMX bfloat16 tiles, family 6 model 207): full width trains at
# 452-586 images/s in bfloat16 (`benchmarks/train_speed.py --configs airbench:1.0
# --precisions bfloat16 --xla off --steps 6`, one session: the speed varies by a quarter
# within the hour; the Zen 5 trained at ~307 in a whole run), so the schedules grow into the
# hour: a 40-epoch teacher, 10-epoch students, one self-training round, an 8-epoch Model II
# from student A. The same recipe's wall time moves by a third with the machine's phase,
# so the budget keeps a margin below the hour: one round took 42.2 and 44.7 min (Model II
# 87.70% and 87.10%); two rounds, 46.6 to 64.2 min (87.70-88.20%, within noise). Every
# whole run and pilot behind these choices (longer schedules, Model II from scratch,
# teacher cutout, test-time shifts, ensembles): README, "On an Intel Xeon with AMX".
TIER_BUDGETS: dict[ComputeTier, dict[str, dict[str, Any]]] = {
    "float32": {
        "cpu": {"width": 0.375, "model1_width": 0.375, "clean_epochs": 30,
                "student_epochs": 10},
    },
    "amx": {
        "cpu": {"student_epochs": 10, "retrain_epochs": 8},
    },
}


def default_profile(data: str) -> ProfileName:
    """The profile a run gets when none is named: `demo` on the generated demo data (the
    only dataset that ships its true labels, `true_labels.csv`), `cpu` on anything else."""
    if not data.startswith("s3://") and (Path(data) / "true_labels.csv").is_file():
        return "demo"
    return "cpu"


class PipelineConfig(BaseModel):
    """Everything a pipeline run depends on; two runs with equal configs and data agree."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(
        "demo-data", description="dataset folder, or s3://bucket/prefix holding the same layout"
    )
    output_dir: Path | None = Field(
        None, description="this run's folder, replaced as a whole; by default a new "
        "runs_dir/<time>-<run name>/ (runs_dir/latest points at the newest)")
    runs_dir: Path = Field(DEFAULT_RUNS_DIR, description="where each run gets its own folder")
    cache_dir: Path = Field(DEFAULT_CACHE_DIR, description="content-addressed artifacts")
    profile: ProfileName = "demo"
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="profile fields to change, e.g. {'retrain_epochs': "
        "20} (`relabel run --set retrain_epochs=20`)")
    seed: int = 0
    models: list[ModelName] = Field(default_factory=lambda: list(MODEL_KEYS))
    validation_size: float = Field(
        0.2, ge=0, lt=1, description="fraction of the clean labels held out from all training "
        "(their accuracy is the run's estimate); 0 = a production run: every clean label "
        "trains, and only a labelled test folder measures it")
    correction: Literal["posterior", "threshold"] = "posterior"
    threshold: float = Field(0.85, gt=0, lt=1, description="the old notebook's pseudo-label rule")
    task_runner: Literal["threads", "dask", "ray"] = "threads"
    dask_address: str | None = None
    ingest_workers: int | None = Field(None, ge=1)
    mlflow_experiment: str = "relabel"

    @field_validator("models")
    @classmethod
    def _models_unique(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"models: choose at least one of {', '.join(MODEL_KEYS)}")
        return sorted(set(value), key=MODEL_KEYS.index)

    @field_validator("overrides")
    @classmethod
    def _overrides_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(TrainProfile.model_fields) | ({"name"} & set(value)))
        if unknown:
            raise ValueError(f"overrides: no such profile field {', '.join(unknown)} (fields: "
                             f"{', '.join(f for f in TrainProfile.model_fields if f != 'name')})")
        typed = TrainProfile.model_validate({**PROFILES["smoke"].model_dump(), **value})
        return {key: getattr(typed, key) for key in value}

    @property
    def train(self) -> TrainProfile:
        """The profile with `overrides` applied (validated like the profile itself) and
        precision "auto" resolved for this machine, so that the logged config and the stage
        cache keys name the precision that actually trains."""
        return _derived(self.profile, **{
            **self.hardware_budget, **self.overrides,
            "precision": resolve_precision(self.requested_precision)})

    @property
    def hardware_budget(self) -> dict[str, Any]:
        """Profile changes that keep the time budget on this machine's compute tier (only
        where the precision is "auto"; `--set` fields win)."""
        if self.requested_precision != "auto":
            return {}
        changes = TIER_BUDGETS.get(machine_tier(), {}).get(self.profile, {})
        return {key: value for key, value in changes.items() if key not in self.overrides}

    def precision_note(self) -> str:
        """One log line: the training precision, why, and what the hardware tier changed."""
        note, budget = precision_note(self.requested_precision), self.hardware_budget
        if budget:
            changes = ", ".join(f"{key}={value}" for key, value in budget.items())
            note += (f"; to keep its time budget on this hardware ({machine_tier()}) the "
                     f"{self.profile} profile trains with {changes} (`--set` overrides)")
        return note

    @property
    def requested_precision(self) -> str:
        """The profile's precision before "auto" is resolved."""
        return self.overrides.get("precision", PROFILES[self.profile].precision)

    def flat_params(self) -> dict[str, str]:
        """The config and its profile as flat `key: str` pairs, for MLflow params."""
        params = {k: str(v) for k, v in self.model_dump(mode="json").items()}
        params.update({f"train.{k}": str(v) for k, v in self.train.model_dump().items()})
        return params
