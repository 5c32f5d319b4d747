"""Kuzushiji-49: 49 imbalanced classes, searched for balanced accuracy (synthetic data of K49's shape;
the real K49 files are not available offline here)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from kmnist_search.data.datasets import K49, load_dataset
from kmnist_search.export.inference import Classifier
from kmnist_search.search.hypermodel import BalancedAccuracy
from tests.cli import Command
from tests.conftest import write_dataset_files

TRAIN_COUNTS = [12 + (i % 5) * 8 for i in range(49)]  # 12 to 44 images a class: imbalanced, like K49
TEST_COUNTS = [2 + (i % 3) for i in range(49)]
K49_SPACE = """
name = "k49-tiny"
[hyperparameters]
learning_rate = [1.0]
batch_size = [64]
loss = ["categorical_crossentropy"]
[training]
epochs = 3
validation_images = 300
"""


def test_balanced_accuracy_metric_matches_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    labels = rng.choice(5, size=200, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    predictions = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 5, 200))
    metric = BalancedAccuracy(num_classes=5)
    for start in (0, 120):  # accumulated over batches, as during an epoch
        batch = slice(start, start + 120)
        metric.update_state(keras.utils.to_categorical(labels[batch], 5),
                            keras.utils.to_categorical(predictions[batch], 5))
    assert float(metric.result()) == pytest.approx(balanced_accuracy_score(labels, predictions), abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


@pytest.mark.slow
def test_k49_search_maximises_balanced_accuracy_and_exports(tmp_path: Path, command: Command) -> None:
    data_dir = write_dataset_files(tmp_path / "k49", K49, TRAIN_COUNTS, TEST_COUNTS)
    (tmp_path / "k49.toml").write_text(K49_SPACE)
    result = command("run", "--dataset", "k49", "--space", str(tmp_path / "k49.toml"), "--data-dir", str(data_dir),
                     "--no-checksum", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "val_bal_acc" in result.stdout and "balanced accuracy: validation" in result.stdout
    run_dir = tmp_path / "runs" / "k49-tiny-grid"
    (trial_json,) = run_dir.glob("trial_*/trial.json")
    trial = json.loads(trial_json.read_text())
    balanced = trial["metrics"]["metrics"]["val_balanced_accuracy"]["observations"]
    assert trial["score"] == max(value for obs in balanced for value in obs["value"])  # the tuner's objective
    results = json.loads((run_dir / "results.json").read_text())
    winner = results["winner"]
    assert winner["objective"] == "val_balanced_accuracy"
    assert results["trials"][0]["best_val_balanced_accuracy"] is not None
    with np.load(run_dir / "winner_test_predictions.npz") as saved:
        expected = balanced_accuracy_score(saved["labels"], saved["probabilities"].argmax(axis=1))
    assert winner["test_balanced_accuracy"] == pytest.approx(expected)
    assert winner["test_balanced_accuracy"] > 0.3  # chance is 1/49
    classifier = Classifier(tmp_path / "exports" / "k49-tiny-grid.onnx")
    assert len(classifier.classes) == 49 and classifier.classes[48].character == "ゝ"
    dataset = load_dataset("k49", data_dir, verify_checksums=False)
    assert classifier.predict_proba(dataset.test_images[:5]).shape == (5, 49)


def test_the_confusion_matrix_counts_cells_only_where_a_count_can_be_read() -> None:
    import matplotlib.pyplot as plt

    from kmnist_search.data.datasets import KMNIST
    from kmnist_search.report.figures import confusion_figure

    labels = np.arange(49).repeat(2)
    k49 = confusion_figure(labels, labels, K49)
    kmnist = confusion_figure(labels % 10, labels % 10, KMNIST)
    try:
        assert not k49.axes[0].texts and len(k49.axes) == 2  # colours only, read on a colour bar
        assert len(kmnist.axes[0].texts) == 10 * 10 and len(kmnist.axes) == 1
    finally:
        plt.close(k49)
        plt.close(kmnist)
