"""When an ONNX model counts as reproducing its Keras model: the measurement and the rules (no TensorFlow).

A float32 export must agree exactly (:data:`EXACT`): the same predicted label on every test image and
probabilities within 1e-5. An int8 model may stray a little (:data:`INT8`): the same label on at least
99.5% of the test images and at most 0.2 points of test accuracy lost. The rule a model passed is
recorded in its card; ``verify`` measures again and applies the package's rule for the model's precision,
tightened (never loosened) by the card's, and compares the figures it measured with those the card
records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ParityRule:
    """The tolerances an ONNX model must meet against its Keras original."""

    min_label_agreement: float
    max_accuracy_drop: float
    max_abs_probability_diff: float | None = None  # None: probabilities are not compared

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EXACT = ParityRule(min_label_agreement=1.0, max_accuracy_drop=0.0, max_abs_probability_diff=1e-5)
INT8 = ParityRule(min_label_agreement=0.995, max_accuracy_drop=0.002)
INT8_CALIBRATION_IMAGES = 1000  # training images that calibrate an int8 model's activation ranges by default


RULE_FOR_PRECISION = {"float32": EXACT, "int8": INT8}
RECORDED_FIGURE_TOLERANCE = 0.001  # a re-measured accuracy or agreement may differ from the card's by 10 in 10,000


def strictest(package_rule: ParityRule, card_rule: ParityRule) -> ParityRule:
    """The package's rule, tightened wherever a card's rule is stricter (a card can never loosen it)."""
    limits = [v for v in (package_rule.max_abs_probability_diff, card_rule.max_abs_probability_diff) if v is not None]
    return ParityRule(min_label_agreement=max(package_rule.min_label_agreement, card_rule.min_label_agreement),
                      max_accuracy_drop=min(package_rule.max_accuracy_drop, card_rule.max_accuracy_drop),
                      max_abs_probability_diff=min(limits) if limits else None)


@dataclass(frozen=True)
class ParityReport:
    """How closely onnxruntime reproduces Keras on a set of images."""

    images: int
    label_agreement: float
    max_abs_probability_diff: float
    onnx_accuracy: float
    keras_accuracy: float

    def passes(self, rule: ParityRule = EXACT) -> bool:
        """True when every tolerance of ``rule`` is met."""
        return (self.label_agreement >= rule.min_label_agreement
                and self.keras_accuracy - self.onnx_accuracy <= rule.max_accuracy_drop
                and (rule.max_abs_probability_diff is None
                     or self.max_abs_probability_diff <= rule.max_abs_probability_diff))

    def describe(self, rule: ParityRule = EXACT) -> str:
        """One line for people: the figures beside the limits they were held to."""
        if rule.max_abs_probability_diff is not None:
            return (f"parity on {self.images:,} test images: predicted labels identical on "
                    f"{self.label_agreement * 100:.2f}%, max |p_onnx - p_keras| = {self.max_abs_probability_diff:.2e} "
                    f"(limit {rule.max_abs_probability_diff:.0e}), test accuracy onnx {self.onnx_accuracy * 100:.2f}% "
                    f"vs keras {self.keras_accuracy * 100:.2f}%")
        return (f"int8 vs float32 Keras on {self.images:,} test images: predicted labels identical on "
                f"{self.label_agreement * 100:.2f}% (at least {rule.min_label_agreement * 100:.1f}% required), test "
                f"accuracy int8 {self.onnx_accuracy * 100:.2f}% vs float32 {self.keras_accuracy * 100:.2f}% "
                f"(at most {rule.max_accuracy_drop * 100:.1f} points lost)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def differences_from(self, recorded: ParityReport, test_accuracy: float) -> list[str]:
        """Where these measured figures and those a card records (its parity section and its test accuracy)
        differ by more than RECORDED_FIGURE_TOLERANCE, one phrase each."""
        pairs = [("label agreement", self.label_agreement, recorded.label_agreement),
                 ("onnx test accuracy", self.onnx_accuracy, recorded.onnx_accuracy),
                 ("keras test accuracy", self.keras_accuracy, recorded.keras_accuracy),
                 ("test accuracy", self.onnx_accuracy, test_accuracy)]
        return [f"{name} measured {measured * 100:.2f}%, card says {claimed * 100:.2f}%"
                for name, measured, claimed in pairs
                if not abs(measured - claimed) <= RECORDED_FIGURE_TOLERANCE]  # NaN: never within


def compare_probabilities(onnx_probabilities: np.ndarray, keras_probabilities: np.ndarray,
                          labels: np.ndarray) -> ParityReport:
    """Measure agreement between two models' probabilities for the same labelled images."""
    onnx_labels, keras_labels = onnx_probabilities.argmax(axis=1), keras_probabilities.argmax(axis=1)
    return ParityReport(
        images=len(labels),
        label_agreement=float(np.mean(onnx_labels == keras_labels)),
        max_abs_probability_diff=float(np.abs(onnx_probabilities - keras_probabilities).max()),
        onnx_accuracy=float(np.mean(onnx_labels == labels)),
        keras_accuracy=float(np.mean(keras_labels == labels)),
    )
