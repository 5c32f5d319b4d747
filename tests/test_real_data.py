"""Checks on the official KMNIST files, run when they are present (CI: ../shared/data/kmnist)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kmnist_search.data.datasets import KMNIST, load_dataset, verify_file
from kmnist_search.data.spaces import parse_space
from kmnist_search.search.runner import SearchOptions, run_search
from tests.conftest import as_dict

pytestmark = pytest.mark.real_data


def test_official_files_verify_and_load(real_data_dir: Path) -> None:
    for data_file in KMNIST.files.values():
        assert verify_file(real_data_dir / data_file.name, data_file).startswith("sha256:")
    data = load_dataset("kmnist", real_data_dir)
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10
    assert data.train_images.max() == 255 and data.train_images.min() == 0


def test_short_search_on_real_images_learns(real_data_dir: Path, tmp_path: Path) -> None:
    space = parse_space({
        "name": "real-smoke",
        "hyperparameters": {"learning_rate": [1.0], "batch_size": [32], "loss": ["categorical_crossentropy"],
                            "conv_layers": "16-p-32", "dense_units": 64},  # small and quick
        "training": {"epochs": 1, "validation_images": 1000, "train_images": 4000},
    })
    data = load_dataset("kmnist", real_data_dir)
    results = as_dict(run_search(data, space, SearchOptions("grid", tmp_path, "real-smoke")))
    assert results["winner"]["val_accuracy"] > 0.6  # chance is 0.1
    assert results["winner"]["test_accuracy"] > 0.5
