"""The trainer: one function that trains any architecture of tasks/models.py on uint8 images
with hard or soft targets, fast on CPU and unchanged on one or several GPUs.

Recipe (after airbench94 and the DAWNBench ResNet-9 submissions):
- uint8 images stay in memory; each batch is gathered with numpy and augmented inside the
  TensorFlow graph (random horizontal flip + random translation by up to 2 pixels with
  reflection padding, optionally cutout), from stateless random ops seeded by (seed, step),
  and initial weights from the seed alone (tasks/models.py): reproducible, bfloat16 too
  with one inter-op thread (relabel/settings.py).
- label smoothing; soft targets (label correction's posteriors) are accepted as they are;
  optional mixup (`mix_batch`).
- optional forward loss correction (Patrini et al., 2017): the model's clean-class
  probabilities are pushed through the noise model T, p(noisy | x) = p(y | x) @ T, and the
  loss compares that with the noisy label, so the network itself learns clean classes.
- Nesterov SGD, decoupled weight decay (not on BatchNorm/bias), linear warm-up then linear
  decay to zero; learning rate scaled linearly with the global batch.
- `tf.distribute.MirroredStrategy` when more than one GPU is visible (batch and learning
  rate scale with the replicas); the default strategy (a no-op) otherwise.
- flip test-time augmentation in `predict_proba`.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from relabel.config import TrainProfile
from relabel.constants import NUM_CLASSES
from relabel.hardware import resolve_precision
from relabel.progress import track
from relabel.tasks.models import build_model, forward_flops, init_whitening

log = logging.getLogger(__name__)

REFERENCE_BATCH = 512  # profile.learning_rate is the peak rate at this global batch size
TRANSLATE_PIXELS = 2
EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """model: the trained keras.Model (returns logits); history: per-epoch lists of loss,
    accuracy (against the argmax of the targets; with mixup, of the blended ones), lr, and
    val_accuracy when eval data were given; seconds: training wall time (evaluation
    excluded); images_per_second: training images processed per second;
    gflops_per_second: achieved training FLOP rate (3x the forward FLOPs per image);
    epochs: epochs trained."""

    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_second: float = 0.0
    gflops_per_second: float | None = None
    epochs: int = 0


# ---------------------------------------------------------------------------- setup

# One TensorFlow computation at a time per process. Concurrent trainings in one process
# segfault while one builds a model and another trains, or die with AlreadyExistsError on
# grappler's per-step temporary variables (tests/test_tasks/test_train.py reproduces the
# collision deterministically and checks that trainings on two threads take turns). The lock
# also serialises seeding and model building, which touch process-wide state (Python's RNG,
# the mixed-precision policy). Re-entrant: training evaluates with `predict_proba`.
TENSORFLOW_LOCK = threading.RLock()


def exclusive_tensorflow(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run `fn` holding `TENSORFLOW_LOCK` (parallel callers queue, one process at a time)."""

    @functools.wraps(fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with TENSORFLOW_LOCK:
            return fn(*args, **kwargs)

    return locked


def set_seeds(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy, TensorFlow and Keras; with `deterministic`, also make TF's
    kernels deterministic (same seed + data -> same weights; measured cost on this CPU:
    none within noise, ~1,050 vs ~1,080 images/s). Without it, op determinism is switched
    off again (it is process-wide), which XLA-compiled training needs."""
    from tensorflow.python.framework import config as tf_config  # no public "disable"

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    elif tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over all GPUs when there are several; the default strategy else."""
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _check_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"{name}: expected shape [n, 32, 32, 3], got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {images.dtype}")
    return images


def as_soft_targets(targets: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """int labels [n] -> one-hot float32 [n, k]; soft targets [n, k] are checked and kept."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
            raise ValueError(f"targets: labels must be in 0..{num_classes - 1}")
        return np.eye(num_classes, dtype=np.float32)[targets.astype(np.int64)]
    if targets.ndim != 2 or targets.shape[1] != num_classes:
        raise ValueError(f"targets: expected [n] labels or [n, {num_classes}], got "
                         f"{targets.shape}")
    if not np.allclose(targets.sum(axis=1), 1.0, atol=1e-3) or (targets < 0).any():
        raise ValueError("targets: soft target rows must be probabilities summing to 1")
    return targets.astype(np.float32)


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """0 -> peak linearly over `warmup_steps`, then linearly to 0 at `total_steps`."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        warm = float(max(self.warmup_steps, 1))
        up = step / warm
        down = (float(self.total_steps) - step) / max(float(self.total_steps) - warm, 1.0)
        return self.peak * tf.clip_by_value(tf.minimum(up, down), 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


# ---------------------------------------------------------------------------- augmentation


def augment_batch(images: tf.Tensor, seed: tf.Tensor, translate_pixels: int = TRANSLATE_PIXELS,
                  cutout_pixels: int = 0) -> tf.Tensor:
    """Random horizontal flip and translation by up to `translate_pixels` (reflection
    padding), per image, from stateless random ops seeded by `seed` (int32 [2]); with
    `cutout_pixels`, one random square of that side per image is filled with the batch's
    mean colour (cutout, DeVries & Taylor 2017; airbench96 uses translation 4, cutout 12).
    uint8 in, uint8 out."""
    batch = tf.shape(images)[0]
    size = images.shape[1]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    out = images
    if translate_pixels:
        pad = translate_pixels
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        dy = tf.random.stateless_uniform([batch], seeds[0], 0, 2 * pad + 1, dtype=tf.int32)
        dx = tf.random.stateless_uniform([batch], seeds[1], 0, 2 * pad + 1, dtype=tf.int32)
        rows = dy[:, None] + tf.range(size)[None, :]
        cols = dx[:, None] + tf.range(size)[None, :]
        out = tf.gather(padded, rows, axis=1, batch_dims=1)  # [B, size, size + 2 pad, 3]
        out = tf.gather(out, cols, axis=2, batch_dims=1)  # [B, size, size, 3]
    flip = tf.random.stateless_uniform([batch], seeds[2]) < 0.5
    out = tf.where(flip[:, None, None, None], tf.reverse(out, axis=[2]), out)
    if cutout_pixels:
        # Its own stream, so that the flip and translation stay those of cutout-free runs.
        corner_seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(seed, 1), 2)
        span = size - cutout_pixels + 1
        top = tf.random.stateless_uniform([batch], corner_seeds[0], 0, span, dtype=tf.int32)
        left = tf.random.stateless_uniform([batch], corner_seeds[1], 0, span, dtype=tf.int32)
        offsets = tf.range(size)[None, :]
        in_rows = (offsets >= top[:, None]) & (offsets < top[:, None] + cutout_pixels)
        in_cols = (offsets >= left[:, None]) & (offsets < left[:, None] + cutout_pixels)
        square = in_rows[:, :, None, None] & in_cols[:, None, :, None]  # [B, size, size, 1]
        mean_colour = tf.cast(tf.round(tf.reduce_mean(tf.cast(out, tf.float32), [0, 1, 2])),
                              tf.uint8)
        out = tf.where(square, mean_colour, out)
    return out


def mixup_draws(seed: tf.Tensor, batch: tf.Tensor | int,
                alpha: float) -> tuple[tf.Tensor, tf.Tensor]:
    """mixup's random choices for one batch, from stateless ops seeded by `seed` (int32 [2];
    apart from `augment_batch`'s streams): lam ~ Beta(alpha, alpha) float32 [batch] and each
    image's partner, a permutation int32 [batch]. Drawn outside the XLA-compiled step (XLA
    has no kernel for the gamma sampler)."""
    seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 2), 3)
    own = tf.random.stateless_gamma([batch], seeds[0], alpha=alpha)
    lam = own / (own + tf.random.stateless_gamma([batch], seeds[1], alpha=alpha))
    partner = tf.argsort(tf.random.stateless_uniform([batch], seeds[2]))
    return lam, partner


