"""Prediction: one image -> class name, batches, and the label_prediction.csv format."""

import csv

import numpy as np
import pytest

from relabel import CLASS_NAMES
from relabel.config import PROFILES
from relabel.tasks.predict import (
    predict,
    predict_batch,
    predict_labels,
    write_label_prediction_csv,
)
from relabel.tasks.train import predict_proba, train_classifier


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (128, 32, 32, 3), dtype=np.uint8)
    return train_classifier(images, rng.integers(0, 10, 128), PROFILES["smoke"], 1, seed=0).model


def test_predict_returns_the_class_name_of_one_image(model):
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    names = [predict(model, image) for image in images]
    batch = predict_batch(model, images)
    assert batch.dtype == np.int64 and batch.shape == (5,)
    assert names == [CLASS_NAMES[i] for i in batch]
    np.testing.assert_array_equal(batch, predict_proba(model, images).argmax(1))


@pytest.mark.parametrize("shape", [(32, 32), (28, 28, 3), (32, 32, 4), (1, 32, 32, 3)])
def test_predict_names_a_wrong_shape(model, shape):
    with pytest.raises(ValueError, match=f"got {tuple(shape)}".replace("(", r"\(").replace(
            ")", r"\)")):
        predict(model, np.zeros(shape, np.uint8))


def test_predict_batch_rejects_wrong_shape_and_dtype(model):
    with pytest.raises(ValueError, match=r"\(2, 32, 32\)"):
        predict_batch(model, np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        predict_batch(model, np.zeros((2, 32, 32, 3), np.float64))


def test_label_prediction_csv_has_one_row_per_test_image(tmp_path):
    columns = {"Baseline": np.array([0, 1, 2]), "Model I": np.array([3, 4, 5]),
               "Model II": np.array([9, 8, 7])}
    path = write_label_prediction_csv(tmp_path / "label_prediction.csv", columns)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["Baseline", "Model I", "Model II"], ["0", "3", "9"], ["1", "4", "8"],
                    ["2", "5", "7"]]
    assert [p.name for p in tmp_path.iterdir()] == ["label_prediction.csv"]
    with pytest.raises(ValueError, match="equal length"):
        write_label_prediction_csv(tmp_path / "x.csv", {"Baseline": np.array([0, 1]),
                                                         "Model I": np.array([0])})
    with pytest.raises(ValueError, match="Model II"):
        write_label_prediction_csv(tmp_path / "x.csv", {"Model II": np.array([0, 10])})
    assert not (tmp_path / "x.csv").exists()


def test_predict_labels_reads_either_kind_of_saved_model(model, tmp_path):
    import joblib

    from relabel.tasks.baseline import fit_baseline
    from relabel.tasks.train import save_model

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    keras_path = save_model(model, tmp_path / "m.keras")
    np.testing.assert_array_equal(predict_labels("keras", keras_path, images, None),
                                  predict_batch(model, images))
    features = rng.integers(0, 500, (40, 15))
    baseline = fit_baseline(features, rng.integers(0, 10, 40), seed=0)
    joblib.dump(baseline, tmp_path / "b.joblib")
    np.testing.assert_array_equal(
        predict_labels("sklearn", tmp_path / "b.joblib", images, features),
        baseline.predict(features.astype(np.float64)))
    with pytest.raises(ValueError, match="colour features"):
        predict_labels("sklearn", tmp_path / "b.joblib", images, None)
    with pytest.raises(ValueError, match="kind"):
        predict_labels("onnx", keras_path, images, None)
