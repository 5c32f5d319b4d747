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

from kmnist_search.data.contract import AUGMENTATION_PREFIX, INPUT_NAME, OUTPUT_NAME, to_model_input
from kmnist_search.data.spaces import SGD_MOMENTUM, SearchSpace, default_learning_rate, study_default
from kmnist_search.search.optimizers import FusedAdadelta, FusedAdam, FusedSGD
from kmnist_search.search.resume import SaveTrainingState, TrainingCheckpoint, epoch_batches

__all__ = ["Architecture", "KmnistHyperModel", "build_network", "make_optimizer", "optimizer_config", "to_model_input"]

STEPS_PER_EXECUTION = 32  # many steps per call: removes most per-step overhead at small batches


def make_optimizer(name: str, learning_rate: float, weight_decay: float = 0.0,
                   nesterov: bool = False) -> keras.optimizers.Optimizer:
    """The named optimizer at the given learning rate (SGD with momentum 0.9, Nesterov's if asked), with
    decoupled weight decay if asked, and Keras's arithmetic in TensorFlow's fused update kernels where
    TensorFlow has one."""
    decay = {"weight_decay": weight_decay} if weight_decay else {}
    if name == "adadelta":
        return FusedAdadelta(learning_rate=learning_rate, **decay)
    if name == "adam":
        return FusedAdam(learning_rate=learning_rate, **decay)
    if name == "sgd":
        return FusedSGD(learning_rate=learning_rate, momentum=SGD_MOMENTUM, nesterov=nesterov, **decay)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate, **decay)
    raise ValueError(f"unknown optimizer {name!r}")


def optimizer_config(name: str, optimizer: keras.optimizers.Optimizer) -> dict[str, Any]:
    """The optimizer's effective settings as built (the space's name for it, its learning rate and
    every numeric or boolean option, Keras's defaults resolved), for the results and the model card."""
    config = optimizer.get_config()
    settings: dict[str, Any] = {"name": name}
    for key, value in sorted(config.items()):
        if key == "learning_rate":  # held in float32: its shortest decimal form (0.001, not 0.0010000000474)
            settings[key] = float(str(np.float32(value)))
        elif key != "name" and isinstance(value, (bool, int, float)):
            settings[key] = value
    return settings


@dataclass(frozen=True)
class Architecture:
    """The network's shape and its training-only augmentation; the defaults (from
    :mod:`kmnist_search.data.spaces`) are the study's CNN exactly."""

    network: str = study_default("network")
    conv_layers: str = study_default("conv_layers")
    batch_norm: bool = study_default("batch_norm")
    dropout_conv: float = study_default("dropout_conv")
    dense_units: int = study_default("dense_units")
    dropout_dense: float = study_default("dropout_dense")
    resnet_depth: int = study_default("resnet_depth")
    resnet_width: int = study_default("resnet_width")
    augment: float = study_default("augment")
    cutout: float = study_default("cutout")
    cutout_area: float = study_default("cutout_area")


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


def build_network(
    num_classes: int = 10,
    image_shape: tuple[int, int] = (28, 28),
    learning_rate: float | None = None,
    loss: str = study_default("loss"),
    optimizer: str = study_default("optimizer"),
    steps_per_execution: int = STEPS_PER_EXECUTION,
    architecture: Architecture = Architecture(),
    balanced_accuracy: bool = False,
    weight_decay: float = study_default("weight_decay"),
    nesterov: bool = study_default("nesterov"),
    label_smoothing: float = study_default("label_smoothing"),
) -> keras.Model:
    """The network, compiled, taking raw pixels in [0, 255]: by default exactly the study's CNN (the
    Keras MNIST example: Conv32-Conv64-MaxPool-Dropout.25-Flatten-Dense128-Dropout.5-Dense softmax).
    Without a learning rate, the optimizer's usual one (Adadelta: Keras 2's 1.0).

    For the CNN, ``architecture.conv_layers`` lists 3x3 ReLU convolutions by filter count, with ``p``
    for a 2x2 max-pool (followed by the convolution dropout); a final pool closes the stack. The
    ``preact_resnet`` network is He et al.'s pre-activation residual network for small images. The
    augmentation layers (rotation, shift, zoom, random erasing) act in training only, so inference and
    the ONNX export see the plain network.
    """
    layers = keras.layers
    inputs = keras.Input(shape=(*image_shape, 1), name=INPUT_NAME)
    x = augmentation(layers.Rescaling(1.0 / 255.0, name="scale_to_unit")(inputs), architecture)
    if architecture.network == "preact_resnet":
        outputs = preact_resnet(x, architecture, num_classes)
    else:
        outputs = study_cnn(x, architecture, num_classes)
    model = keras.Model(inputs, outputs, name=f"kmnist_{architecture.network}")
    loss_function: Any = (keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
                          if label_smoothing and loss == "categorical_crossentropy" else loss)
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate or default_learning_rate(optimizer), weight_decay, nesterov),
        loss=loss_function,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                 *([BalancedAccuracy(num_classes)] if balanced_accuracy else [])],
        steps_per_execution=steps_per_execution,
    )
    return model