def mix_batch(images: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor, lam: tf.Tensor,
              partner: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """mixup (Zhang et al., 2018): image i becomes lam[i] * itself + (1 - lam[i]) * image
    partner[i], and its target and loss weight alike (`mixup_draws`). A network that must
    give mixed answers for mixed images memorises fewer wrong labels. uint8 images in and
    out (the blend is rounded: at most half a grey level off)."""
    pixels = tf.cast(images, tf.float32)
    share = lam[:, None, None, None]
    mixed = share * pixels + (1.0 - share) * tf.gather(pixels, partner)
    mixed = tf.cast(tf.clip_by_value(tf.round(mixed), 0.0, 255.0), tf.uint8)
    targets = lam[:, None] * targets + (1.0 - lam[:, None]) * tf.gather(targets, partner)
    weights = lam * weights + (1.0 - lam) * tf.gather(weights, partner)
    return mixed, targets, weights


# ---------------------------------------------------------------------------- training


@exclusive_tensorflow
def train_classifier(
    images: np.ndarray,
    targets: np.ndarray,
    profile: TrainProfile,
    epochs: int,
    seed: int,
    *,
    transition: np.ndarray | None = None,
    eval_images: np.ndarray | None = None,
    eval_labels: np.ndarray | None = None,
    on_epoch_end: EpochCallback | None = None,
    sample_weight: np.ndarray | None = None,
    initial_model: keras.Model | None = None,
    label_smoothing: float | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    deterministic: bool = True,
    strategy: tf.distribute.Strategy | None = None,
    progress_label: str = "training",
    translate_pixels: int = TRANSLATE_PIXELS,
    cutout_pixels: int = 0,
    mixup_alpha: float | None = None,
) -> TrainResult:
    """Train a fresh `profile.architecture` model (or continue from `initial_model`'s
    weights) for `epochs` epochs on `images` uint8 [n, 32, 32, 3] with `targets` (int labels
    [n] or soft float [n, 10]).

    transition: noise model T [10, 10]; when given, the loss is forward-corrected (targets
    are noisy labels, the model learns clean classes). sample_weight: per-image loss weight
    [n] (default 1). eval_images/eval_labels: scored after every epoch (val_accuracy).
    on_epoch_end(epoch, metrics): called after each epoch (1-based) with that epoch's
    numbers. label_smoothing / learning_rate / batch_size (per replica) override the
    profile's. translate_pixels / cutout_pixels: the augmentation (`augment_batch`).
    mixup_alpha: blend the batch's images and targets (`mix_batch`, lam ~ Beta(alpha,
    alpha)); None: the profile's `mixup_alpha`; 0: off.
    strategy: a tf.distribute strategy (default: `distribution_strategy()`).
    """
    images = _check_images(images)
    soft = as_soft_targets(targets)
    n = images.shape[0]
    if soft.shape[0] != n:
        raise ValueError(f"targets: {soft.shape[0]} rows for {n} images")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    weights = np.ones(n, np.float32) if sample_weight is None else np.asarray(
        sample_weight, np.float32)
    if weights.shape != (n,):
        raise ValueError(f"sample_weight: expected shape ({n},), got {weights.shape}")
    smoothing = profile.label_smoothing if label_smoothing is None else label_smoothing
    if smoothing:
        soft = (1.0 - smoothing) * soft + smoothing / soft.shape[1]
    if transition is not None:
        transition = np.asarray(transition, np.float32)
        if transition.shape != (soft.shape[1], soft.shape[1]):
            raise ValueError(f"transition: expected shape (10, 10), got {transition.shape}")

    mixup = profile.mixup_alpha if mixup_alpha is None else mixup_alpha
    if mixup < 0:
        raise ValueError(f"mixup_alpha must be >= 0, got {mixup}")

    if deterministic and profile.jit_compile:
        # XLA has no deterministic max-pool gradient: such runs are seeded, not bit-exact.
        log.warning("jit_compile=True: training is seeded but not bit-for-bit deterministic")
        deterministic = False
    set_seeds(seed, deterministic)
    strategy = strategy or distribution_strategy()
    replicas = strategy.num_replicas_in_sync
    batch = profile.batch_size if batch_size is None else batch_size
    global_batch = min(batch * replicas, n - n % replicas) if n >= replicas else n
    per_replica = global_batch // replicas
    steps_per_epoch = max(n // global_batch, 1)
    total_steps = steps_per_epoch * epochs
    peak_lr = (profile.learning_rate if learning_rate is None else learning_rate) * (
        global_batch / REFERENCE_BATCH)

    with strategy.scope():
        keras.mixed_precision.set_global_policy(resolve_precision(profile.precision))
        model = build_model(profile.architecture, profile.width, soft.shape[1], seed=seed)
        keras.mixed_precision.set_global_policy("float32")
        if initial_model is not None:
            model.set_weights(initial_model.get_weights())
        else:
            init_whitening(model, images)
        schedule = WarmupLinearDecay(
            peak_lr, int(profile.warmup_fraction * total_steps), total_steps)
        optimizer = keras.optimizers.SGD(
            schedule, momentum=profile.momentum, nesterov=True,
            weight_decay=profile.weight_decay,
            use_ema=profile.ema_momentum is not None,
            ema_momentum=profile.ema_momentum or 0.99,
        )
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
        optimizer.build(model.trainable_variables)
        matrix = None if transition is None else tf.constant(transition)

    def per_example_loss(y: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        logits = tf.cast(logits, tf.float32)
        if matrix is None:
            # Written out: the fused TF op has no deterministic GPU kernel.
            return -tf.reduce_sum(y * tf.nn.log_softmax(logits), axis=1)
        noisy_proba = tf.matmul(tf.nn.softmax(logits), matrix)
        return -tf.reduce_sum(y * tf.math.log(noisy_proba + 1e-7), axis=1)

    # The forward/backward pass is XLA-compiled only when the profile asks (measure first:
    # it is slower for some nets on CPU); the optimizer update stays outside so that
    # MirroredStrategy can all-reduce the gradients.
    @tf.function(jit_compile=profile.jit_compile)
    def compute_gradients(x, y, w, step_seed, lam=None, partner=None):
        x = augment_batch(x, step_seed, translate_pixels, cutout_pixels)
        if lam is not None:
            x, y, w = mix_batch(x, y, w, lam, partner)
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            losses = per_example_loss(y, logits)
            loss = tf.reduce_sum(losses * w) / float(global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        hits = tf.reduce_sum(tf.cast(
            tf.argmax(logits, axis=1) == tf.argmax(y, axis=1), tf.float32))
        return grads, tf.reduce_sum(losses * w), hits

    def replica_step(x, y, w, step_seed):
        draws = mixup_draws(step_seed, tf.shape(x)[0], mixup) if mixup else ()
        grads, loss_sum, hits = compute_gradients(x, y, w, step_seed, *draws)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss_sum, hits

    @tf.function
    def train_step(x, y, w, step_seed):
        loss_sum, hits = strategy.run(replica_step, args=(x, y, w, step_seed))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, hits, axis=None))

    def feed(array: np.ndarray):
        if replicas == 1:
            return tf.constant(array)
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(array[ctx.replica_id_in_sync_group * per_replica:
                                          (ctx.replica_id_in_sync_group + 1) * per_replica]))

    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "lr": []}
    if eval_images is not None:
        history["val_accuracy"] = []
    train_seconds = 0.0
    trained_images = 0
    with track(progress_label, epochs * steps_per_epoch, "batches") as tracker:
        for epoch in range(1, epochs + 1):
            order = np.random.default_rng([seed, epoch]).permutation(n)
            started = time.perf_counter()
            loss_total = hits_total = 0.0
            tracker.describe(f"epoch {epoch}/{epochs}")
            for step in range(steps_per_epoch):
                batch = np.sort(order[step * global_batch:(step + 1) * global_batch])
                step_seed = tf.constant([seed, (epoch - 1) * steps_per_epoch + step], tf.int32)
                loss_sum, hits = train_step(
                    feed(images[batch]), feed(soft[batch]), feed(weights[batch]),
                    step_seed)
                loss_total += float(loss_sum)
                hits_total += float(hits)
                tracker.advance()
            train_seconds += time.perf_counter() - started
            trained_images += steps_per_epoch * global_batch
            seen = steps_per_epoch * global_batch
            metrics = {
                "loss": loss_total / seen,
                "accuracy": hits_total / seen,
                "lr": float(schedule(optimizer.iterations - 1)),
            }
            if eval_images is not None:
                proba = predict_proba(model, eval_images, tta=False)
                metrics["val_accuracy"] = float(np.mean(proba.argmax(1) == np.asarray(eval_labels)))
            for key, value in metrics.items():
                history[key].append(value)
            log.info("%s: epoch %d/%d %s", progress_label, epoch, epochs,
                     " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)

    if profile.ema_momentum is not None:
        optimizer.finalize_variable_values(model.trainable_variables)  # weights := EMA
        recalibrate_batch_norm(model, images, global_batch, seed, strategy)

    images_per_second = trained_images / train_seconds if train_seconds else 0.0
    return TrainResult(
        model=model,
        history=history,
        seconds=train_seconds,
        images_per_second=images_per_second,
        gflops_per_second=3 * forward_flops(model) * images_per_second / 1e9,
        epochs=epochs,
    )


BN_RECALIBRATION_STEPS = 16


def recalibrate_batch_norm(model: keras.Model, images: np.ndarray, batch_size: int,
                           seed: int, strategy: tf.distribute.Strategy | None = None) -> None:
    """Recompute BatchNorm's running statistics for the model's current weights (after the
    EMA swap the running statistics belong to other weights): forward passes in training
    mode over `BN_RECALIBRATION_STEPS` random batches, no gradient step. BN momentum 0.6
    forgets the old statistics within a few batches."""
    strategy = strategy or tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1:
        log.warning("BatchNorm recalibration skipped on %d replicas",
                    strategy.num_replicas_in_sync)
        return

    @tf.function
    def forward(x):
        model(x, training=True)

    order = np.random.default_rng([seed, 1 << 20]).permutation(len(images))
    steps = min(BN_RECALIBRATION_STEPS, max(len(images) // batch_size, 1))
    for step in range(steps):
        batch = np.sort(order[step * batch_size:(step + 1) * batch_size])
        forward(tf.constant(images[batch]))


# ---------------------------------------------------------------------------- inference


def _feature_layer(model: keras.Model) -> keras.layers.Layer:
    """The model's last Dense layer: its input is the image's embedding."""
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if not dense:
        raise ValueError(f"model {model.name!r} has no Dense layer to read embeddings from")
    return dense[-1]


def _predict_function(model: keras.Model, tta: bool,
                      embeddings: bool = False) -> Callable[[tf.Tensor], tf.Tensor]:
    """The model's softmax (with `tta`, averaged with its mirror image's; with `embeddings`,
    followed by the embedding columns, the input of the last Dense layer, likewise averaged
    over both views) as a concrete function for any batch of uint8 images, traced once per
    model and options, then kept on the model. Concrete, not a `tf.function`: TensorFlow's
    frequent-retracing detector counts traces per Python function across all instances, so
    the first trace of each of a run's many models, a few predictions apart, read as
    "triggered tf.function retracing"; a concrete function called directly never retraces
    and is not counted."""
    attribute = "_relabel_predict" + ("_tta" if tta else "") + ("_emb" if embeddings else "")
    fn = getattr(model, attribute, None)
    if fn is None:
        network = model
        if embeddings:
            network = keras.Model(model.inputs, [model.outputs[0], _feature_layer(model).input])

        def view(x: tf.Tensor) -> tf.Tensor:
            if not embeddings:
                return tf.nn.softmax(tf.cast(network(x, training=False), tf.float32))
            logits, features = network(x, training=False)
            return tf.concat([tf.nn.softmax(tf.cast(logits, tf.float32)),
                              tf.cast(features, tf.float32)], axis=1)

        def proba(x: tf.Tensor) -> tf.Tensor:
            out = view(x)
            if tta:
                out = 0.5 * (out + view(tf.reverse(x, axis=[2])))
            return out

        fn = tf.function(proba).get_concrete_function(tf.TensorSpec([None, 32, 32, 3], tf.uint8))
        setattr(model, attribute, fn)
    return fn


def _predict_batches(fn: Callable[[tf.Tensor], tf.Tensor], images: np.ndarray, columns: int,
                     batch_size: int, progress_label: str) -> np.ndarray:
    """fn over `images` in batches padded to one shape: float32 [n, columns]."""
    n = images.shape[0]
    out = np.empty((n, columns), np.float32)
    size = min(batch_size, max(n, 1))
    with track(progress_label, n, "images") as tracker:
        for start in range(0, n, size):
            chunk = images[start:start + size]
            if chunk.shape[0] < size:
                chunk = np.concatenate([chunk, np.zeros((size - chunk.shape[0], 32, 32, 3),
                                                        np.uint8)])
            result = fn(tf.constant(chunk)).numpy()
            out[start:start + size] = result[: min(size, n - start)]
            tracker.advance(min(size, n - start))
    return out


@exclusive_tensorflow
def predict_proba(model: keras.Model, images: np.ndarray, batch_size: int = 1024,
                  tta: bool = True, progress_label: str = "predicting") -> np.ndarray:
    """Class probabilities float32 [n, 10] (softmax of the logits); with `tta`, the mean
    over the image and its mirror image. Batches are padded to one shape."""
    images = _check_images(images)
    return _predict_batches(_predict_function(model, bool(tta)), images,
                            model.output_shape[-1], batch_size, progress_label)


@exclusive_tensorflow
def predict_proba_and_embeddings(
    model: keras.Model, images: np.ndarray, batch_size: int = 1024, tta: bool = True,
    progress_label: str = "predicting",
) -> tuple[np.ndarray, np.ndarray]:
    """`predict_proba`'s probabilities [n, 10] and, from the same forward passes, each
    image's embedding [n, d]: the input of the last Dense layer (averaged over the two views
    with `tta`), L2-normalised for cosine neighbours."""
    images = _check_images(images)
    classes = model.output_shape[-1]
    width = classes + int(_feature_layer(model).input.shape[-1])
    both = _predict_batches(_predict_function(model, bool(tta), embeddings=True), images,
                            width, batch_size, progress_label)
    embeddings = both[:, classes:]
    embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    return both[:, :classes], embeddings


# ---------------------------------------------------------------------------- persistence


def save_model(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """Write `model` to `path` (.keras), atomically: temp file in the same folder + rename."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: model files must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a model written by `save_model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    return keras.models.load_model(path, compile=False)
