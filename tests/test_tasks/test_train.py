"""The trainer: augmentation, soft targets, determinism, persistence, concurrency, EMA."""

import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from relabel.config import PROFILES
from relabel.hardware import machine_tier
from relabel.tasks.split import plan_splits
from relabel.tasks.train import (
    augment_batch,
    load_model,
    mix_batch,
    mixup_draws,
    predict_proba,
    predict_proba_and_embeddings,
    save_model,
    train_classifier,
)

SMOKE = PROFILES["smoke"]


def test_augmentation_is_a_seeded_flip_and_translation():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8))
    a = augment_batch(images, tf.constant([1, 2]))
    b = augment_batch(images, tf.constant([1, 2]))
    c = augment_batch(images, tf.constant([1, 3]))
    assert a.shape == images.shape and a.dtype == tf.uint8
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    # The centre of a translated (maybe flipped) image is a shifted copy of the original.
    x, y = images.numpy(), a.numpy()
    for i in range(8):
        found = False
        for img in (x[i], x[i, :, ::-1]):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    if np.array_equal(y[i, 2:30, 2:30], img[2 + dy:30 + dy, 2 + dx:30 + dx]):
                        found = True
        assert found, f"image {i} is not a flip/translation of its input"


def test_cutout_fills_one_square_per_image_and_keeps_the_flips():
    rng = np.random.default_rng(1)
    images = tf.constant(rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8))
    seed = tf.constant([4, 5])
    flipped_only = augment_batch(images, seed, translate_pixels=0).numpy()
    cut = augment_batch(images, seed, translate_pixels=0, cutout_pixels=8).numpy()
    mean_colour = np.round(flipped_only.reshape(-1, 3).astype(np.float64).mean(0))
    corners = set()
    for before, after in zip(flipped_only, cut, strict=True):
        changed = (before != after).any(axis=2)
        rows, cols = np.nonzero(changed)
        # Random pixels rarely equal the fill, so the changed pixels span exactly the square.
        top, left = rows.min(), cols.min()
        assert (rows.max() - top, cols.max() - left) == (7, 7)
        np.testing.assert_array_equal(after[top:top + 8, left:left + 8],
                                      np.broadcast_to(mean_colour, (8, 8, 3)))
        outside = np.ones((32, 32), bool)
        outside[top:top + 8, left:left + 8] = False
        np.testing.assert_array_equal(after[outside], before[outside])
        corners.add((top, left))
    assert len(corners) > 16  # each image gets its own square
    # The cutout draws its own random numbers: flips and translations stay the same.
    translated = augment_batch(images, seed).numpy()
    both = augment_batch(images, seed, cutout_pixels=8).numpy()
    assert ((translated != both).any(axis=3).sum(axis=(1, 2)) <= 64).all()


