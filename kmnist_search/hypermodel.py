"""The study's CNN and the Keras Tuner HyperModel around it.

``build(hp)`` picks the learning rate and the loss; ``fit(hp, ...)`` picks the batch size, as the
Keras Tuner guides recommend for training knobs.

Pixel scaling lives inside the model (a ``Rescaling(1/255)`` layer), so the model, and the ONNX file
exported from it, takes raw pixel values: float32 in [0, 255], shape (batch, 28, 28, 1). Callers
never have to remember to divide by 255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from kmnist_search.optimizers import FusedAdadelta, FusedAdam, FusedSGD
from kmnist_search.spaces import SearchSpace

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
AUGMENTATION_PREFIX = "augment_"  # training-only layers, left out of exports
STEPS_PER_EXECUTION = 32  # many steps per call: removes most per-step overhead at small batches


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The named optimizer at the given learning rate (SGD gets Nesterov-free momentum 0.9), with
    Keras's arithmetic in TensorFlow's fused update kernels where TensorFlow has one."""
    if name == "adadelta":
        return FusedAdadelta(learning_rate=learning_rate)
    if name == "adam":
        return FusedAdam(learning_rate=learning_rate)
    if name == "sgd":
        return FusedSGD(learning_rate=learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {name!r}")


@dataclass(frozen=True)
class Architecture:
    """The network's shape. The defaults are the study's CNN exactly."""

    conv_layers: str = "32-64"
    batch_norm: bool = False
    dropout_conv: float = 0.25
    dense_units: int = 128
    dropout_dense: float = 0.5
    augment: float = 0.0
    cutout: float = 0.0


class BalancedAccuracy(keras.metrics.Metric):
    """Mean per-class recall (scikit-learn's balanced accuracy) over one-hot labels, accumulated
    over an epoch: the metric the Kuzushiji-49 benchmark reports for its imbalanced classes."""

    def __init__(self, num_classes: int, name: str = "balanced_accuracy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.hits = self.add_variable(shape=(num_classes,), initializer="zeros", name="hits")
        self.counts = self.add_variable(shape=(num_classes,), initializer="zeros", name="counts")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        true = keras.ops.argmax(y_true, axis=-1)
        correct = keras.ops.cast(keras.ops.equal(true, keras.ops.argmax(y_pred, axis=-1)), self.dtype)
        true_one_hot = keras.ops.one_hot(true, self.num_classes, dtype=self.dtype)
        self.hits.assign_add(keras.ops.sum(true_one_hot * correct[:, None], axis=0))
        self.counts.assign_add(keras.ops.sum(true_one_hot, axis=0))

    def result(self) -> Any:
        present = keras.ops.cast(self.counts > 0, self.dtype)
        recall = keras.ops.divide_no_nan(self.hits, self.counts)
        return keras.ops.sum(recall) / keras.ops.maximum(keras.ops.sum(present), 1.0)

    def reset_state(self) -> None:
        self.hits.assign(keras.ops.zeros_like(self.hits))
        self.counts.assign(keras.ops.zeros_like(self.counts))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}


def build_cnn(
    num_classes: int = 10,
    image_shape: tuple[int, int] = (28, 28),
    learning_rate: float = 1.0,
    loss: str = "categorical_crossentropy",
    optimizer: str = "adadelta",
    steps_per_execution: int = STEPS_PER_EXECUTION,
    architecture: Architecture = Architecture(),
    balanced_accuracy: bool = False,
) -> keras.Model:
    """The study's CNN (by default exactly the Keras MNIST example: Conv32-Conv64-MaxPool-Dropout.25-
    Flatten-Dense128-Dropout.5-Dense softmax), compiled, taking raw pixels in [0, 255].

    ``architecture.conv_layers`` lists 3x3 ReLU convolutions by filter count, with ``p`` for a 2x2
    max-pool (followed by the convolution dropout); a final pool closes the stack. Augmentation
    layers (rotation, shift, zoom, random erasing) act in training only, so inference and the ONNX export see
    the plain network.
    """
    layers = keras.layers
    inputs = keras.Input(shape=(*image_shape, 1), name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 255.0, name="scale_to_unit")(inputs)
    if architecture.augment > 0:
        strength = architecture.augment
        x = layers.RandomRotation(strength / 4, fill_mode="constant", name=f"{AUGMENTATION_PREFIX}rotation")(x)
        x = layers.RandomTranslation(strength, strength, fill_mode="constant", name=f"{AUGMENTATION_PREFIX}shift")(x)
        x = layers.RandomZoom(strength, fill_mode="constant", name=f"{AUGMENTATION_PREFIX}zoom")(x)
    if architecture.cutout > 0:
        x = layers.RandomErasing(factor=(architecture.cutout, architecture.cutout), fill_value=0.0, value_range=(0, 1),
                                 name=f"{AUGMENTATION_PREFIX}erasing")(x)
    tokens = [*architecture.conv_layers.split("-"), "p"]
    for index, token in enumerate(tokens):
        if token == "p":
            x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
            x = layers.Dropout(architecture.dropout_conv, name=f"dropout_conv{index}")(x)
            continue
        if architecture.batch_norm:
            x = layers.Conv2D(int(token), 3, use_bias=False, name=f"conv{index}_{token}")(x)
            x = layers.BatchNormalization(name=f"bn{index}")(x)
            x = layers.Activation("relu", name=f"relu{index}")(x)
        else:
            x = layers.Conv2D(int(token), 3, activation="relu", name=f"conv{index}_{token}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(architecture.dense_units, activation="relu", name=f"dense{architecture.dense_units}")(x)
    x = layers.Dropout(architecture.dropout_dense, name="dropout_dense")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name="kmnist_cnn")
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss=loss,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                 *([BalancedAccuracy(num_classes)] if balanced_accuracy else [])],
        steps_per_execution=steps_per_execution,
    )
    return model


