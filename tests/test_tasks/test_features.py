"""RGB-histogram features: the vectorised version equals the loop, bad input is refused."""

import numpy as np
import pytest

from relabel.tasks.features import NUM_FEATURES, rgb_histogram, rgb_histogram_loop


def _random_images(n: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)
    # Make the bin edges and the extremes frequent: they are where an off-by-one would hide.
    edges = np.array([0, 50, 51, 101, 102, 152, 153, 203, 204, 254, 255], dtype=np.uint8)
    mask = rng.random(images.shape) < 0.3
    images[mask] = rng.choice(edges, size=int(mask.sum()))
    return images


def test_vectorized_histogram_is_bit_identical_to_the_loop():
    images = _random_images(600)
    images[0] = 0
    images[1] = 255
    fast, slow = rgb_histogram(images), rgb_histogram_loop(images)
    assert fast.dtype == slow.dtype == np.int64
    assert fast.shape == (600, NUM_FEATURES)
    np.testing.assert_array_equal(fast, slow)
    assert (fast.reshape(-1, 3, 5).sum(axis=2) == 32 * 32).all()


@pytest.mark.parametrize("shape", [(24, 24), (5, 7), (16, 32)])
def test_other_image_sizes_match_the_loop(shape):
    images = _random_images(40, *shape, seed=1)
    np.testing.assert_array_equal(rgb_histogram(images), rgb_histogram_loop(images))


def test_histogram_rejects_wrong_input():
    with pytest.raises(ValueError, match=r"\(4, 32, 32\)"):
        rgb_histogram(np.zeros((4, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        rgb_histogram(np.zeros((4, 32, 32, 3), np.float32))
