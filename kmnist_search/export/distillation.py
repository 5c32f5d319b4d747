"""Knowledge distillation: train on a teacher's probabilities blended with the true labels.

A teacher is any exported ONNX model of the same dataset, typically an ensemble built with
``python -m kmnist_search.ensemble``: ``python -m kmnist_search.run --teacher exports/ENSEMBLE.onnx``
trains each model towards ``(1 - w) * one_hot(label) + w * soften(p_teacher(image), T)``, where
``soften`` raises the probabilities to the power 1/T and renormalises them (for a single softmax model
that is exactly Hinton et al.'s softmax of logits / T). A teacher is nearly certain on the images it
trained on; T > 1 brings out which wrong classes it finds plausible, the knowledge one network of the
member's size can learn from an ensemble. Only the training targets change: validation, the test set
and the exported model see true labels and plain images, as without a teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kmnist_search.base.errors import ModelFileError, RunError
from kmnist_search.base.files import file_digest
from kmnist_search.data.datasets import DatasetSpec, one_hot
from kmnist_search.export.inference import Classifier

DEFAULT_TEACHER_WEIGHT = 0.5
DEFAULT_TEACHER_TEMPERATURE = 2.0
TEACHER_BATCH = 1000


@dataclass(frozen=True)
class Teacher:
    """An exported model whose probabilities become part of the training targets."""

    path: Path
    weight: float
    temperature: float
    sha256: str
    classifier: Classifier = field(compare=False, repr=False)

    def describe(self) -> dict[str, Any]:
        """What results.json, the run record and the model card say about the teacher."""
        return {"file": self.path.name, "sha256": self.sha256, "weight": self.weight, "temperature": self.temperature}


def load_teacher(path: Path, weight: float, temperature: float, spec: DatasetSpec) -> Teacher:
    """Check that ``path`` is a readable ONNX model of ``spec``'s classes and that the settings are usable."""
    if not 0 < weight <= 1:
        raise RunError(f"--teacher-weight {weight}: must be in (0, 1] (the teacher's share of each target)")
    if not 0 < temperature < float("inf"):
        raise RunError(f"--teacher-temperature {temperature}: must be a positive number (1 keeps the teacher's "
                       f"probabilities, 2 to 4 soften them)")
    classifier = Classifier(path)  # one-line errors for a missing or truncated file
    if len(classifier.classes) != spec.num_classes or classifier.image_size != spec.image_shape:
        raise ModelFileError(f"{path} classifies {len(classifier.classes)} classes of {classifier.image_size} "
                             f"images, not {spec.name}'s {spec.num_classes} of {spec.image_shape}: pass a teacher "
                             f"exported for --dataset {spec.name}")
    return Teacher(path, weight, temperature, file_digest(path, "sha256"), classifier)


def teacher_probabilities(teacher: Teacher, images: np.ndarray) -> np.ndarray:
    """The teacher's probabilities at its temperature for (N, H, W) raw-pixel images (onnxruntime, in batches)."""
    probabilities = np.concatenate([teacher.classifier.predict_proba(images[start:start + TEACHER_BATCH])
                                    for start in range(0, len(images), TEACHER_BATCH)]).astype(np.float64)
    return soften(probabilities, teacher.temperature).astype(np.float32)


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of probabilities raised to 1/temperature and renormalised: softmax(log p / T)."""
    logits = np.log(np.clip(probabilities, 1e-30, None)) / temperature
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def training_targets(images: np.ndarray, labels: np.ndarray, num_classes: int,
                     teacher: Teacher | None) -> np.ndarray:
    """One-hot targets, or with a teacher ``(1 - w) * one_hot + w * soften(p_teacher, T)``; rows sum to 1."""
    targets = one_hot(labels, num_classes)
    if teacher is None:
        return targets
    return (1 - teacher.weight) * targets + teacher.weight * teacher_probabilities(teacher, images)
