"""The typed config rejects bad values with messages naming them; profiles and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from relabel.config import PROFILES, TIER_BUDGETS, PipelineConfig, TrainProfile


def test_defaults_validate_and_flatten() -> None:
    config = PipelineConfig()
    params = config.flat_params()
    assert params["profile"] == "demo" and params["train.name"] == "demo"  # never smoke
    assert all(isinstance(v, str) for v in params.values())
    assert set(PROFILES) == {"smoke", "demo", "cpu", "gpu"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("profile", "huge"), ("validation_size", 1.5), ("validation_size", -0.1),
     ("models", ["model3"]), ("models", []), ("threshold", 0.0), ("task_runner", "slurm"),
     ("seeds", 3)],
)
def test_bad_values_are_named(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        PipelineConfig(**{field: value})
    assert field in str(info.value)


def test_models_are_deduplicated_in_pipeline_order() -> None:
    assert PipelineConfig(models=["model2", "baseline", "model2"]).models == ["baseline", "model2"]


def test_profile_overrides_apply_typed_and_are_logged() -> None:
    config = PipelineConfig(profile="cpu", overrides={"retrain_epochs": "20", "tta": "false"})
    assert config.train.retrain_epochs == 20 and config.train.tta is False
    assert config.train.noisy_epochs == PROFILES["cpu"].noisy_epochs
    assert config.flat_params()["train.retrain_epochs"] == "20"
    assert PipelineConfig(profile="smoke").train == PROFILES["smoke"]


def test_auto_precision_is_resolved_in_the_trained_and_logged_profile() -> None:
    from relabel.hardware import resolve_precision

    config = PipelineConfig(profile="cpu")
    assert PROFILES["cpu"].precision == "auto" and config.requested_precision == "auto"
    assert config.train.precision == resolve_precision("auto") != "auto"
    assert config.flat_params()["train.precision"] == config.train.precision
    forced = PipelineConfig(profile="cpu", overrides={"precision": "float32"})
    assert forced.train.precision == "float32" and forced.requested_precision == "float32"


@pytest.mark.parametrize(("tier", "native"), [
    ("bfloat16", "mixed_bfloat16"), ("float32", "float32"), ("amx", "mixed_bfloat16")])
def test_cpu_profile_keeps_its_budget_on_each_compute_tier(
        tier: str, native: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import relabel.config

    monkeypatch.setattr(relabel.config, "machine_tier", lambda: tier)
    monkeypatch.setattr(relabel.config, "resolve_precision",
                        lambda requested: native if requested == "auto" else requested)
    trained = PipelineConfig(profile="cpu").train.model_dump()
    budget = TIER_BUDGETS.get(tier, {}).get("cpu", {})
    assert trained == {**PROFILES["cpu"].model_dump(), **budget, "precision": native}
    base = PROFILES["cpu"]
    # float32 narrows the network; AMX trains longer at full width; the Zen 5 is the base.
    assert (trained["width"] < base.width) == (tier == "float32")
    assert (trained["student_epochs"] > base.student_epochs) == (tier != "bfloat16")
    assert (trained["retrain_epochs"] > base.retrain_epochs) == (tier == "amx")
    assert trained["self_training_rounds"] == base.self_training_rounds == 1
    note = PipelineConfig(profile="cpu").precision_note()
    assert (f"on this hardware ({tier})" in note) == (tier != "bfloat16")
    assert ("width=0.375" in note) == (tier == "float32")
    # An explicit precision or field wins over the budget; other profiles have none.
    assert PipelineConfig(profile="cpu", overrides={"precision": "float32"}).train \
        == TrainProfile.model_validate({**base.model_dump(), "precision": "float32"})
    assert PipelineConfig(profile="cpu", overrides={"width": 0.5}).train.width == 0.5
    assert PipelineConfig(profile="cpu", overrides={"clean_epochs": 7}).train.clean_epochs == 7
    assert PipelineConfig(profile="gpu").train.width == PROFILES["gpu"].width


@pytest.mark.parametrize(("overrides", "message"), [
    ({"retrain_epoch": 3}, "no such profile field retrain_epoch"),
    ({"name": "x"}, "no such profile field name"),
    ({"width": "wide"}, "width"),
    ({"folds": 0}, "folds"),
])
def test_bad_overrides_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PipelineConfig(overrides=overrides)


@pytest.mark.parametrize(("fields", "message"), [
    ({"self_training": False, "student_init": "teacher"}, "student_init='teacher' needs"),
    ({"model1_width": 0.5, "retrain_init": "model1"}, "model1_width"),
    ({"self_training": False, "student_init": "scratch", "self_training_rounds": 2},
     "self_training_rounds > 1 needs"),
    ({"self_training": False, "student_init": "scratch", "neighbour_votes": 50},
     "neighbour_votes needs"),
])
def test_fields_that_need_another_field_say_so(fields: dict, message: str) -> None:
    base = PROFILES["cpu"].model_dump() | {"retrain_init": "scratch"}
    with pytest.raises(ValidationError, match=message):
        TrainProfile.model_validate(base | fields)


def test_demo_is_the_cpu_recipe_at_quarter_width_with_shorter_schedules() -> None:
    demo, cpu = PROFILES["demo"].model_dump(), PROFILES["cpu"].model_dump()
    # mixup pays only over the cpu profile's longer schedules
    sizes = ("name", "width", "model1_width", "mixup_alpha", "noisy_epochs", "clean_epochs",
             "student_epochs", "retrain_epochs")
    assert demo["width"] == 0.25 and demo["model1_width"] is None
    assert all(demo[k] <= cpu[k] for k in sizes[3:] if k != "clean_epochs")
    assert {k: v for k, v in demo.items() if k not in sizes} \
        == {k: v for k, v in cpu.items() if k not in sizes}


def test_gpu_is_the_cpu_recipe_with_longer_schedules() -> None:
    gpu, cpu = PROFILES["gpu"].model_dump(), PROFILES["cpu"].model_dump()
    schedules = ("noisy_epochs", "clean_epochs", "student_epochs", "retrain_epochs")
    assert all(gpu[k] > cpu[k] for k in schedules)
    assert gpu["model1_width"] is None and gpu["weight_decay"] == cpu["weight_decay"]
    assert {k: v for k, v in gpu.items() if k not in ("name", "model1_width", *schedules)} \
        == {k: v for k, v in cpu.items() if k not in ("name", "model1_width", *schedules)}


def test_derived_profiles_are_validated() -> None:
    from relabel.config import _derived

    with pytest.raises(ValidationError, match="student_init='teacher' needs"):
        _derived("cpu", name="broken", self_training=False, retrain_init="scratch")


def test_the_default_profile_is_demo_on_demo_data_and_cpu_elsewhere(tmp_path: Path) -> None:
    from relabel.config import default_profile
    from relabel.tasks.demodata import generate_demo_data

    demo = generate_demo_data(tmp_path / "demo", num_train=20, num_clean=10, num_test=2)
    assert default_profile(str(demo)) == "demo"
    (demo / "true_labels.csv").unlink()  # a user's dataset has no true labels
    assert default_profile(str(demo)) == "cpu"
    assert default_profile("s3://bucket/course") == "cpu"
