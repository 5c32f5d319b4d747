"""Keras's optimizers with each variable's update done by one fused TensorFlow kernel.

Keras 3 writes an optimizer's update as a dozen small tensor operations per variable. At the
study's small batches (8, 16) their overhead adds up: a batch-8 step of the study's CNN spent about
a third of its time in them (BENCHMARKS.md). TensorFlow ships the same
updates as single kernels (``ResourceApplyAdadelta``, ``ResourceApplyAdam``,
``ResourceApplyKerasMomentum``); these subclasses call them. The arithmetic is the same as Keras's
(``tests/test_optimizers.py`` checks the weights after several steps against Keras's own classes),
the optimizer state has the same variables, and the configuration is Keras's.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

PACKAGE = "kmnist_search"


def _slot_handle(optimizer: keras.optimizers.Optimizer, slots: list[Any], variable: Any) -> Any:
    """The resource handle of the optimizer state slot that belongs to ``variable``."""
    return slots[optimizer._get_variable_index(variable)].handle


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedAdadelta(keras.optimizers.Adadelta):
    """Keras's Adadelta, updated by TensorFlow's fused Adadelta kernel."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyAdadelta(
            var=variable.handle, accum=_slot_handle(self, self._accumulated_grads, variable),
            accum_update=_slot_handle(self, self._accumulated_delta_vars, variable),
            lr=tf.cast(learning_rate, dtype), rho=tf.cast(self.rho, dtype), epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedAdam(keras.optimizers.Adam):
    """Keras's Adam (without AMSGrad), updated by TensorFlow's fused Adam kernel."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.amsgrad:
            super().update_step(gradient, variable, learning_rate)
            return
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=_slot_handle(self, self._momentums, variable),
            v=_slot_handle(self, self._velocities, variable),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedSGD(keras.optimizers.SGD):
    """Keras's SGD with (non-Nesterov) momentum, updated by TensorFlow's fused momentum kernel."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if not self.momentums or self.nesterov:
            super().update_step(gradient, variable, learning_rate)
            return
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=_slot_handle(self, self.momentums, variable), lr=tf.cast(learning_rate, dtype),
            grad=tf.cast(gradient, dtype), momentum=tf.cast(self.momentum, dtype))
