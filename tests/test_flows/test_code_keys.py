"""Stage cache keys follow the code each stage runs and the profile fields it reads."""

import pytest

from relabel.config import PROFILES, TrainProfile
from relabel.flows import stages
from relabel.flows.code_keys import (
    FIELDS_OWNED_BY_STAGE,
    code_of,
    module_closure,
    profile_fields_for,
    stage_code_and_profile_key,
)


def test_a_stage_covers_the_task_modules_it_calls_and_nothing_it_does_not():
    functions, modules = code_of(stages.retrain_model2.fn)
    assert {"relabel.tasks.model2", "relabel.tasks.train", "relabel.tasks.models",
            "relabel.tasks.correct", "relabel.flows.artifacts"} <= set(modules)
    # Helpers in flows/stages.py it calls are part of its code; the decorator is not.
    assert {f.__name__ for f in functions} >= {"retrain_model2", "_keras_record",
                                               "_initial_model", "_correction"}
    assert "stage_name" not in {f.__name__ for f in functions}
    # The profile reaches the stage as values (keyed field by field), not as source.
    assert "relabel.config" not in modules
    _, correction = code_of(stages.correct_noisy_labels.fn)
    assert "relabel.tasks.correct" in correction and "relabel.tasks.train" not in correction


def test_imports_are_followed_transitively_without_importing_anything_heavy():
    import subprocess
    import sys

    script = ("import sys; from relabel.flows.code_keys import module_closure; "
              "c = module_closure('relabel.tasks.model2'); "
              "assert 'relabel.tasks.models' in c, c; "  # via relabel.tasks.train
              "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # A function name after a module is an attribute, not a module to hash.
    assert module_closure("relabel.tasks.train.predict_proba") == frozenset()


def test_each_stage_keys_only_the_profile_fields_that_can_change_it():
    fields = list(TrainProfile.model_fields)
    model1, model2 = profile_fields_for("model1", fields), profile_fields_for("model2", fields)
    assert "noisy_epochs" in model1 and "retrain_epochs" not in model1
    assert "retrain_epochs" in model2 and "noisy_epochs" not in model2
    assert "width" in model1 and "width" in model2  # shared fields count everywhere
    assert "name" not in model1  # two profiles with equal fields share their results
    owned = set().union(*FIELDS_OWNED_BY_STAGE.values())
    assert owned <= set(fields), owned - set(fields)  # no stale names after a rename


class _Task:
    def __init__(self, fn):
        self.fn = fn


class _Context:
    def __init__(self, fn):
        self.task = _Task(fn)


@pytest.mark.parametrize(("stage", "task", "field", "changes"), [
    ("model1", stages.train_model1, "retrain_epochs", False),
    ("model1", stages.train_model1, "noisy_epochs", True),
    ("model2", stages.retrain_model2, "retrain_epochs", True),
    ("model2", stages.retrain_model2, "width", True),
    ("clean-model", stages.train_clean_fold, "student_epochs", False),
])
def test_the_key_moves_with_the_fields_a_stage_reads(stage, task, field, changes):
    key = stage_code_and_profile_key(stage)
    profile = PROFILES["smoke"]
    other = profile.model_copy(update={field: getattr(profile, field) * 2})
    before = key(_Context(task.fn), {"profile": profile})
    after = key(_Context(task.fn), {"profile": other})
    assert (before != after) is changes