@pytest.mark.slow
def test_mixup_blends_each_image_target_and_weight_with_one_partner():
    n = 64
    shade = np.arange(n) * 4  # image i is one grey level: its blend shows both partners
    images = tf.constant(np.broadcast_to(shade[:, None, None, None], (n, 32, 32, 3))
                         .astype(np.uint8))
    targets = tf.constant(np.eye(n, dtype=np.float32))  # a class per image: names partners
    weights = tf.constant((0.5 + shade / 1000).astype(np.float32))
    seed = tf.constant([3, 7])
    mixed, mixed_targets, mixed_weights = (t.numpy() for t in mix_batch(
        images, targets, weights, *mixup_draws(seed, n, alpha=0.4)))
    again = mix_batch(images, targets, weights, *mixup_draws(seed, n, 0.4))[0].numpy()
    other = mix_batch(images, targets, weights,
                      *mixup_draws(tf.constant([3, 8]), n, 0.4))[0].numpy()

    assert mixed.dtype == np.uint8 and mixed.shape == (n, 32, 32, 3)
    np.testing.assert_array_equal(mixed, again)
    assert not np.array_equal(mixed, other)
    assert (mixed == mixed[:, :1, :1, :1]).all()  # one blend per image, every pixel alike
    np.testing.assert_allclose(mixed_targets.sum(axis=1), 1.0, atol=1e-6)
    lam = np.diag(mixed_targets)
    partner = np.where((mixed_targets > 0).sum(axis=1) == 2,
                       np.where(np.eye(n, dtype=bool), -1, mixed_targets).argmax(axis=1),
                       np.arange(n))
    assert ((mixed_targets > 0).sum(axis=1) <= 2).all()
    moved = partner != np.arange(n)
    assert len(set(partner[moved])) == moved.sum()  # a permutation: no one is two partners
    blend = lam * shade + (1 - lam) * shade[partner]
    np.testing.assert_allclose(mixed[:, 0, 0, 0], blend, atol=0.5 + 1e-3)
    np.testing.assert_allclose(mixed_weights, lam * weights.numpy()
                               + (1 - lam) * weights.numpy()[partner], rtol=1e-5)
    assert moved.sum() > n // 2  # most images are blended with another
    assert lam.std() > 0.05  # lam varies per image (Beta(0.4, 0.4) is U-shaped)


@pytest.mark.slow
def test_mixup_training_is_seeded_and_changes_what_is_learnt(demo):
    x, y = demo.images[:256], demo.noisy_labels[:256]
    mixed = [predict_proba(train_classifier(x, y, SMOKE, 1, seed=0, mixup_alpha=0.4).model,
                           demo.images[256:512]) for _ in range(2)]
    plain = predict_proba(train_classifier(x, y, SMOKE, 1, seed=0, mixup_alpha=0.0).model,
                          demo.images[256:512])
    np.testing.assert_array_equal(mixed[0], mixed[1])
    assert not np.allclose(mixed[0], plain, atol=1e-3)
    with pytest.raises(ValueError, match="mixup_alpha"):
        train_classifier(x, y, SMOKE, 1, seed=0, mixup_alpha=-1.0)


