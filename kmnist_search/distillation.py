"""Knowledge distillation: train on a teacher's probabilities blended with the true labels.

A teacher is any exported ONNX model of the same dataset, typically an ensemble built with
``python -m kmnist_search.ensemble``: ``python -m kmnist_search.run --teacher exports/ENSEMBLE.onnx``
trains each model towards ``(1 - w) * one_hot(label) + w * p_teacher(image)`` (Hinton et al., 2015,
at temperature 1), so one network of the member's size can learn what the ensemble knows. Only the
training targets change: validation, the test set and the exported model see true labels and plain
images, as without a teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kmnist_search.datasets import DatasetSpec, file_digest, one_hot
from kmnist_search.errors import ModelFileError, RunError
from kmnist_search.inference import Classifier

DEFAULT_TEACHER_WEIGHT = 0.5
TEACHER_BATCH = 1000


@dataclass(frozen=True)
class Teacher:
    """An exported model whose probabilities become part of the training targets."""

    path: Path
    weight: float
    sha256: str

    def describe(self) -> dict[str, Any]:
        """What results.json, the run record and the model card say about the teacher."""
        return {"file": self.path.name, "sha256": self.sha256, "weight": self.weight}


def load_teacher(path: Path, weight: float, spec: DatasetSpec) -> Teacher:
    """Check that ``path`` is a readable ONNX model of ``spec``'s classes and that ``weight`` is usable."""
    if not 0 < weight <= 1:
        raise RunError(f"--teacher-weight {weight}: must be in (0, 1] (the teacher's share of each target)")
    classifier = Classifier(path)  # one-line errors for a missing or truncated file
    if len(classifier.classes) != spec.num_classes or classifier.image_size != spec.image_shape:
        raise ModelFileError(f"{path} classifies {len(classifier.classes)} classes of {classifier.image_size} "
                             f"images, not {spec.name}'s {spec.num_classes} of {spec.image_shape}: pass a teacher "
                             f"exported for --dataset {spec.name}")
    return Teacher(path, weight, file_digest(path, "sha256"))


def teacher_probabilities(teacher: Teacher, images: np.ndarray) -> np.ndarray:
    """The teacher's probabilities for (N, H, W) raw-pixel images, computed with onnxruntime in batches."""
    classifier = Classifier(teacher.path)
    return np.concatenate([classifier.predict_proba(images[start:start + TEACHER_BATCH])
                           for start in range(0, len(images), TEACHER_BATCH)]).astype(np.float32)


def training_targets(images: np.ndarray, labels: np.ndarray, num_classes: int,
                     teacher: Teacher | None) -> np.ndarray:
    """One-hot targets, or with a teacher ``(1 - w) * one_hot + w * p_teacher``; each row sums to 1."""
    targets = one_hot(labels, num_classes)
    if teacher is None:
        return targets
    return (1 - teacher.weight) * targets + teacher.weight * teacher_probabilities(teacher, images)
