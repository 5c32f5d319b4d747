"""The study's CNN and the Keras Tuner HyperModel around it.

``build(hp)`` picks the learning rate and the loss; ``fit(hp, ...)`` picks the batch size, as the
Keras Tuner guides recommend for training knobs.

Pixel scaling lives inside the model (a ``Rescaling(1/255)`` layer), so the model, and the ONNX file
exported from it, takes raw pixel values: float32 in [0, 255], shape (batch, 28, 28, 1). Callers
never have to remember to divide by 255.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from kmnist_search.spaces import SearchSpace

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
STEPS_PER_EXECUTION = 32  # many steps per call: removes most per-step overhead at small batches


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The named optimizer at the given learning rate (SGD gets Nesterov-free momentum 0.9)."""
    if name == "adadelta":
        return keras.optimizers.Adadelta(learning_rate=learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {name!r}")


def build_cnn(
    num_classes: int = 10,
    image_shape: tuple[int, int] = (28, 28),
    learning_rate: float = 1.0,
    loss: str = "categorical_crossentropy",
    optimizer: str = "adadelta",
    steps_per_execution: int = STEPS_PER_EXECUTION,
) -> keras.Model:
    """The Keras MNIST CNN of the study, compiled: Conv32-Conv64-MaxPool-Dropout.25-Flatten-
    Dense128-Dropout.5-Dense(num_classes) softmax, taking raw pixels in [0, 255]."""
    layers = keras.layers
    inputs = keras.Input(shape=(*image_shape, 1), name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 255.0, name="scale_to_unit")(inputs)
    x = layers.Conv2D(32, 3, activation="relu", name="conv32")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv64")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Dropout(0.25, name="dropout_conv")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="dense128")(x)
    x = layers.Dropout(0.5, name="dropout_dense")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name="kmnist_cnn")
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss=loss,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
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
    """The study's CNN with tunable learning rate and loss (build) and batch size (fit)."""

    def __init__(self, space: SearchSpace, num_classes: int, image_shape: tuple[int, int] = (28, 28)) -> None:
        super().__init__(name="kmnist_cnn", tunable=True)
        self.space = space
        self.num_classes = num_classes
        self.image_shape = image_shape

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        learning_rate = hp.Choice("learning_rate", list(self.space.learning_rates))
        loss = hp.Choice("loss", list(self.space.losses))
        return build_cnn(self.num_classes, self.image_shape, learning_rate, loss, self.space.optimizer)

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> keras.callbacks.History:
        batch_size = hp.Choice("batch_size", list(self.space.batch_sizes))
        history = model.fit(*args, batch_size=batch_size, **kwargs)
        fail_on_non_finite_loss(history)
        return history


def fail_on_non_finite_loss(history: keras.callbacks.History) -> None:
    """Mark a trial failed (not retried) when its loss diverged to NaN or infinity."""
    for epoch, loss in enumerate(history.history.get("loss", []), start=1):
        if not math.isfinite(loss):
            raise kt.errors.FailedTrialError(
                f"loss became {loss} at epoch {epoch}: this learning rate diverges with this loss"
            )