def test_training_learns_and_is_deterministic(demo):
    plan = plan_splits(demo.clean_labels, 0.2, folds=2, seed=0)
    x, y = demo.images[plan.clean_train_idx], demo.clean_labels[plan.clean_train_idx]
    seen = []
    runs = [train_classifier(x, y, SMOKE, epochs=3, seed=7,
                             eval_images=demo.images[plan.val_idx],
                             eval_labels=demo.clean_labels[plan.val_idx],
                             on_epoch_end=lambda epoch, m: seen.append(epoch))
            for _ in range(2)]
    assert seen == [1, 2, 3, 1, 2, 3]
    first, second = (r.model for r in runs)
    history = runs[0].history
    assert set(history) == {"loss", "accuracy", "lr", "val_accuracy"}
    assert all(len(v) == 3 for v in history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert runs[0].images_per_second > 0 and runs[0].gflops_per_second > 0
    proba = predict_proba(first, demo.images[plan.val_idx])
    assert proba.shape == (plan.val_idx.size, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    # Demo classes are learnable: far above chance (10%) after 3 short epochs.
    assert np.mean(proba.argmax(1) == demo.clean_labels[plan.val_idx]) > 0.3
    np.testing.assert_array_equal(proba, predict_proba(second, demo.images[plan.val_idx]))
    other = train_classifier(x, y, SMOKE, epochs=1, seed=8).model
    assert not np.array_equal(proba, predict_proba(other, demo.images[plan.val_idx]))


def test_training_ignores_other_threads_drawing_from_the_global_random(demo):
    """Prefect's and MLflow's threads draw from Python's `random` (jitter, retries) while a
    task trains. Before the trainer seeded each layer itself, a draw between its
    `set_random_seed` and the model build changed the initial weights: the same seed gave
    probabilities up to 0.3 apart in the full test suite."""
    x, y = demo.images[:256], demo.clean_labels[:256]
    alone = train_classifier(x, y, SMOKE, epochs=1, seed=5).model
    stop = threading.Event()

    def draw_forever() -> None:
        while not stop.is_set():
            random.random()
            time.sleep(1e-4)

    drawer = threading.Thread(target=draw_forever, daemon=True)
    drawer.start()
    try:
        disturbed = train_classifier(x, y, SMOKE, epochs=1, seed=5).model
    finally:
        stop.set()
        drawer.join()
    np.testing.assert_array_equal(predict_proba(alone, demo.images[:64]),
                                  predict_proba(disturbed, demo.images[:64]))


def run_in_fresh_python(script: str, tmp_path: Path, env: dict[str, str] | None = None,
                        **arrays: np.ndarray) -> str:
    """Run `script` in a new interpreter with `arrays` saved to `inputs.npz` (its first
    argument) and `env` added to its environment; returns its stdout. Bit-exact claims
    about one process are checked in a fresh one: the test process carries the TensorFlow
    state of every test before it."""
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, **arrays)
    run = subprocess.run([sys.executable, "-c", script, str(inputs)], capture_output=True,
                         text=True, timeout=600, env={**os.environ, **(env or {})})
    assert run.returncode == 0, (run.returncode, run.stdout[-2000:], run.stderr[-3000:])
    return run.stdout


THREADED_MATCHES_SEQUENTIAL = textwrap.dedent("""
    import sys
    from concurrent.futures import ThreadPoolExecutor
    import numpy as np
    from relabel.config import PROFILES
    from relabel.tasks.train import train_classifier

    data = np.load(sys.argv[1])
    x, y = data["x"], data["y"]
    smoke = PROFILES["smoke"]
    bf16 = smoke.model_copy(update={"precision": "mixed_bfloat16"})

    def run(job):
        seed, profile = job
        return train_classifier(x, y, profile, epochs=1, seed=seed).model.get_weights()

    jobs = [(11, smoke), (12, bf16), (13, smoke)]
    # The reference runs one job at a time, each in a fresh thread like the threaded jobs:
    # Keras keeps its global state (seed, dtype policy, settings) per thread.
    sequential = []
    for job in jobs:
        with ThreadPoolExecutor(max_workers=1) as alone:
            sequential.append(alone.submit(run, job).result())
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = list(pool.map(run, jobs))
    for (seed, _), seq, thr in zip(jobs, sequential, threaded, strict=True):
        assert [w.dtype for w in seq] == [w.dtype for w in thr], seed
        for a, b in zip(seq, thr, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"job with seed {seed}")
    print("threaded == sequential")
""")


BFLOAT16_TWICE = textwrap.dedent("""
    import sys
    import numpy as np
    from relabel.config import PROFILES
    from relabel.tasks.train import train_classifier

    data = np.load(sys.argv[1])
    cpu = PROFILES["cpu"].model_copy(update={"precision": "mixed_bfloat16"})
    first, second = (train_classifier(data["x"], data["y"], cpu, epochs=1, seed=3,
                                      batch_size=256).model.get_weights() for _ in range(2))
    print(max(float(np.abs(a.astype(np.float64) - b).max()) for a, b in zip(first, second)))
""")


@pytest.mark.slow
@pytest.mark.skipif(machine_tier() == "float32", reason="bfloat16 is emulated here (10x slower)")
def test_full_width_bfloat16_training_is_reproducible(tmp_path):
    """The cpu profile's network in bfloat16, twice with one seed, in a process configured
    as relabel configures every process (one TensorFlow inter-op thread,
    relabel/settings.py): identical weights. With TensorFlow's default inter-op pool, 4 of 7
    such pairs differed on a 2-core EPYC (oneDNN's bfloat16 sums split by which ops overlap);
    the narrow smoke network never showed it."""
    rng = np.random.default_rng(0)
    out = run_in_fresh_python(BFLOAT16_TWICE, tmp_path,
                              x=rng.integers(0, 256, (1024, 32, 32, 3), dtype=np.uint8),
                              y=rng.integers(0, 10, 1024))
    assert float(out.split()[-1]) == 0.0


@pytest.mark.slow
def test_concurrent_training_on_threads_matches_sequential(demo, tmp_path):
    """Trainings started from several threads take turns (TENSORFLOW_LOCK): same seeds,
    same weights, whatever the interleaving, also for fresh models and bf16 policies."""
    out = run_in_fresh_python(THREADED_MATCHES_SEQUENTIAL, tmp_path,
                              x=demo.images[:256], y=demo.clean_labels[:256])
    assert "threaded == sequential" in out


@pytest.mark.slow
def test_save_and_load_give_the_same_predictions(demo, tmp_path):
    model = train_classifier(demo.images[:256], demo.noisy_labels[:256], SMOKE, 1, seed=0).model
    path = save_model(model, tmp_path / "m.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]
    loaded = load_model(path)
    np.testing.assert_allclose(predict_proba(model, demo.images[:50]),
                               predict_proba(loaded, demo.images[:50]), atol=1e-6)
    with pytest.raises(ValueError, match=".keras"):
        save_model(model, tmp_path / "m.h5")


def test_embeddings_come_from_the_passes_that_give_the_probabilities():
    from relabel.tasks.models import build_model

    model = build_model("airbench", width=0.25)
    images = np.random.default_rng(0).integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    proba, embeddings = predict_proba_and_embeddings(model, images, batch_size=32)
    np.testing.assert_allclose(proba, predict_proba(model, images, batch_size=32), atol=1e-6)
    assert embeddings.shape == (70, 64)  # the last layer's input: 256 channels x 0.25
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    # Flip TTA: an image and its mirror image get one embedding; without TTA they differ.
    _, mirrored = predict_proba_and_embeddings(model, images[:, :, ::-1], batch_size=32)
    np.testing.assert_allclose(mirrored, embeddings, atol=1e-5)
    _, one_view = predict_proba_and_embeddings(model, images, tta=False)
    assert not np.allclose(one_view, embeddings, atol=1e-3)


MANY_MODELS_PREDICT = textwrap.dedent("""
    import numpy as np
    from relabel.tasks.models import build_model
    from relabel.tasks.train import predict_proba

    images = np.random.default_rng(0).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    for _ in range(4):
        model = build_model("airbench", width=0.25)
        first = predict_proba(model, images, batch_size=128, tta=False)  # an epoch's eval
        predict_proba(model, images[:50])  # scoring: another batch size, flip TTA
    np.testing.assert_array_equal(first, predict_proba(model, images, batch_size=128,
                                                       tta=False))
    print("predicted")
""")


@pytest.mark.slow
def test_predicting_with_many_models_warns_of_no_retracing():
    """A run predicts with a dozen models (folds, students, Model I, Model II), each a few
    times with different batch sizes and TTA. TensorFlow counts tf.function traces per
    Python function across all its instances, so a tf.function per model made two
    "triggered tf.function retracing" warnings. In a fresh process: the counts (and the
    two warnings TensorFlow allows) are process-wide, and other tests spend them."""
    run = subprocess.run([sys.executable, "-c", MANY_MODELS_PREDICT], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "predicted" in run.stdout
    assert "retracing" not in run.stderr, run.stderr[-3000:]


@pytest.mark.slow
def test_soft_targets_weights_and_forward_loss(demo):
    n = 256
    soft = np.full((n, 10), 0.05, np.float32)
    soft[np.arange(n), demo.noisy_labels[:n]] = 0.55
    result = train_classifier(demo.images[:n], soft, SMOKE, 1, seed=0,
                              sample_weight=np.linspace(0.1, 1, n))
    assert np.isfinite(result.history["loss"]).all()
    with pytest.raises(ValueError, match="summing to 1"):
        train_classifier(demo.images[:n], soft * 2, SMOKE, 1, seed=0)
    with pytest.raises(ValueError, match=r"\[n, 32, 32, 3\]"):
        train_classifier(demo.images[:n, :16], demo.noisy_labels[:n], SMOKE, 1, seed=0)


@pytest.mark.slow
def test_mirrored_strategy_path_trains_on_two_devices():
    """The multi-GPU code path, on two logical CPU devices (set before TF starts)."""
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from relabel.config import PROFILES
        from relabel.tasks.train import train_classifier
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, 512)
        r = train_classifier(x, y, PROFILES["smoke"], 2, seed=0, strategy=strategy)
        assert strategy.num_replicas_in_sync == 2
        print("LOSS", r.history["loss"])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOSS" in out.stdout


XLA_THEN_DETERMINISTIC = textwrap.dedent("""
    import sys
    import numpy as np
    from tensorflow.python.framework import config as tf_config
    from relabel.config import PROFILES
    from relabel.tasks.train import predict_proba, train_classifier

    data = np.load(sys.argv[1])
    x, y = data["x"], data["y"]
    smoke = PROFILES["smoke"]
    xla = smoke.model_copy(update={"jit_compile": True})
    result = train_classifier(x, y, xla, 1, seed=0)
    assert np.isfinite(result.history["loss"]).all()
    first = predict_proba(train_classifier(x, y, smoke, 1, seed=0).model, x[:20])
    second = predict_proba(train_classifier(x, y, smoke, 1, seed=0).model, x[:20])
    np.testing.assert_array_equal(first, second)
    assert tf_config.is_op_determinism_enabled()
    print("deterministic again")
""")


@pytest.mark.slow
def test_xla_compiled_training_runs_and_determinism_comes_back(demo, tmp_path):
    """XLA has no deterministic max-pool gradient: an XLA run must switch op determinism
    off rather than fail, and the next default run must be deterministic again."""
    out = run_in_fresh_python(XLA_THEN_DETERMINISTIC, tmp_path,
                              x=demo.images[:256], y=demo.noisy_labels[:256])
    assert "deterministic again" in out


OVERLAPPING_STEPS = textwrap.dedent("""
    import threading
    import tensorflow as tf

    inside, release = threading.Event(), threading.Event()

    def hold(x):
        inside.set()
        release.wait(30)
        return x

    @tf.function
    def step_with_a_temporary(x):
        var = tf.raw_ops.TemporaryVariable(shape=[2], dtype=tf.float32, var_name="tmp_var")
        var = tf.raw_ops.Assign(ref=var, value=x)
        with tf.control_dependencies([var]):
            held = tf.py_function(hold, [x], tf.float32)
        with tf.control_dependencies([held]):
            return tf.raw_ops.DestroyTemporaryVariable(ref=var, var_name="tmp_var")

    x = tf.ones([2])
    step_with_a_temporary.get_concrete_function(x)
    errors = []

    def second_step():
        try:
            assert inside.wait(30), "the first step never started"
            step_with_a_temporary(x)
        except Exception as exc:
            errors.append(exc)
        finally:
            release.set()

    threads = [threading.Thread(target=step_with_a_temporary, args=(x,)),
               threading.Thread(target=second_step)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 1 and isinstance(errors[0], tf.errors.AlreadyExistsError), errors
    assert "__per_step_0/tmp_var" in str(errors[0])
    step_with_a_temporary(x)  # one step at a time is fine
    print("collided")
""")


def test_overlapping_tensorflow_steps_collide_on_per_step_temporaries(tmp_path):
    """Why the trainer holds TENSORFLOW_LOCK, reproduced without timing luck. Grappler
    rewrites a gradient AddN into a per-step TemporaryVariable; every function call in a
    process runs in step container `__per_step_0`, so while one call holds its temporary,
    a second call's fails with the reference run's error (AlreadyExistsError on
    `__per_step_0/.../TemporaryVariableOp`). Here the first call is held inside its step
    until the second has tried. relabel's default of one inter-op thread
    (relabel/settings.py) happens to queue this construction instead, but a user may set
    TF_NUM_INTEROP_THREADS, so the collision is shown with two. If TensorFlow ever stops
    colliding, this test says so."""
    out = run_in_fresh_python(OVERLAPPING_STEPS, tmp_path, env={"TF_NUM_INTEROP_THREADS": "2"})
    assert "collided" in out


TRAININGS_ON_TWO_THREADS = textwrap.dedent("""
    import sys, threading
    import numpy as np
    from relabel.config import PROFILES
    from relabel.tasks.train import train_classifier

    profile = PROFILES["cpu"]  # the network that crashed on the reference data
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 512)
    # After its first epoch each training waits (up to 20 s) for the other to finish its
    # first epoch too. Trainings that overlap meet there, and then run their second epochs
    # at the same time; trainings that take turns never meet.
    both_inside = threading.Barrier(2, timeout=20)
    met, errors = [], []

    def meet(epoch, metrics):
        try:
            both_inside.wait()
            met.append(epoch)
        except threading.BrokenBarrierError:
            pass

    def training(seed):
        try:
            train_classifier(images, labels, profile, epochs=2, seed=seed, batch_size=256,
                             on_epoch_end=lambda e, m: meet(e, m) if e == 1 else None)
        except Exception as exc:
            errors.append(repr(exc)[:300])

    threads = [threading.Thread(target=training, args=(seed,)) for seed in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("met:", len(met), "errors:", errors)
""")


@pytest.mark.slow
def test_trainings_on_two_threads_never_overlap():
    """The thread runner trained the clean folds on threads and crashed (the collision
    above, or a SIGSEGV while one thread built a model and another trained). Two
    cpu-profile trainings started together on two threads must take turns: the second
    starts only after the first has finished. In a subprocess, so a crash fails this test,
    not the session."""
    run = subprocess.run([sys.executable, "-c", TRAININGS_ON_TWO_THREADS],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.returncode, run.stdout[-2000:], run.stderr[-3000:])
    assert "met: 0 errors: []" in run.stdout, run.stdout[-2000:]


@pytest.mark.slow
def test_ema_weights_with_recalibrated_batch_norm(demo):
    """With ema_momentum the model ends on the averaged weights (not the last step's) and
    BatchNorm statistics recomputed for them; it still learns the demo classes."""
    plan = plan_splits(demo.clean_labels, 0.2, folds=2, seed=0)
    x, y = demo.images[plan.clean_train_idx], demo.clean_labels[plan.clean_train_idx]
    ema = SMOKE.model_copy(update={"ema_momentum": 0.5})  # 9 steps: average the recent ones
    plain = train_classifier(x, y, SMOKE, epochs=3, seed=7).model
    averaged = train_classifier(x, y, ema, epochs=3, seed=7).model
    assert any(not np.array_equal(a, b)
               for a, b in zip(plain.get_weights(), averaged.get_weights(), strict=True))
    proba = predict_proba(averaged, demo.images[plan.val_idx])
    # Well above chance (10%; 120 images: 0.25 is 5 standard errors above it). The average
    # of 9 short steps sits near 0.3 (0.30 with the seeded initialisers and one inter-op
    # thread; above 0.3 before).
    assert np.mean(proba.argmax(1) == demo.clean_labels[plan.val_idx]) > 0.25


def test_one_device_means_no_distribution() -> None:
    """Multi-GPU is tasks.train's MirroredStrategy; with at most one GPU (this machine: none)
    it must be the default strategy, one replica, so batch size and learning rate stay put."""
    import tensorflow as tf

    from relabel.tasks.train import distribution_strategy

    if len(tf.config.list_logical_devices("GPU")) > 1:
        pytest.skip("several GPUs visible: the MirroredStrategy path applies")
    strategy = distribution_strategy()
    assert not isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 1
