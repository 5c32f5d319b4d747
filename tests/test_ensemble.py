"""Averaging exported models into one verified ONNX graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from kmnist_search.base.errors import ModelFileError
from kmnist_search.base.files import file_digest
from kmnist_search.data.datasets import split_train_validation
from kmnist_search.export.convert import keras_probabilities
from kmnist_search.export.ensemble_graph import export_ensemble
from kmnist_search.export.inference import Classifier
from tests.cli import Command, assert_one_line_error, run_cli
from tests.conftest import FinishedRun


@pytest.fixture
def two_members(exported: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The exported winner and a second member: the same network with its weights perturbed."""
    members = tmp_path / "members"
    members.mkdir()
    first = members / "first.json"
    shutil.copy(exported.with_suffix(".keras"), members / "first.keras")
    card = json.loads(exported.with_suffix(".json").read_text())
    first.write_text(json.dumps({**card, "name": "first", "keras_file": "first.keras"}))
    model = keras.models.load_model(members / "first.keras", compile=False)
    rng = np.random.default_rng(7)
    model.set_weights([w + 0.5 * w.std() * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(members / "second.keras")
    second = members / "second.json"
    second.write_text(json.dumps({**card, "name": "second", "keras_file": "second.keras"}))
    return first, second


def member_probabilities(card_path: Path, images: np.ndarray) -> np.ndarray:
    model = keras.models.load_model(card_path.with_suffix(".keras"), compile=False)
    return keras_probabilities(model, images)


@pytest.mark.slow
def test_ensemble_onnx_averages_its_members(two_members: tuple[Path, Path], finished_run: FinishedRun,
                                            tmp_path: Path) -> None:
    _, dataset, _ = finished_run
    card = export_ensemble(two_members, dataset, tmp_path / "out", "pair")
    onnx_path = tmp_path / "out" / "pair.onnx"
    assert card["onnx_sha256"] == file_digest(onnx_path, "sha256")
    first_p, second_p = (member_probabilities(path, dataset.test_images) for path in two_members)
    assert np.abs(first_p - second_p).max() > 0.01  # the members genuinely differ
    mean = (first_p + second_p) / 2
    onnx_p = Classifier(onnx_path).predict_proba(dataset.test_images)
    assert np.abs(onnx_p - mean).max() <= 1e-5
    assert card["metrics"]["test_accuracy"] == pytest.approx(np.mean(mean.argmax(1) == dataset.test_labels))
    split = split_train_validation(dataset.train_images, dataset.train_labels, card["split"]["validation_images"],
                                   card["split"]["seed"])
    validation_mean = sum(member_probabilities(path, split.validation_images) for path in two_members) / 2
    assert card["metrics"]["validation_accuracy"] == pytest.approx(
        np.mean(validation_mean.argmax(1) == split.validation_labels))
    assert card["kind"] == "ensemble" and [m["card"] for m in card["models"]] == ["first.json", "second.json"]
    assert card["parity"]["label_agreement"] == 1.0 and card["parity"]["images"] == len(dataset.test_labels)
    assert [c.character for c in Classifier(onnx_path).classes] == list("おきすつなはまやれを")


@pytest.mark.slow
def test_ensemble_cli_then_verify(two_members: tuple[Path, Path], finished_run: FinishedRun, tmp_path: Path,
                                  command: Command) -> None:
    _, _, data_dir = finished_run
    result = command("ensemble", *map(str, two_members), "--name", "pair", "--exports-dir",
                     str(tmp_path / "out"), "--data-dir", str(data_dir), "--no-checksum", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "predicted labels identical on 100.00%" in result.stdout and "members:" in result.stdout
    verified = command("verify", str(tmp_path / "out" / "pair.onnx"), "--data-dir", str(data_dir),
                       "--no-checksum", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "verified" in verified.stdout


def test_members_on_different_validation_splits_are_refused(two_members: tuple[Path, Path],
                                                             finished_run: FinishedRun, tmp_path: Path) -> None:
    _, dataset, data_dir = finished_run
    first, second = two_members
    card = json.loads(second.read_text())
    card["split"]["seed"] += 1
    second.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="differ in split seed"):
        export_ensemble(two_members, dataset, tmp_path / "out", "pair")
    assert not (tmp_path / "out").exists()
    assert_one_line_error(run_cli("kmnist_search.ensemble", str(first), str(second), "--name", "pair",
                                  "--data-dir", str(data_dir), "--no-checksum", cwd=tmp_path), "differ in split seed")


def test_bad_member_arguments_get_one_line_errors(two_members: tuple[Path, Path], tmp_path: Path) -> None:
    first, _ = two_members
    assert_one_line_error(run_cli("kmnist_search.ensemble", str(first), "--name", "solo", cwd=tmp_path),
                          "at least two")
    assert_one_line_error(run_cli("kmnist_search.ensemble", str(first), str(first.with_suffix(".keras")),
                                  "--name", "pair", cwd=tmp_path), "not a model card")
    assert_one_line_error(run_cli("kmnist_search.ensemble", str(first), str(tmp_path / "missing.json"),
                                  "--name", "pair", cwd=tmp_path), "missing.json is missing")
