"""The architectures: shapes, seeded initialisation, the airbench whitening layer, the FLOP
count."""

import random

import keras
import numpy as np
import pytest

from relabel.tasks.models import (
    ARCHITECTURES,
    CIFAR_STD,
    WHITEN_LAYER,
    build_model,
    forward_flops,
    init_whitening,
    patch_covariance,
)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_architectures_map_uint8_images_to_logits(architecture):
    model = build_model(architecture, width=0.25)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    logits = model(images, training=False)
    assert tuple(logits.shape) == (3, 10)
    assert forward_flops(model) > 0


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_initial_weights_come_from_the_seed_alone(architecture):
    """Python's, numpy's and Keras' global random state (which other threads advance) do
    not reach the initial weights; the seed does."""
    random.seed(1)
    first = build_model(architecture, width=0.25, seed=3).get_weights()
    keras.utils.set_random_seed(2)
    random.random()
    again = build_model(architecture, width=0.25, seed=3).get_weights()
    other = build_model(architecture, width=0.25, seed=4).get_weights()
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    random_kernels = [i for i, w in enumerate(first) if w.ndim >= 2 and np.unique(w).size > 1]
    assert len(random_kernels) >= 3
    assert all(not np.array_equal(first[i], other[i]) for i in random_kernels)


def test_unknown_architecture_and_bad_width_are_named():
    with pytest.raises(ValueError, match="architecture: expected one of"):
        build_model("vgg")
    with pytest.raises(ValueError, match="width must be > 0"):
        build_model("airbench", width=0)


def test_flops_count_convolutions_and_dense_layers_by_hand():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8 outputs x 3*3*3 x 4
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10)(x)  # 256 -> 10
    model = keras.Model(inputs, outputs)
    assert forward_flops(model) == 2 * (8 * 8 * 3 * 3 * 3 * 4) + 2 * (256 * 10)


def test_flops_grow_with_the_square_of_the_width():
    narrow = forward_flops(build_model("airbench", width=0.5))
    wide = forward_flops(build_model("airbench", width=1.0))
    assert 3.5 < wide / narrow < 4.1


def test_whitening_decorrelates_patches_of_the_training_images():
    """After init_whitening the fixed first convolution's first 12 outputs (before its GELU)
    have about unit variance and no correlation on the images it was fitted to; the other
    12 are their negatives."""
    rng = np.random.default_rng(0)
    # Strongly correlated pixels: a smooth random field, the same in all three channels.
    base = rng.normal(size=(400, 8, 8)).repeat(4, axis=1).repeat(4, axis=2)
    images = np.clip(128 + 50 * base[..., None] + rng.normal(0, 5, (400, 32, 32, 3)), 0,
                     255).astype(np.uint8)
    model = build_model("airbench", width=0.25)
    init_whitening(model, images)
    layer = model.get_layer(WHITEN_LAYER)
    whiten = keras.Model(model.input, layer.output)
    out = whiten(images[:200], training=False).numpy().reshape(-1, layer.filters)
    half = layer.filters // 2
    np.testing.assert_allclose(out[:, half:], -out[:, :half], atol=1e-4)
    covariance = np.cov(out[:, :half], rowvar=False)
    np.testing.assert_allclose(covariance, np.eye(half), atol=0.1)


def test_patch_covariance_is_exact_and_independent_of_chunks_and_threads():
    """The whitening statistics: equal to numpy's covariance of the normalised patches, and
    bit-identical whatever the chunking or BLAS's thread count (a Dask worker's model must
    start from the same filters as the flow's)."""
    from threadpoolctl import threadpool_limits

    images = np.random.default_rng(1).integers(0, 256, (301, 32, 32, 3), dtype=np.uint8)
    normalised = images.astype(np.float64) / CIFAR_STD.astype(np.float64)
    patches = np.concatenate([normalised[:, dy:dy + 31, dx:dx + 31] for dy in (0, 1)
                              for dx in (0, 1)], axis=-1).reshape(-1, 12)
    covariance = patch_covariance(images)
    np.testing.assert_allclose(covariance, np.cov(patches, rowvar=False), rtol=1e-10,
                               atol=1e-12)
    with threadpool_limits(limits=1):
        one_thread = patch_covariance(images, chunk=7)
    np.testing.assert_array_equal(covariance, one_thread)
    with pytest.raises(ValueError, match="uint8"):
        patch_covariance(normalised)


def test_whitening_leaves_a_model_without_that_layer_alone():
    model = build_model("notebook_cnn", width=0.25)
    before = [w.copy() for w in model.get_weights()]
    init_whitening(model, np.zeros((10, 32, 32, 3), np.uint8))
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
