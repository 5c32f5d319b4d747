"""int8 quantization of exported models: smaller, faithful to Keras, calibrated on training images only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest

from kmnist_search.base.errors import ParityError
from kmnist_search.base.files import file_digest
from kmnist_search.data.datasets import split_train_validation
from kmnist_search.export import int8
from kmnist_search.export.convert import convert_to_onnx, keras_probabilities
from kmnist_search.export.inference import Classifier
from kmnist_search.export.int8 import calibration_images, export_quantized, model_split
from kmnist_search.export.parity import INT8
from tests.cli import Command, assert_one_line_error, run_cli
from tests.conftest import FinishedRun


@pytest.fixture(scope="module")
def quantized(exported: Path, finished_run: FinishedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, dataset, _ = finished_run
    out = tmp_path_factory.mktemp("int8")
    export_quantized(exported.with_suffix(".json"), dataset, out, "small")
    return out / "small.onnx"


@pytest.mark.slow
def test_int8_model_is_quantized_smaller_and_faithful(quantized: Path, exported: Path,
                                                       finished_run: FinishedRun) -> None:
    _, dataset, _ = finished_run
    card = json.loads(quantized.with_suffix(".json").read_text())
    assert card["onnx_sha256"] == file_digest(quantized, "sha256")
    graph = onnx.load(str(quantized)).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.node}
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(np.prod(t.dims) for t in int8_weights) > 0.9 * sum(np.prod(t.dims) for t in graph.initializer)
    assert quantized.stat().st_size < exported.stat().st_size / 3

    keras_model = keras.models.load_model(exported.with_suffix(".keras"), compile=False)
    keras_p = keras_probabilities(keras_model, dataset.test_images)
    int8_p = Classifier(quantized).predict_proba(dataset.test_images)
    assert 0 < np.abs(int8_p - keras_p).max() < 0.1  # really int8 arithmetic, still close
    agreement = np.mean(int8_p.argmax(1) == keras_p.argmax(1))
    assert agreement >= INT8.min_label_agreement
    assert card["parity"]["label_agreement"] == pytest.approx(agreement)
    assert card["metrics"]["test_accuracy"] == pytest.approx(np.mean(int8_p.argmax(1) == dataset.test_labels))
    split = split_train_validation(dataset.train_images, dataset.train_labels, card["split"]["validation_images"],
                                   card["split"]["seed"])
    validation_p = Classifier(quantized).predict_proba(split.validation_images)
    assert card["metrics"]["validation_accuracy"] == pytest.approx(
        np.mean(validation_p.argmax(1) == split.validation_labels))
    source = json.loads(exported.with_suffix(".json").read_text())
    assert card["quantization"]["source_onnx_sha256"] == source["onnx_sha256"]
    assert card["quantization"]["source_metrics"] == source["metrics"]
    assert card["models"] == source["models"] and card["classes"] == source["classes"]
    assert card["precision"] == "int8" and card["split"] == source["split"]


def test_probabilities_and_classifier_head_stay_in_float(quantized: Path, finished_run: FinishedRun) -> None:
    _, dataset, _ = finished_run
    graph = onnx.load(str(quantized)).graph
    producers = {output: node for node in graph.node for output in node.output}
    float_weights = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    softmaxes = [node for node in graph.node if node.op_type == "Softmax"]
    assert softmaxes and producers[graph.output[0].name].op_type != "DequantizeLinear"
    for softmax in softmaxes:
        head = producers[softmax.input[0]]
        assert head.op_type in ("Gemm", "MatMul") and head.input[1] in float_weights
    probabilities = Classifier(quantized).predict_proba(dataset.test_images)
    steps = probabilities * 255
    assert np.abs(steps - np.round(steps)).max() > 0.01  # not on a uint8 grid of 1/255 steps


def test_calibration_images_come_from_the_training_split(exported: Path, finished_run: FinishedRun) -> None:
    _, dataset, _ = finished_run
    card = json.loads(exported.with_suffix(".json").read_text())
    split = split_train_validation(dataset.train_images, dataset.train_labels, card["split"]["validation_images"],
                                   card["split"]["seed"])
    chosen = calibration_images(model_split(dataset, card), card["split"]["seed"], 50)
    training = {image.tobytes() for image in split.train_images}
    held_out = {image.tobytes() for image in (*split.validation_images, *dataset.test_images)}
    assert len(chosen) == 50 and all(image.tobytes() in training for image in chosen)
    assert not any(image.tobytes() in held_out for image in chosen)
    assert len(calibration_images(split, card["split"]["seed"], 10**6)) == len(split.train_images)


def test_an_int8_model_that_strays_is_refused(exported: Path, finished_run: FinishedRun, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, dataset, _ = finished_run
    model = keras.models.load_model(exported.with_suffix(".keras"), compile=False)
    rng = np.random.default_rng(3)
    model.set_weights([w + 2.0 * w.std() * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    another_model = convert_to_onnx(model, dataset.spec.image_shape)
    monkeypatch.setattr(int8, "quantize_onnx", lambda source, images: another_model)
    with pytest.raises(ParityError, match="strays from its float32 original"):
        export_quantized(exported.with_suffix(".json"), dataset, tmp_path / "out", "stray")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_quantize_cli_then_verify(exported: Path, finished_run: FinishedRun, tmp_path: Path,
                                  command: Command) -> None:
    _, _, data_dir = finished_run
    data = ("--data-dir", str(data_dir), "--no-checksum")
    result = command("quantize", str(exported.with_suffix(".json")), "--name", "small",
                     "--exports-dir", str(tmp_path / "out"), "--calibration-images", "200", *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "x smaller" in result.stdout and "(at least 99.5% required)" in result.stdout
    assert json.loads((tmp_path / "out" / "small.json").read_text())["quantization"]["calibration_images"] == 200
    verified = command("verify", str(tmp_path / "out" / "small.onnx"), *data, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "int8 vs float32 Keras" in verified.stdout and "verified" in verified.stdout

    other = keras.models.load_model(tmp_path / "out" / "small.keras", compile=False)
    other.set_weights([w * 0 for w in other.get_weights()])
    other.save(tmp_path / "other.keras")
    assert_one_line_error(command("verify", str(tmp_path / "out" / "small.onnx"), "--keras-model",
                                  str(tmp_path / "other.keras"), *data, cwd=tmp_path), "does not reproduce")


def test_bad_quantize_arguments_get_one_line_errors(exported: Path, quantized: Path, tmp_path: Path) -> None:
    card = exported.with_suffix(".json")
    assert_one_line_error(run_cli("kmnist_search.quantize", str(exported), "--name", "x", cwd=tmp_path),
                          "not a model card")
    assert_one_line_error(run_cli("kmnist_search.quantize", str(quantized.with_suffix(".json")), "--name", "x",
                                  cwd=tmp_path), "already quantized")
    assert_one_line_error(run_cli("kmnist_search.quantize", str(card), "--name", "x", "--calibration-images", "0",
                                  cwd=tmp_path), "--calibration-images must be at least 1")
    copied = tmp_path / "copy"
    copied.mkdir()
    for suffix in (".json", ".onnx", ".keras"):
        shutil.copy(exported.with_suffix(suffix), copied / f"model{suffix}")
    with (copied / "model.onnx").open("ab") as handle:
        handle.write(b"tampered")
    (copied / "model.json").write_text(json.dumps({**json.loads(card.read_text()), "onnx_file": "model.onnx"}))
    assert_one_line_error(run_cli("kmnist_search.quantize", str(copied / "model.json"), "--name", "x", cwd=tmp_path),
                          "does not match the sha256")
