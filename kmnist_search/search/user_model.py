"""A model of your own in the same machinery: your Keras Tuner ``HyperModel`` or ``build(hp)`` function, searched,
pruned, resumed, recorded, exported, verified and reported like the study's CNN.

What the package asks of ``build(hp)``: return a compiled Keras model that takes raw pixels (float32 in
[0, 255], shape ``(batch, 28, 28, 1)`` for KMNIST) and returns class probabilities (softmax, one per class),
trained against one-hot targets. Its hyperparameters are declared in ``build`` as Keras Tuner's
``hp.Choice`` / ``hp.Boolean`` / ``hp.Fixed`` (or ``hp.Int`` and ``hp.Float`` with a ``step``): finite values,
so that every strategy, grid included, can search them and the record can name them. The package trains
the model (batch order, pruning, checkpoints after every epoch), so a HyperModel's own ``fit`` is not
used: tune the batch size through the space's ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from kmnist_search.base.errors import SpaceError
from kmnist_search.data.spaces import SearchSpace
from kmnist_search.search.hypermodel import STEPS_PER_EXECUTION, BalancedAccuracy, KmnistHyperModel, optimizer_config

Build = Callable[[kt.HyperParameters], keras.Model]
MAX_VALUES = 1_000  # an hp.Int or hp.Float range longer than this is not a grid: give a larger step


def user_build(hypermodel: kt.HyperModel | Build) -> tuple[str, Build]:
    """The model's name and its build function, from a HyperModel or a plain ``build(hp)``."""
    if isinstance(hypermodel, kt.HyperModel):
        if type(hypermodel).fit is not kt.HyperModel.fit:
            raise SpaceError(f"{type(hypermodel).__name__} overrides fit(): the package trains the model itself "
                             f"(so that a killed search resumes mid-trial); tune the batch size through the "
                             f"space's batch_size and leave fit() out")
        return hypermodel.name or type(hypermodel).__name__, hypermodel.build
    if callable(hypermodel):
        return getattr(hypermodel, "__name__", type(hypermodel).__name__), hypermodel
    raise SpaceError(f"hypermodel {hypermodel!r} is neither a keras_tuner.HyperModel nor a build(hp) function")


def declared_hyperparameters(build: Build, given: kt.HyperParameters | Mapping[str, Sequence[Any]] | None
                             ) -> dict[str, tuple[Any, ...]]:
    """Hyperparameter name -> the values to try: as ``given`` (a mapping, or Keras Tuner HyperParameters),
    else as ``build`` declares them when called once, the way Keras Tuner discovers a search space."""
    if isinstance(given, Mapping):
        return {name: tuple(values) if isinstance(values, (list, tuple)) else (values,)
                for name, values in given.items()}
    declared = given if given is not None else kt.HyperParameters()
    if given is None:
        build(declared)
    return {hp.name: finite_values(hp) for hp in declared.space}


def finite_values(hp: kt.engine.hyperparameters.HyperParameter) -> tuple[Any, ...]:
    """The values a Keras Tuner hyperparameter can take, when they are finitely many."""
    if isinstance(hp, kt.engine.hyperparameters.Choice):
        return tuple(hp.values)
    if isinstance(hp, kt.engine.hyperparameters.Boolean):
        return (False, True)
    if isinstance(hp, kt.engine.hyperparameters.Fixed):
        return (hp.value,)
    if isinstance(hp, (kt.engine.hyperparameters.Int, kt.engine.hyperparameters.Float)) and hp.step \
            and hp.sampling == "linear":
        count = round((hp.max_value - hp.min_value) / hp.step) + 1
        if count <= MAX_VALUES:
            values = hp.min_value + hp.step * np.arange(count)
            if isinstance(hp, kt.engine.hyperparameters.Int):
                return tuple(int(v) for v in values.tolist())
            return tuple(float(f"{v:.12g}") for v in values.tolist())
    raise SpaceError(f"hyperparameter {hp.name}: {type(hp).__name__} without a linear step (or over {MAX_VALUES} "
                     f"values) has no finite list of values to search: use hp.Choice, or give a step")


def loss_name(loss: Any) -> str:
    """A compiled loss as the record names it."""
    if isinstance(loss, str):
        return loss
    return str(getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__)


class UserHyperModel(KmnistHyperModel):
    """Your ``build(hp)`` inside the package's HyperModel: the package's training, your network."""

    def __init__(self, build: Build, space: SearchSpace, num_classes: int, image_shape: tuple[int, int] = (28, 28),
                 objective: str = "accuracy") -> None:
        super().__init__(space, num_classes, image_shape, objective)
        self.user_build = build

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        model = self.user_build(hp)
        self.check_contract(model)
        model.compile(  # your optimizer and loss; the package's metrics, named as the search reads them
            optimizer=model.optimizer, loss=model.loss,
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                     *([BalancedAccuracy(self.num_classes)] if self.objective == "balanced_accuracy" else [])],
            steps_per_execution=STEPS_PER_EXECUTION)
        return model

    def check_contract(self, model: Any) -> None:
        """Refuse, naming what to change, a model the export and its card could not describe."""
        name = self.space.model
        if not isinstance(model, keras.Model):
            raise SpaceError(f"model {name}: build(hp) returned {type(model).__name__}, not a keras.Model")
        if getattr(model, "optimizer", None) is None or getattr(model, "loss", None) is None:
            raise SpaceError(f"model {name}: build(hp) must compile the model (model.compile(optimizer=..., loss=...))")
        expected_input, expected_output = (None, *self.image_shape, 1), (None, self.num_classes)
        if tuple(model.inputs[0].shape) != expected_input or len(model.inputs) != 1:
            raise SpaceError(f"model {name} takes {[tuple(i.shape) for i in model.inputs]}: it must take one input "
                             f"of shape {expected_input} (raw pixels, 0 to 255)")
        if len(model.outputs) != 1 or tuple(model.outputs[0].shape) != expected_output:
            raise SpaceError(f"model {name} returns {[tuple(o.shape) for o in model.outputs]}: it must return "
                             f"{expected_output}, one softmax probability per class")

    def optimizer_settings(self, hp: kt.HyperParameters, model: keras.Model) -> dict[str, Any]:
        return optimizer_config(model.optimizer.name, model.optimizer)

    def built_hyperparameters(self, model: keras.Model) -> dict[str, Any]:
        settings = optimizer_config(model.optimizer.name, model.optimizer)
        return {"learning_rate": settings["learning_rate"], "optimizer": settings["name"],
                "loss": loss_name(model.loss)}
