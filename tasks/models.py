"""Network architectures, all taking uint8 [B, 32, 32, 3] RGB and returning class logits.

Normalisation (to zero mean, unit variance per channel) is the model's first layer, so
callers feed raw uint8 images and a saved model needs no separate preprocessing. Data
augmentation is done by the trainer (tasks/train.py), not by the model.

- "airbench": the fast-CIFAR net of airbench94 (Keller Jordan, 2024), 94% on clean
  CIFAR-10 in seconds on a GPU: a fixed 2x2 "whitening" convolution (filled from the
  training data by `init_whitening`), then three conv groups (conv, max-pool, BN, GELU,
  conv, BN, GELU) of widths 64/256/256 x `width`, a global max-pool and a linear layer
  scaled by 1/9 (keeps the initial logits small, which airbench found trains faster).
- "resnet9": the DAWNBench ResNet-9 (Page, 2018): widths 64/128/256/512 x `width`, two
  residual blocks, output scaled by 1/8.
- "notebook_cnn": the old notebook's small CNN (two conv + pool stages and a dense layer),
  kept for comparison: cheap per image but learns little.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from relabel.constants import IMAGE_SHAPE, NUM_CLASSES

ARCHITECTURES = ("airbench", "resnet9", "notebook_cnn")
# Per-channel mean and standard deviation of CIFAR-10 pixels (0..255 scale).
CIFAR_MEAN = np.array([125.31, 122.95, 113.87], dtype=np.float32)
CIFAR_STD = np.array([62.99, 62.09, 66.70], dtype=np.float32)
WHITEN_LAYER = "whiten"
WHITEN_PATCH = 2
WHITEN_EPS = 5e-4


class SeededInitializers:
    """Kernel initializers (Keras' default, Glorot uniform) with explicit seeds drawn from
    one local generator. Without a seed, Keras draws each layer's seed from Python's global
    `random`, which any other thread (Prefect's, MLflow's) may advance between
    `set_random_seed` and the model build: the same seed then gave different weights."""

    def __init__(self, seed: int) -> None:
        # Its own stream: the trainer draws batch orders from default_rng([seed, epoch]).
        self._rng = np.random.default_rng([seed, 0x1A7E1])

    def __call__(self) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=int(self._rng.integers(2**31 - 1)))


def _channels(base: int, width: float) -> int:
    return max(8, int(round(base * width)))


def _normalise(inputs: keras.KerasTensor) -> keras.KerasTensor:
    x = layers.Rescaling(1.0, name="to_float")(inputs)  # uint8 -> float32
    return layers.Normalization(mean=CIFAR_MEAN, variance=CIFAR_STD**2, name="normalise")(x)


def _bn(x: keras.KerasTensor) -> keras.KerasTensor:
    # Fast-moving running statistics suit short schedules (airbench uses 0.6 in PyTorch terms).
    return layers.BatchNormalization(momentum=0.6, epsilon=1e-5)(x)


def _conv(x: keras.KerasTensor, channels: int, init: SeededInitializers) -> keras.KerasTensor:
    return layers.Conv2D(channels, 3, padding="same", use_bias=False,
                         kernel_initializer=init())(x)


def _airbench(width: float, num_classes: int, init: SeededInitializers) -> keras.Model:
    inputs = keras.Input(IMAGE_SHAPE, dtype="uint8", name="image")
    x = _normalise(inputs)
    x = layers.Conv2D(
        2 * WHITEN_PATCH * WHITEN_PATCH * 3, WHITEN_PATCH, padding="valid", use_bias=True,
        trainable=False, name=WHITEN_LAYER, kernel_initializer=init(),
    )(x)
    x = layers.Activation("gelu")(x)
    for base in (64, 256, 256):
        channels = _channels(base, width)
        x = _conv(x, channels, init)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Activation("gelu")(_bn(x))
        x = layers.Activation("gelu")(_bn(_conv(x, channels, init)))
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dense(num_classes, use_bias=False, kernel_initializer=init())(x)
    outputs = layers.Rescaling(1.0 / 9, name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="airbench")


def _resnet9(width: float, num_classes: int, init: SeededInitializers) -> keras.Model:
    def conv_bn(x: keras.KerasTensor, channels: int, pool: bool = False) -> keras.KerasTensor:
        x = _conv(x, channels, init)
        if pool:
            x = layers.MaxPooling2D(2)(x)
        return layers.Activation("relu")(_bn(x))

    inputs = keras.Input(IMAGE_SHAPE, dtype="uint8", name="image")
    x = conv_bn(_normalise(inputs), _channels(64, width))
    x = conv_bn(x, _channels(128, width), pool=True)
    x = layers.Add()([x, conv_bn(conv_bn(x, _channels(128, width)), _channels(128, width))])
    x = conv_bn(x, _channels(256, width), pool=True)
    x = conv_bn(x, _channels(512, width), pool=True)
    x = layers.Add()([x, conv_bn(conv_bn(x, _channels(512, width)), _channels(512, width))])
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dense(num_classes, use_bias=False, kernel_initializer=init())(x)
    outputs = layers.Rescaling(0.125, name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet9")


def _notebook_cnn(width: float, num_classes: int, init: SeededInitializers) -> keras.Model:
    inputs = keras.Input(IMAGE_SHAPE, dtype="uint8", name="image")
    x = layers.Rescaling(1.0 / 255, name="to_float")(inputs)
    x = layers.Conv2D(_channels(32, width), 3, activation="relu", kernel_initializer=init())(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(_channels(64, width), 3, activation="relu", kernel_initializer=init())(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(_channels(128, width), activation="relu", kernel_initializer=init())(x)
    outputs = layers.Dense(num_classes, name="logits", dtype="float32",
                           kernel_initializer=init())(x)
    return keras.Model(inputs, outputs, name="notebook_cnn")


def build_model(architecture: str = "airbench", width: float = 1.0,
                num_classes: int = NUM_CLASSES, *, seed: int = 0) -> keras.Model:
    """A fresh model returning logits, randomly initialised from `seed` alone (no global
    random state: the same seed gives the same weights whatever other threads do)."""
    builders = {"airbench": _airbench, "resnet9": _resnet9, "notebook_cnn": _notebook_cnn}
    if architecture not in builders:
        raise ValueError(f"architecture: expected one of {ARCHITECTURES}, got {architecture!r}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return builders[architecture](width, num_classes, SeededInitializers(seed))


def patch_covariance(images: np.ndarray, patch: int = WHITEN_PATCH,
                     chunk: int = 100) -> np.ndarray:
    """Covariance (float64 [k, k], k = patch * patch * 3) of the normalised patch x patch x 3
    pixel patches of uint8 images; feature order (dy, dx, channel).

    Computed from exact integer sums: uint8 products are integers, and float64 matrix
    products add integers below 2**53 exactly in any order, so the result is bit-identical
    whatever BLAS's thread count (a Dask worker has fewer threads than the flow, and a
    different low bit can flip an eigenvector's sign), and no float64 copy of every patch
    is made (5,000 images: ~0.3 s instead of ~6 s). `chunk` images at a time: ~9 MB
    temporaries, which malloc reuses; 500 (~46 MB each) page-faulted to ~1.1 s.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images: expected dtype uint8, got {images.dtype}")
    h, w = images.shape[1] - patch + 1, images.shape[2] - patch + 1
    k = patch * patch * 3
    count = images.shape[0] * h * w
    if count < 2 or count * count * 255**2 >= 2**63:
        raise ValueError(f"patch_covariance: {count} patches is outside 2..int64's exact range")
    sums = np.zeros(k, np.int64)
    products = np.zeros((k, k), np.int64)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk]
        # Via int32: numpy's direct uint8 -> float64 cast is ~10x slower.
        patches = np.concatenate(
            [block[:, dy:dy + h, dx:dx + w, :] for dy in range(patch) for dx in range(patch)],
            axis=-1).reshape(-1, k).astype(np.int32).astype(np.float64)
        # Exact: a chunk's sums stay far below 2**53.
        sums += patches.sum(axis=0).astype(np.int64)
        products += (patches.T @ patches).astype(np.int64)
    # n * sum(x y) - sum(x) sum(y) in int64 (exact), then one division.
    covariance = (products * count - np.outer(sums, sums)) / (count * (count - 1.0))
    scale = np.tile(CIFAR_STD.astype(np.float64), patch * patch)
    return covariance / np.outer(scale, scale)


