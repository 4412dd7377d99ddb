"""Training and inference throughput of each architecture on this machine.

    .venv/bin/python benchmarks/train_speed.py [--batch 512] [--steps 3]
        [--configs airbench:0.5 airbench:1.0 resnet9:0.5 notebook_cnn:1.0]
        [--precisions float32 mixed_bfloat16] [--xla both]

For each architecture:width, precision and XLA setting, times `--steps` full training steps
(augmentation, forward, backward, Nesterov SGD update) at batch `--batch` after two warm-up
steps, and prints images/s and achieved GFLOP/s (3x the counted forward FLOPs per image).
Run it on a quiet machine: other processes on the same cores lower every figure.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from relabel.quiet import parse_args_quietly
from relabel.tasks.models import build_model, forward_flops
from relabel.tasks.train import augment_batch


def time_training(architecture: str, width: float, precision: str, xla: bool, batch: int,
                  steps: int) -> tuple[float, float, float]:
    """(train images/s, train GFLOP/s, inference images/s) for one configuration."""
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(precision)
    model = build_model(architecture, width)
    keras.mixed_precision.set_global_policy("float32")
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8))
    targets = tf.one_hot(rng.integers(0, 10, batch), 10)

    @tf.function(jit_compile=xla)
    def gradients(x, y):
        x = augment_batch(x, tf.constant([0, 0]))
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, logits))
        return loss, tape.gradient(loss, model.trainable_variables)

    @tf.function
    def step(x, y):
        loss, grads = gradients(x, y)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function(jit_compile=xla)
    def infer(x):
        return tf.nn.softmax(tf.cast(model(x, training=False), tf.float32))

    for _ in range(2):
        step(images, targets).numpy()
        infer(images).numpy()
    started = time.perf_counter()
    for _ in range(steps):
        loss = step(images, targets)
    loss.numpy()
    train_ips = batch * steps / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(steps):
        out = infer(images)
    out.numpy()
    infer_ips = batch * steps / (time.perf_counter() - started)
    return train_ips, 3 * forward_flops(model) * train_ips / 1e9, infer_ips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=[
        "airbench:0.5", "airbench:1.0", "resnet9:0.5", "notebook_cnn:1.0"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--xla", choices=["on", "off", "both"], default="both")
    args = parse_args_quietly(parser)
    xla_modes = {"on": [True], "off": [False], "both": [False, True]}[args.xla]
    print(f"{'architecture':<14} {'width':>5} {'precision':<15} {'xla':<4} "
          f"{'GFLOP/img':>9} {'train img/s':>11} {'GFLOP/s':>8} {'infer img/s':>11}")
    for config in args.configs:
        architecture, width = config.split(":")
        fwd = forward_flops(build_model(architecture, float(width)))
        for precision in args.precisions:
            for xla in xla_modes:
                train_ips, gflops, infer_ips = time_training(
                    architecture, float(width), precision, xla, args.batch, args.steps)
                print(f"{architecture:<14} {float(width):>5.2f} {precision:<15} "
                      f"{'on' if xla else 'off':<4} {3 * fwd / 1e9:>9.3f} {train_ips:>11.0f} "
                      f"{gflops:>8.0f} {infer_ips:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
