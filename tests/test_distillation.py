"""Training towards a teacher's probabilities: targets, a distilled search, and bad teachers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kmnist_search.base.errors import ModelFileError, RunError
from kmnist_search.base.files import file_digest
from kmnist_search.data.datasets import K49, KMNIST, load_dataset, split_train_validation
from kmnist_search.data.spaces import parse_space
from kmnist_search.export.convert import export_winner
from kmnist_search.export.distillation import load_teacher, soften, training_targets
from kmnist_search.export.inference import Classifier
from kmnist_search.search.hypermodel import KmnistHyperModel
from kmnist_search.search.runner import SearchOptions, run_search
from tests.cli import assert_one_line_error, run_cli
from tests.conftest import EXPORT_TEST_SPACE, FinishedRun, write_kmnist_files


def test_targets_blend_the_teacher_with_the_labels(exported: Path, finished_run: FinishedRun) -> None:
    _, dataset, _ = finished_run
    images, labels = dataset.train_images[:1500], dataset.train_labels[:1500]  # more than one teacher batch
    assert np.array_equal(training_targets(images, labels, 10, None), np.eye(10, dtype=np.float32)[labels])
    teacher = load_teacher(exported, 0.3, 1.0, KMNIST)
    targets = training_targets(images, labels, 10, teacher)
    expected = 0.7 * np.eye(10)[labels] + 0.3 * Classifier(exported).predict_proba(images)
    assert np.allclose(targets, expected, atol=1e-6)
    assert np.allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    assert targets.dtype == np.float32 and not np.array_equal(targets, np.eye(10, dtype=np.float32)[labels])


@pytest.mark.slow
def test_a_distilled_search_trains_on_the_teacher_targets_and_records_it(
        exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = load_dataset("kmnist", write_kmnist_files(tmp_path / "data"), verify_checksums=False)
    teacher = load_teacher(exported, 0.5, 1.0, KMNIST)
    seen_targets: list[np.ndarray] = []
    original_fit = KmnistHyperModel.fit

    def spying_fit(self, hp, model, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen_targets.append(np.asarray(args[1]))
        return original_fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(KmnistHyperModel, "fit", spying_fit)
    space = parse_space({**EXPORT_TEST_SPACE, "training": {**EXPORT_TEST_SPACE["training"], "epochs": 1}})
    options = SearchOptions("grid", tmp_path / "runs", "distilled", teacher=teacher)
    results = run_search(dataset, space, options)
    assert results is not None
    assert results.teacher == {"file": exported.name, "sha256": file_digest(exported, "sha256"), "weight": 0.5,
                                  "temperature": 1.0}
    (targets,) = seen_targets
    assert targets.shape == (500, 10) and np.allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    split = split_train_validation(dataset.train_images, dataset.train_labels, 100, options.seed, 500)
    expected = 0.5 * np.eye(10)[split.train_labels] + 0.5 * Classifier(exported).predict_proba(split.train_images)
    assert np.allclose(targets, expected, atol=1e-6)
    card = export_winner(tmp_path / "runs" / "distilled", dataset, tmp_path / "exports")
    assert card["kind"] == "distilled" and card["models"][0]["training"]["teacher"] == results.teacher
    with pytest.raises(RunError, match="teacher changed"):
        run_search(dataset, space, SearchOptions("grid", tmp_path / "runs", "distilled",
                                                 teacher=load_teacher(exported, 0.5, 3.0, KMNIST)))


def test_bad_teachers_are_refused(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="must be in"):
        load_teacher(exported, 0.0, 1.0, KMNIST)
    with pytest.raises(RunError, match="must be a positive number"):
        load_teacher(exported, 0.5, float("nan"), KMNIST)
    with pytest.raises(ModelFileError, match="not k49's 49"):
        load_teacher(exported, 0.5, 1.0, K49)
    data_dir = write_kmnist_files(tmp_path / "data", train_per_class=10, test_per_class=2)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported.read_bytes()[:500])
    for teacher, fragment in ((tmp_path / "missing.onnx", "does not exist"), (truncated, "not a readable ONNX"),
                              (exported, "--teacher-weight 1.5")):
        weight = "1.5" if teacher == exported else "0.5"
        assert_one_line_error(run_cli("kmnist_search.run", "--space", "quick", "--data-dir", str(data_dir),
                                      "--no-checksum", "--teacher", str(teacher), "--teacher-weight", weight,
                                      cwd=tmp_path), fragment)



def test_softening_is_softmax_of_logits_over_the_temperature() -> None:
    logits = np.array([[4.0, 1.0, -2.0], [0.5, 0.5, 3.0]])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for temperature in (1.0, 2.0, 4.0):
        expected = np.exp(logits / temperature) / np.exp(logits / temperature).sum(axis=1, keepdims=True)
        assert np.allclose(soften(probabilities, temperature), expected, atol=1e-12)
    softer = soften(probabilities, 3.0)
    assert np.all(softer.max(axis=1) < probabilities.max(axis=1))  # the wrong classes gain weight
    assert np.array_equal(softer.argmax(axis=1), probabilities.argmax(axis=1))  # the ranking is kept
    certain = np.array([[1.0, 0.0, 0.0]])  # a zero probability stays finite and tiny
    assert np.isfinite(soften(certain, 2.0)).all() and soften(certain, 2.0)[0, 0] > 0.999