def search_hyperparameters(space: SearchSpace) -> kt.HyperParameters:
    """The whole search space declared up front, so every strategy sees it from trial one."""
    hp = kt.HyperParameters()
    for name, values in space.values().items():
        hp.Choice(name, list(values))
    return hp


def to_model_input(images: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 -> (N, H, W, 1) view; the model scales pixels itself."""
    return images[..., np.newaxis]


class KmnistHyperModel(kt.HyperModel):
    """The study's CNN with tunable learning rate, loss, optimizer and architecture (build) and batch
    size (fit). Hyperparameters the space does not search keep the study's values."""

    def __init__(self, space: SearchSpace, num_classes: int, image_shape: tuple[int, int] = (28, 28),
                 objective: str = "accuracy") -> None:
        super().__init__(name="kmnist_cnn", tunable=True)
        self.space = space
        self.num_classes = num_classes
        self.image_shape = image_shape
        self.objective = objective

    def value(self, hp: kt.HyperParameters, name: str) -> Any:
        """The trial's value of a hyperparameter, or its fixed value if the space does not search it."""
        values = self.space.values().get(name)
        if values:
            return hp.Choice(name, list(values))
        optimizer = self.value(hp, "optimizer") if name == "learning_rate" else None
        return self.space.fixed_value(name, optimizer)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        architecture = Architecture(**{f.name: self.value(hp, f.name) for f in fields(Architecture)})
        return build_cnn(self.num_classes, self.image_shape, self.value(hp, "learning_rate"), self.value(hp, "loss"),
                         self.value(hp, "optimizer"), architecture=architecture,
                         balanced_accuracy=self.objective == "balanced_accuracy")

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> keras.callbacks.History:
        # Ours go first, so that loggers among the caller's callbacks see the learning rate they set.
        callbacks: list[keras.callbacks.Callback] = []
        epochs = int(kwargs.get("epochs", self.space.epochs))
        if self.space.lr_schedule == "cosine":
            callbacks.append(cosine_schedule(float(self.value(hp, "learning_rate")), epochs))
        if self.space.early_stopping_patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor=f"val_{self.objective}", mode="max",
                                                           patience=self.space.early_stopping_patience))
        callbacks += kwargs.pop("callbacks", None) or []
        batch_size = int(self.value(hp, "batch_size"))
        mixup = float(self.value(hp, "mixup"))
        if mixup > 0:
            images, labels, *rest = args
            kwargs["shuffle"] = False  # the batches reshuffle themselves every epoch
            history = model.fit(mixup_batches(images, labels, batch_size, mixup), *rest, callbacks=callbacks,
                                **kwargs)
        else:
            history = model.fit(*args, batch_size=batch_size, callbacks=callbacks, **kwargs)
        fail_on_non_finite_loss(history)
        return history


def mixup_batches(images: np.ndarray, one_hot_labels: np.ndarray, batch_size: int, alpha: float) -> Any:
    """Reshuffled training batches with mixup (Zhang et al., 2018): each batch is blended with a
    permutation of itself, images and labels alike, by one Beta(alpha, alpha) weight per batch.
    Training only; validation and the exported model see plain images."""
    import tensorflow as tf  # the Keras backend; only mixup needs its data pipeline

    def mix(batch_images: Any, batch_labels: Any) -> tuple[Any, Any]:
        batch_images = tf.cast(batch_images, tf.float32)
        first, second = tf.random.gamma([], alpha), tf.random.gamma([], alpha)
        weight = first / (first + second)
        partner = tf.random.shuffle(tf.range(tf.shape(batch_images)[0]))
        return (weight * batch_images + (1 - weight) * tf.gather(batch_images, partner),
                weight * batch_labels + (1 - weight) * tf.gather(batch_labels, partner))

    return (tf.data.Dataset.from_tensor_slices((images, one_hot_labels.astype(np.float32)))
            .shuffle(len(images), reshuffle_each_iteration=True)
            .batch(batch_size)
            .map(mix, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def cosine_schedule(learning_rate: float, epochs: int) -> keras.callbacks.LearningRateScheduler:
    """Cosine decay from ``learning_rate`` towards zero over ``epochs``, set once per epoch."""
    return keras.callbacks.LearningRateScheduler(
        lambda epoch: learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1))))


def fail_on_non_finite_loss(history: keras.callbacks.History) -> None:
    """Mark a trial failed (not retried) when its loss diverged to NaN or infinity."""
    for epoch, loss in enumerate(history.history.get("loss", []), start=1):
        if not math.isfinite(loss):
            raise kt.errors.FailedTrialError(
                f"loss became {loss} at epoch {epoch}: this learning rate diverges with this loss"
            )