def augmentation(x: Any, architecture: Architecture) -> Any:
    """The training-only augmentation layers (named with AUGMENTATION_PREFIX, left out of exports)."""
    layers = keras.layers
    if architecture.augment > 0:
        strength = architecture.augment
        x = layers.RandomRotation(strength / 4, fill_mode="constant", name=f"{AUGMENTATION_PREFIX}rotation")(x)
        x = layers.RandomTranslation(strength, strength, fill_mode="constant", name=f"{AUGMENTATION_PREFIX}shift")(x)
        x = layers.RandomZoom(strength, fill_mode="constant", name=f"{AUGMENTATION_PREFIX}zoom")(x)
    if architecture.cutout > 0:
        area = architecture.cutout_area
        x = layers.RandomErasing(factor=(architecture.cutout, architecture.cutout),
                                 scale=(area, area) if area else (0.02, 0.33), fill_value=0.0, value_range=(0, 1),
                                 name=f"{AUGMENTATION_PREFIX}erasing")(x)
    return x


def preact_block(x: Any, filters: int, stride: int, name: str) -> Any:
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 added to the input (a 1x1 convolution of it where the shape changes)."""
    layers = keras.layers
    activated = layers.Activation("relu", name=f"{name}_relu1")(layers.BatchNormalization(name=f"{name}_bn1")(x))
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_shortcut")(activated)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(activated)
    y = layers.Activation("relu", name=f"{name}_relu2")(layers.BatchNormalization(name=f"{name}_bn2")(y))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def study_cnn(x: Any, architecture: Architecture, num_classes: int) -> Any:
    """The study's CNN family on top of ``x``."""
    layers = keras.layers
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
    return layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)


def preact_resnet(x: Any, architecture: Architecture, num_classes: int) -> Any:
    """A pre-activation residual network (He et al., 2016, for CIFAR-sized images): a 3x3 stem, three
    stages of (depth - 2) / 6 blocks of BN-ReLU-conv3x3-BN-ReLU-conv3x3 with identity shortcuts (1x1
    convolutions where the shape changes), widths w, 2w, 4w, strides 1, 2, 2, then BN-ReLU, global
    average pooling and a softmax classifier."""
    layers = keras.layers
    blocks = (architecture.resnet_depth - 2) // 6
    width = architecture.resnet_width
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(x)
    for stage in range(3):
        filters = width * 2 ** stage
        for block in range(blocks):
            x = preact_block(x, filters, 2 if stage > 0 and block == 0 else 1, f"stage{stage + 1}_block{block + 1}")
    x = layers.Activation("relu", name="final_relu")(layers.BatchNormalization(name="final_bn")(x))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)


