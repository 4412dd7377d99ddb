"""Cross-fitted self-training: halves, the teacher/student mix, and a real student."""

import numpy as np
import pytest

from relabel.config import PROFILES
from relabel.tasks.demodata import generate_demo_data
from relabel.tasks.ingest import ingest
from relabel.tasks.self_training import (
    StudentResult,
    combine_students,
    fit_teacher_weight,
    mix_probabilities,
    split_in_halves,
    train_student,
)
from relabel.tasks.split import plan_splits


def test_halves_are_disjoint_complete_and_seeded():
    noisy = np.arange(100, 301)
    a, b = split_in_halves(noisy, seed=3)
    assert np.intersect1d(a, b).size == 0
    np.testing.assert_array_equal(np.union1d(a, b), noisy)
    assert abs(a.size - b.size) <= 1 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, split_in_halves(noisy, seed=3)[0])
    assert not np.array_equal(a, split_in_halves(noisy, seed=4)[0])


def test_mix_is_a_normalised_geometric_mean():
    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    student = np.array([[0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(mix_probabilities(teacher, student, 1.0), teacher)
    np.testing.assert_allclose(mix_probabilities(teacher, student, 0.0), student)
    half = mix_probabilities(teacher, student, 0.5)
    np.testing.assert_allclose(half.sum(1), 1.0)
    assert half[0, 0] == pytest.approx(half[0, 1])  # symmetric disagreement: a tie
    np.testing.assert_allclose(half[1], teacher[1])  # agreement stays
    with pytest.raises(ValueError, match="teacher_weight"):
        mix_probabilities(teacher, student, 1.5)


def _student(half: int, idx: list[int], value: float) -> StudentResult:
    proba = np.full((len(idx), 10), (1 - value) / 9, np.float32)
    proba[:, half] = value
    return StudentResult(half=half, predict_idx=np.array(idx), predict_proba=proba,
                         train=None)


def test_each_image_gets_the_student_that_never_saw_it_and_validation_gets_student_0():
    teacher = np.full((8, 10), 0.1, np.float32)
    teacher[7] = np.nan  # an image nobody scored stays unscored
    val = np.array([6])
    # student 0 trained on half {0, 1}: scores {2, 3} and val; student 1 the reverse.
    students = [_student(0, [2, 3, 6], 0.9), _student(1, [0, 1, 6], 0.9)]
    mixed = combine_students(teacher, students, val, teacher_weight=0.0)
    assert mixed[2].argmax() == 0 and mixed[3].argmax() == 0  # student 0's view
    assert mixed[0].argmax() == 1 and mixed[1].argmax() == 1  # student 1's view
    assert mixed[6].argmax() == 0  # validation: student 0 only
    np.testing.assert_array_equal(mixed[4:6], teacher[4:6])  # clean images: the teacher
    assert np.isnan(mixed[7]).all()
    with pytest.raises(ValueError, match="one student per half"):
        combine_students(teacher, students[:1], val, 0.3)


def _noisy_world(n: int, seed: int):
    """True labels, noisy labels drawn through a 60%-symmetric T, T itself, and two models:
    a calibrated one, right for 80% of the images (0.8 on its answer), and one that guesses
    (Dirichlet noise)."""
    rng = np.random.default_rng(seed)
    transition = np.full((10, 10), 0.6 / 9)
    np.fill_diagonal(transition, 0.4)
    truth = rng.integers(0, 10, n)
    noisy = np.array([rng.choice(10, p=transition[y]) for y in truth])
    answer = np.where(rng.random(n) < 0.8, truth, rng.integers(0, 10, n))
    knows = np.full((n, 10), 0.2 / 9)
    knows[np.arange(n), answer] = 0.8
    guesses = rng.dirichlet(np.ones(10), n)
    return truth, noisy, transition, knows, guesses


def test_the_fitted_teacher_weight_follows_the_model_that_explains_the_noisy_labels():
    n = 3000
    _, noisy, transition, knows, guesses = _noisy_world(n, seed=0)
    val = np.arange(2900, n)
    halves = [np.arange(0, 1450), np.arange(1450, 2900)]

    def fit(teacher, student):
        students = [StudentResult(half=h, predict_idx=np.concatenate([halves[1 - h], val]),
                                  predict_proba=np.concatenate([student[halves[1 - h]],
                                                                student[val]]), train=None)
                    for h in range(2)]
        return fit_teacher_weight(teacher, students, val, noisy, transition)

    # On 2,900 images the likelihood is flat near the optimum: a guessing teacher may keep
    # a small weight (0.2 for some seeds), never most of it.
    weight, nll = fit(guesses, knows)
    assert weight <= 0.25 and nll[weight] == min(nll.values()) < nll[1.0]
    assert fit(knows, guesses)[0] >= 0.75
    teacher = knows.copy()
    teacher[val] = np.nan  # the validation images never enter the fit
    assert fit(teacher, guesses)[0] >= 0.75


def _demo_split(tmp_path, num_train: int, num_clean: int):
    """Demo images, their split, and the noisy labels one-hot as every noisy image's target."""
    data = generate_demo_data(tmp_path / "data", num_train=num_train, num_clean=num_clean,
                              num_test=10)
    demo = ingest(data, tmp_path / "cache").load(mmap=False)
    plan = plan_splits(demo.clean_labels, 0.2, folds=1, seed=0)
    targets = np.eye(10, dtype=np.float32)[demo.noisy_labels[plan.noisy_idx]]
    return demo, plan, targets


@pytest.mark.slow
def test_a_student_learns_from_its_half_and_scores_the_other(tmp_path):
    demo, plan, targets = _demo_split(tmp_path, 400, 150)
    smoke = PROFILES["smoke"]
    result = train_student(demo.images, plan.clean_train_idx, demo.clean_labels,
                           plan.noisy_idx, targets, plan.val_idx, 1, smoke, seed=0, epochs=1)
    mine, other = split_in_halves(plan.noisy_idx, 0)[1], split_in_halves(plan.noisy_idx, 0)[0]
    np.testing.assert_array_equal(result.predict_idx, np.r_[other, plan.val_idx])
    assert np.intersect1d(result.predict_idx, mine).size == 0
    assert result.predict_proba.shape == (other.size + plan.val_idx.size, 10)
    np.testing.assert_allclose(result.predict_proba.sum(1), 1.0, rtol=1e-5)
    assert result.train.epochs == 1
    with pytest.raises(ValueError, match="one row per noisy image"):
        train_student(demo.images, plan.clean_train_idx, demo.clean_labels, plan.noisy_idx,
                      targets[:5], plan.val_idx, 0, smoke, seed=0)


@pytest.mark.slow
def test_a_student_can_start_from_the_teachers_weights(tmp_path):
    """student_init="teacher": the student continues from the clean-only teacher; with a
    vanishing learning rate its weights stay the teacher's, from scratch they do not."""
    from relabel.tasks.train import train_classifier

    demo, plan, targets = _demo_split(tmp_path, 300, 120)
    smoke = PROFILES["smoke"]
    teacher = train_classifier(demo.images[plan.clean_train_idx],
                               demo.clean_labels[plan.clean_train_idx], smoke, 1, seed=5).model

    def kernels(model):
        return [w.numpy() for w in model.trainable_weights]

    for initial_model, same in ((teacher, True), (None, False)):
        student = train_student(demo.images, plan.clean_train_idx, demo.clean_labels,
                                plan.noisy_idx, targets, plan.val_idx, 0, smoke, seed=0,
                                epochs=1, learning_rate=1e-12, initial_model=initial_model)
        close = all(np.allclose(a, b, atol=1e-6)
                    for a, b in zip(kernels(student.train.model), kernels(teacher), strict=True))
        assert close is same


@pytest.mark.slow
def test_a_later_round_student_trains_refine_epochs_with_its_own_seed(tmp_path):
    demo, plan, targets = _demo_split(tmp_path, 300, 120)
    profile = PROFILES["smoke"].model_copy(update={"student_epochs": 2, "refine_epochs": 1})
    args = (demo.images, plan.clean_train_idx, demo.clean_labels, plan.noisy_idx, targets,
            plan.val_idx, 0, profile)
    first = train_student(*args, seed=0)
    second = train_student(*args, seed=0, round_number=2)
    assert (first.train.epochs, second.train.epochs) == (2, 1)
    np.testing.assert_array_equal(first.predict_idx, second.predict_idx)  # the same halves
    assert not np.allclose(first.predict_proba, second.predict_proba)
    with pytest.raises(ValueError, match="counts from 1"):
        train_student(*args, seed=0, round_number=0)
