"""The winner's single evaluation on the test set (``winner_test_predictions.npz``), as the reports use it:
plain arrays, never pickles."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kmnist_search.base.errors import RunError
from kmnist_search.base.files import atomic_write_bytes

FIRST_IMAGES = 100  # kept for the report's prediction grid


@dataclass(frozen=True)
class TestPredictions:
    """The labels, the winner's probabilities and the first test images."""

    labels: np.ndarray
    probabilities: np.ndarray
    first_images: np.ndarray


def write_test_predictions(path: Path, labels: np.ndarray, probabilities: np.ndarray, images: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=labels, probabilities=probabilities, first_images=images[:FIRST_IMAGES])
    atomic_write_bytes(path, buffer.getvalue())


def read_test_predictions(path: Path) -> TestPredictions | None:
    """The evaluation, None when the run has none, a one-line error naming the fix when it is damaged."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return TestPredictions(data["labels"], data["probabilities"], data["first_images"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise RunError(f"{path} is damaged ({str(error)[:120] or type(error).__name__}): delete it (the report "
                       f"then leaves out the winner's test results), or search again with --overwrite") from None
