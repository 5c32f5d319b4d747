"""Re-verify an exported model: its file against its card, and onnxruntime against Keras on the test set.

Nothing the card claims is taken on trust: the figures are measured again and compared with those the
card records (its parity section and its test accuracy), and the rule applied is the package's own for
the model's precision (exact for float32, the int8 tolerance for quantized models), tightened where the
card's recorded rule is stricter, never loosened. The card's sha256 ties it to the ONNX file; a
signature over the card would be needed to prove who wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmnist_search.base.errors import ModelFileError, ParityError
from kmnist_search.data.datasets import Dataset
from kmnist_search.export.card import card_path_for, interface, parity_of
from kmnist_search.export.convert import EXPORT_REFERENCE_MISSING, load_keras_model, measure_parity
from kmnist_search.export.inference import Classifier
from kmnist_search.export.parity import RULE_FOR_PRECISION, ParityReport, ParityRule, strictest


@dataclass(frozen=True)
class Verification:
    """The outcome of re-verifying an export."""

    onnx_path: Path
    keras_path: Path
    card: dict[str, Any]
    report: ParityReport
    rule: ParityRule
    differences: list[str]  # where the measured figures differ from the card's

    @property
    def passed(self) -> bool:
        return self.report.passes(self.rule) and not self.differences

    def describe(self) -> str:
        lines = [f"{self.onnx_path}: sha256 matches its model card", self.report.describe(self.rule)]
        if self.differences:
            lines.append(f"the model card's figures are wrong: {'; '.join(self.differences)}")
        return "\n".join(lines)


def card_disagreement(card: dict[str, Any], classifier: Classifier, dataset: Dataset) -> str | None:
    """How a card that matches its file's digest still contradicts the file or its dataset, if it does: the
    file it names, the number of outputs, the classes."""
    outputs = classifier.session.get_outputs()[0].shape[-1]
    if card["onnx_file"] != classifier.path.name:
        return f"it names {card['onnx_file']!r} as its file"
    if isinstance(outputs, int) and outputs != len(card["classes"]):
        return f"it lists {len(card['classes'])} classes for a model with {outputs} outputs"
    if card["classes"] != interface(dataset.spec, card["name"])["classes"]:
        return f"its classes are not {dataset.spec.name}'s"
    return None


def verify_export(classifier: Classifier, card: dict[str, Any], dataset: Dataset, keras_path: Path | None = None,
                  raise_on_failure: bool = True) -> Verification:
    """Compare an export, checked against its card by :func:`~kmnist_search.export.inference.checked_export`, with
    its Keras model on every test image under the rule its card records.

    Raises ParityError when it fails (unless ``raise_on_failure`` is False).
    """
    onnx_path = classifier.path
    if card["dataset"]["name"] != dataset.spec.name:
        raise ModelFileError(f"{onnx_path} classifies {card['dataset']['name']}, not {dataset.spec.name}")
    problem = card_disagreement(card, classifier, dataset)
    if problem:
        raise ModelFileError(f"{card_path_for(onnx_path)} does not describe {onnx_path}: {problem}; export it again")
    keras_path = keras_path or onnx_path.with_name(card["keras_file"])
    keras_model = load_keras_model(keras_path, EXPORT_REFERENCE_MISSING, "export the model again")
    report = measure_parity(classifier.session, keras_model, dataset.test_images, dataset.test_labels)
    recorded, card_rule = parity_of(card)
    rule = strictest(RULE_FOR_PRECISION[card["precision"]], card_rule)
    differences = report.differences_from(recorded, float(card["metrics"]["test_accuracy"]))
    verification = Verification(onnx_path, keras_path, card, report, rule, differences)
    if raise_on_failure and not verification.passed:
        problem = "; ".join(differences) if differences else report.describe(rule)
        raise ParityError(f"{onnx_path} does not reproduce {keras_path} or its card ({problem}): do not ship it; "
                          f"export it again")
    return verification
