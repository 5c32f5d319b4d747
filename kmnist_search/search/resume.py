"""Training that continues after a kill: the state of a training run saved after every epoch.

A search trial or a winner's retraining saves, after each completed epoch, everything the next epoch
depends on: the weights, the optimizer's state, and the state of every random generator in the
model (dropout, augmentation). The shuffling order of each epoch is drawn from (seed, epoch) alone,
and the learning-rate schedule follows the epoch number, so a run killed at any point and started
again continues from its last completed epoch and ends where an uninterrupted run would have, up to
floating-point summation order.

The commit point is one atomic write of ``state.json``, which names the weights file of its epoch:
a kill before it leaves the previous epoch's state whole, a kill after it the new one.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kmnist_search.base.files import atomic_write_json, staged_path
from kmnist_search.data.rundir import read_json

STATE_FILE = "state.json"


def seed_generators(model: keras.Model) -> dict[str, Any]:
    """Every random generator in the model, by a name unique within it."""
    generators = {}
    for layer in model._flatten_layers():  # Keras keeps each layer's generators on the layer itself
        for index, generator in enumerate(getattr(layer, "_seed_generators", [])):
            generators[f"{layer.name}/{index}"] = generator
    return generators


def save_weights_atomically(model: keras.Model, path: Path) -> None:
    """Write a model's weights (and its optimizer's state) so that a kill never leaves a half-written file."""
    with staged_path(path) as staged:
        model.save_weights(staged)


class TrainingCheckpoint:
    """One training run's saved state in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state_path = directory / STATE_FILE

    def saved_epoch(self) -> int:
        """The last completed epoch that was saved (0: none)."""
        state = read_json(self.state_path)
        return int(state["epoch"]) if state else 0

    def stopped(self) -> bool:
        """True when the saved epoch is where training ended early (pruned, or stopped by early stopping):
        a resumed run must not train past it."""
        state = read_json(self.state_path)
        return bool(state and state.get("stopped"))

    def restore(self, model: keras.Model) -> int:
        """Load the saved state into a freshly built, compiled model; return the epoch it ends."""
        state = read_json(self.state_path)
        if not state:
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(self.directory / state["weights"])
        except (OSError, ValueError, KeyError):  # a truncated or damaged weights file (h5py raises OSError)
            self.clear()  # not the configuration's fault: its training starts again from the beginning
            return 0
        generators = seed_generators(model)
        for name, value in state["seed_states"].items():
            generators[name].state.assign(np.asarray(value, dtype=generators[name].state.dtype))
        return int(state["epoch"])

    def save(self, model: keras.Model, epoch: int) -> None:
        """Save the state after ``epoch``: its weights file first, then the state that names it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{epoch:04d}.weights.h5"
        save_weights_atomically(model, self.directory / weights)
        seed_states = {name: np.asarray(g.state.numpy()).tolist() for name, g in seed_generators(model).items()}
        atomic_write_json(self.state_path, {"epoch": epoch, "weights": weights, "seed_states": seed_states,
                                            "stopped": bool(model.stop_training)})
        for stale in self.directory.glob("*.weights.h5"):
            if stale.name != weights:
                stale.unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget the saved state (the run it belonged to has been recorded as finished)."""
        shutil.rmtree(self.directory, ignore_errors=True)


class SaveTrainingState(keras.callbacks.Callback):
    """Save the training state after every epoch (deep copies share the checkpoint's directory)."""

    def __init__(self, checkpoint: TrainingCheckpoint) -> None:
        super().__init__()
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            return  # a diverged epoch fails its run; a rerun repeats it (and fails the same way)
        self.checkpoint.save(self.model, epoch + 1)


class EpochOrder(keras.callbacks.Callback):
    """Draw each epoch's shuffling order from (seed, epoch) alone, before the epoch reads its batches."""

    def __init__(self, seed: int, count: int) -> None:
        import tensorflow as tf  # the Keras backend; its data pipeline feeds the model

        super().__init__()
        self.seed = seed
        self.order = tf.Variable(np.arange(count, dtype=np.int64), trainable=False)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.order.assign(np.random.default_rng([self.seed, epoch]).permutation(len(self.order.numpy())))
        self.epoch.assign(epoch)


def epoch_batches(images: np.ndarray, targets: np.ndarray, batch_size: int, seed: int,
                  mixup_alpha: float = 0.0) -> tuple[Any, EpochOrder]:
    """One epoch of training batches in the order :class:`EpochOrder` (the returned callback, which the
    training must use) draws for the epoch, so a resumed run sees the same batches as an uninterrupted
    one. With ``mixup_alpha``, each batch is blended with a permutation of itself by one
    Beta(alpha, alpha) weight (mixup, Zhang et al., 2018) drawn from (seed, epoch, batch)."""
    import tensorflow as tf  # the Keras backend; its data pipeline feeds the model

    order = EpochOrder(seed, len(images))
    image_tensor = tf.constant(images)
    target_tensor = tf.constant(targets.astype(np.float32))

    def gather(step: Any) -> tuple[Any, Any]:
        indices = order.order[step * batch_size:(step + 1) * batch_size]
        batch_images, batch_targets = tf.gather(image_tensor, indices), tf.gather(target_tensor, indices)
        if mixup_alpha <= 0:
            return batch_images, batch_targets
        stream = tf.stack([tf.cast(seed, tf.int64), order.epoch * 1_000_003 + step])
        first = tf.random.stateless_gamma([], stream, alpha=mixup_alpha)
        second = tf.random.stateless_gamma([], stream + 1, alpha=mixup_alpha)
        weight = first / (first + second)
        partner = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(indices)[0]), stream + 2)
        batch_images = tf.cast(batch_images, tf.float32)
        return (weight * batch_images + (1 - weight) * tf.gather(batch_images, partner),
                weight * batch_targets + (1 - weight) * tf.gather(batch_targets, partner))

    steps = math.ceil(len(images) / batch_size)
    dataset = (tf.data.Dataset.range(steps)
               .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .prefetch(tf.data.AUTOTUNE))
    return dataset, order