def search_hyperparameters(space: SearchSpace) -> kt.HyperParameters:
    """The whole search space declared up front, so every strategy sees it from trial one."""
    hp = kt.HyperParameters()
    for name, values in space.values().items():
        hp.Choice(name, list(values))
    return hp


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
        return build_network(self.num_classes, self.image_shape, self.value(hp, "learning_rate"),
                             self.value(hp, "loss"), self.value(hp, "optimizer"), architecture=architecture,
                             balanced_accuracy=self.objective == "balanced_accuracy",
                             weight_decay=float(self.value(hp, "weight_decay")),
                             nesterov=bool(self.value(hp, "nesterov")),
                             label_smoothing=float(self.value(hp, "label_smoothing")))

    def optimizer_settings(self, hp: kt.HyperParameters, model: keras.Model) -> dict[str, Any]:
        """The optimizer of ``model`` (built for ``hp``) as the record keeps it, with its initial learning
        rate (a schedule may have moved the live one)."""
        settings = optimizer_config(str(self.value(hp, "optimizer")), model.optimizer)
        settings["learning_rate"] = float(str(np.float32(self.value(hp, "learning_rate"))))
        return settings

    def built_hyperparameters(self, model: keras.Model) -> dict[str, Any]:
        """Hyperparameters only the built model knows: none here (the space resolves every one)."""
        return {}

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> keras.callbacks.History:
        """Train on ``(images, targets)``, each epoch shuffled by (``shuffle_seed``, epoch). With a
        ``checkpoint`` (a :class:`~kmnist_search.search.resume.TrainingCheckpoint`), training continues from
        its last saved epoch and saves its state after every epoch."""
        checkpoint: TrainingCheckpoint | None = kwargs.pop("checkpoint", None)
        seed = int(kwargs.pop("shuffle_seed", 0))
        first_epoch = int(kwargs.pop("initial_epoch", 0))  # Hyperband continues a trial from here
        epochs = int(kwargs.pop("epochs", self.space.epochs))
        # Ours go first, so that loggers among the caller's callbacks see the learning rate they set.
        callbacks: list[keras.callbacks.Callback] = []
        warmup = int(self.value(hp, "warmup_epochs"))
        if self.space.lr_schedule == "cosine" or warmup:
            callbacks.append(learning_rate_schedule(float(self.value(hp, "learning_rate")), epochs, warmup,
                                                    cosine=self.space.lr_schedule == "cosine"))
        if self.space.early_stopping_patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor=f"val_{self.objective}", mode="max",
                                                           patience=self.space.early_stopping_patience))
        callbacks += kwargs.pop("callbacks", None) or []
        if checkpoint is not None:
            first_epoch = max(first_epoch, checkpoint.restore(model))
            if checkpoint.stopped():
                epochs = first_epoch  # the run had ended at its saved epoch: nothing is left to train
            callbacks.append(SaveTrainingState(checkpoint))  # last: an epoch is committed once all is written
        images, targets = args[0], args[1]
        batches, order = epoch_batches(images, targets, int(self.value(hp, "batch_size")), seed,
                                       float(self.value(hp, "mixup")))
        kwargs["shuffle"] = False  # the order callback shuffles each epoch
        history = model.fit(batches, epochs=epochs, initial_epoch=first_epoch, callbacks=[order, *callbacks],
                            **kwargs)
        fail_on_non_finite_loss(history)
        return history


def learning_rate_schedule(learning_rate: float, epochs: int, warmup_epochs: int = 0,
                           cosine: bool = True) -> keras.callbacks.LearningRateScheduler:
    """The learning rate, set once per epoch: a linear rise over ``warmup_epochs`` to ``learning_rate``,
    then cosine decay towards zero over the remaining epochs (or the rate held, without ``cosine``)."""

    def rate(epoch: int) -> float:
        if epoch < warmup_epochs:
            return learning_rate * (epoch + 1) / warmup_epochs
        if not cosine:
            return learning_rate
        return learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / max(epochs - warmup_epochs, 1)))

    return keras.callbacks.LearningRateScheduler(rate)


def fail_on_non_finite_loss(history: keras.callbacks.History) -> None:
    """Mark a trial failed (not retried) when its loss diverged to NaN or infinity."""
    for epoch, loss in enumerate(history.history.get("loss", []), start=1):
        if not math.isfinite(loss):
            raise kt.errors.FailedTrialError(
                f"loss became {loss} at epoch {epoch}: this learning rate diverges with this loss"
            )