def init_whitening(model: keras.Model, images: np.ndarray, max_images: int = 5000) -> None:
    """Fill the fixed whitening convolution (if the model has one) from training images.

    Its filters are the eigenvectors of the covariance of normalised 2x2x3 pixel patches,
    scaled by 1/sqrt(eigenvalue) (and their negatives: 24 filters), so the first layer hands
    decorrelated, unit-variance inputs to the network: airbench's trick to train faster.
    """
    try:
        layer = model.get_layer(WHITEN_LAYER)
    except ValueError:
        return
    p = WHITEN_PATCH
    eigenvalues, eigenvectors = np.linalg.eigh(patch_covariance(images[:max_images], p))
    largest = np.abs(eigenvectors).argmax(axis=0)
    eigenvectors *= np.sign(eigenvectors[largest, np.arange(eigenvectors.shape[1])])
    filters = eigenvectors / np.sqrt(eigenvalues + WHITEN_EPS)  # column f is filter f
    filters = np.concatenate([filters, -filters], axis=1)
    kernel = filters.reshape(p, p, 3, -1).astype(np.float32)  # [dy, dx, channel, out]
    layer.set_weights([kernel, np.zeros(kernel.shape[-1], np.float32)])


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of one image's forward pass, counted over Conv2D and Dense layers
    (the rest is negligible). A training step costs about 3x this (forward + 2 backward)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, ho, wo, cout = layer.output.shape
            total += 2 * ho * wo * kh * kw * cin * cout // layer.groups
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)
