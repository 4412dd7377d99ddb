"""The generated demo dataset: deterministic, the documented layout, the stated noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from relabel.tasks.demodata import generate_demo_data, make_noisy_labels
from relabel.tasks.ingest import ingest


def test_demo_data_is_deterministic(tmp_path: Path) -> None:
    a = generate_demo_data(tmp_path / "a", num_train=50, num_clean=10, num_test=10, seed=3)
    b = generate_demo_data(tmp_path / "b", num_train=50, num_clean=10, num_test=10, seed=3)
    assert ingest(a, tmp_path / "ca").content_hash == ingest(b, tmp_path / "cb").content_hash


def test_the_layout_is_the_reference_layout_plus_true_labels(tmp_path: Path) -> None:
    data = generate_demo_data(tmp_path / "d", num_train=30, num_clean=12, num_test=5)
    assert sorted(p.name for p in (data / "images").iterdir())[:2] == ["00001.png", "00002.png"]
    assert len(list((data / "images").iterdir())) == 30
    assert sorted(p.name for p in (data / "images_test").iterdir())[0] == "test00001.png"
    truth = np.loadtxt(data / "true_labels.csv", dtype=int)
    clean = np.loadtxt(data / "clean_labels.csv", dtype=int)
    np.testing.assert_array_equal(clean, truth[:12])  # the first images carry clean labels
    assert np.loadtxt(data / "noisy_labels.csv", dtype=int).shape == (30,)
    assert not list(tmp_path.glob(".*staging*"))


def test_an_existing_folder_is_kept_unless_overwrite(tmp_path: Path) -> None:
    data = generate_demo_data(tmp_path / "d", num_train=20, num_clean=5, num_test=2)
    (data / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_demo_data(data, num_train=20, num_clean=5, num_test=2)
    assert (data / "mine.txt").read_text() == "keep"
    generate_demo_data(data, num_train=20, num_clean=5, num_test=2, overwrite=True)
    assert not (data / "mine.txt").exists()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"noise_rate": 1.0}, "noise_rate"), ({"pair_flip_fraction": 2.0}, "pair_flip_fraction"),
    ({"num_clean": 0}, "num_clean=0"), ({"num_clean": 21}, "num_clean=21"),
])
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_demo_data(tmp_path / "d", **{"num_train": 20, "num_test": 2, **kwargs})
    assert not (tmp_path / "d").exists()


def test_demo_noise_model() -> None:
    rng = np.random.default_rng(0)
    truth = np.arange(20000) % 10
    noisy = make_noisy_labels(truth, 0.6, 0.5, rng)
    wrong = noisy != truth
    assert wrong.mean() == pytest.approx(0.6, abs=0.02)
    pair = noisy[wrong] == (truth[wrong] + 1) % 10
    assert pair.mean() == pytest.approx(0.5 + 0.5 / 9, abs=0.03)
