"""Stage cache keys follow the code each stage runs and the profile fields it reads."""

import pytest

from relabel.config import PROFILES
from relabel.flows import stages
from relabel.flows.code_keys import (
    PROFILE_FIELDS,
    code_of,
    module_closure,
    profile_fields_read,
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


def test_each_stage_keys_only_the_profile_fields_its_code_reads():
    model1 = set(profile_fields_read(stages.train_model1.fn))
    students = set(profile_fields_read(stages.train_student.fn))
    model2 = set(profile_fields_read(stages.retrain_model2.fn))
    correction = set(profile_fields_read(stages.correct_noisy_labels.fn))
    assert {"noisy_epochs", "model1_width", "width"} <= model1
    assert not {"retrain_epochs", "student_epochs", "clean_epochs"} & model1
    assert "student_epochs" in students and "retrain_epochs" not in students
    assert {"retrain_epochs", "width", "learning_rate"} <= model2
    assert not {"noisy_epochs", "student_epochs"} & model2
    assert correction == {"keep_fraction"}  # no training field reaches the correction
    assert "name" not in model1 | model2  # equal fields share their results
    assert model1 | model2 <= PROFILE_FIELDS


def _reads_the_profile_by_name(profile, field):
    return getattr(profile, field)


def test_code_that_reads_the_profile_by_name_is_keyed_on_every_field():
    assert set(profile_fields_read(_reads_the_profile_by_name)) == PROFILE_FIELDS


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
    ("self-training", stages.train_student, "retrain_epochs", False),
    ("self-training", stages.train_student, "student_epochs", True),
])
def test_the_key_moves_with_the_fields_a_stage_reads(stage, task, field, changes):
    key = stage_code_and_profile_key(stage)
    profile = PROFILES["smoke"]
    other = profile.model_copy(update={field: getattr(profile, field) * 2})
    before = key(_Context(task.fn), {"profile": profile})
    after = key(_Context(task.fn), {"profile": other})
    assert (before != after) is changes
