"""`relabel predict` and `relabel.predict`: new PNGs in, one row per file out, from a run
folder, a .keras file or the registry's champion."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import relabel
from relabel import CLASS_NAMES
from relabel.cli import app
from relabel.config import PROFILES
from relabel.serving import PredictError, image_files, load_classifier, predict_files
from relabel.tasks.predict import predict_batch
from relabel.tasks.train import save_model, train_classifier


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("serving")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (128, 32, 32, 3), dtype=np.uint8)
    model = train_classifier(images, rng.integers(0, 10, 128), PROFILES["smoke"], 1,
                             seed=0).model
    keras_file = save_model(model, root / "model2.keras")
    run = root / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(
        {"models": {"Model II": {"model": {"path": str(keras_file)}}}}))
    folder = root / "new"
    folder.mkdir()
    for k in range(5):
        cv2.imwrite(str(folder / f"img{k}.png"), cv2.cvtColor(images[k], cv2.COLOR_RGB2BGR))
    return {"model": model, "keras": keras_file, "run": run, "folder": folder,
            "images": images[:5]}


def test_predict_files_from_a_run_folder(trained: dict) -> None:
    predictions = predict_files([trained["folder"]], trained["run"])
    expected = predict_batch(trained["model"], trained["images"])
    assert predictions.files == [str(trained["folder"] / f"img{k}.png") for k in range(5)]
    np.testing.assert_array_equal(predictions.class_ids, expected)
    assert ((predictions.confidence > 0) & (predictions.confidence <= 1)).all()
    assert "run" in predictions.model


def test_cli_writes_one_row_per_image(trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "predictions.csv"
    result = CliRunner().invoke(app, ["predict", str(trained["folder"] / "img0.png"),
                                      str(trained["folder"]), "--model", str(trained["keras"]),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and list(rows[0]) == ["file", "class_id", "class_name", "confidence"]
    assert all(r["class_name"] == CLASS_NAMES[int(r["class_id"])] for r in rows)
    assert "6 images predicted" in result.output


def test_python_api_takes_arrays_or_paths(trained: dict) -> None:
    names = relabel.predict(trained["images"], model=trained["keras"])
    assert names == [CLASS_NAMES[i] for i in predict_batch(trained["model"], trained["images"])]
    assert relabel.predict(trained["images"][0], model=trained["keras"]) == names[:1]
    assert relabel.predict(str(trained["folder"]), model=trained["run"]) == names


def test_bad_inputs_are_named(trained: dict, tmp_path: Path) -> None:
    with pytest.raises(PredictError, match="no such file or folder"):
        image_files([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictError, match="no .png files"):
        image_files([tmp_path / "empty"])
    with pytest.raises(PredictError, match="not a run folder"):
        load_classifier(tmp_path)
    bad = tmp_path / "big.png"
    cv2.imwrite(str(bad), np.zeros((40, 40, 3), np.uint8))
    from relabel.tasks.ingest import IngestError

    with pytest.raises(IngestError, match="big.png: image is 40x40"):
        predict_files([bad], trained["keras"])
    with pytest.raises(PredictError, match="expected uint8"):
        relabel.predict(np.zeros((2, 32, 32), np.uint8), model=trained["keras"])


@pytest.mark.slow
def test_a_missing_champion_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(PredictError, match="models:/relabel-model2@champion: cannot load"):
        load_classifier("champion")
