"""The model card: one schema, checked on write and read, recording every model's effective settings."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import onnx
import pytest

import kmnist_search
from kmnist_search.base.errors import ModelFileError
from kmnist_search.data.contract import MODEL_CARD_KEY
from kmnist_search.data.datasets import Dataset, load_dataset
from kmnist_search.data.spaces import HYPERPARAMETERS, SGD_MOMENTUM, default_learning_rate, parse_space, study_default
from kmnist_search.export.card import CARD_SCHEMA_VERSION, SCHEMA_PATH, card_schema, read_card, validate_card
from kmnist_search.export.convert import export_winner
from kmnist_search.export.inference import Classifier
from kmnist_search.search.runner import SearchOptions, run_search
from tests.cli import assert_one_line_error, run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

SHIPPED_CARD = Path(__file__).resolve().parents[1] / "exports" / "kmnist-reference.json"

# Every optional hyperparameter away from its default, so a value that is dropped or replaced by a
# default on the way from the space file to the card shows up.
WALK_SPACE = """
name = "walk"
[hyperparameters]
optimizer = "sgd"
learning_rate = [0.05]
batch_size = [32]
loss = ["categorical_crossentropy"]
conv_layers = "8-p-16"
batch_norm = true
dropout_conv = 0.1
dense_units = 24
dropout_dense = 0.3
augment = 0.05
cutout = 0.2
mixup = 0.2
network = "preact_resnet"
resnet_depth = 8
resnet_width = 4
weight_decay = 0.0005
label_smoothing = 0.1
nesterov = true
warmup_epochs = 1
cutout_area = 0.25
[training]
epochs = 2
lr_schedule = "cosine"
validation_images = 100
train_images = 300
retrain_epochs = 1
"""

DEFAULTS_SPACE = """
name = "defaults"
[hyperparameters]
batch_size = [64]
loss = ["mean_squared_error"]
[training]
optimizer = "adam"
epochs = 1
validation_images = 100
train_images = 300
"""


@pytest.fixture
def dataset(synthetic_data_dir: Path) -> Dataset:
    return load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)


def export_space(text: str, dataset: Dataset, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Search and export a space file; return the parsed file and the card as read back."""
    import tomllib

    data = tomllib.loads(text)
    space = parse_space(data, source="walk.toml")
    run_search(dataset, space, SearchOptions("grid", tmp_path / "runs", space.name, seed=7, init_seed=11))
    export_winner(tmp_path / "runs" / space.name, dataset, tmp_path / "exports")
    return data, read_card(tmp_path / "exports" / f"{space.name}.json")


@pytest.mark.slow
@pytest.mark.parametrize("network", ["preact_resnet", "cnn"])
def test_every_hyperparameter_walks_from_the_space_file_to_the_card(network: str, dataset: Dataset,
                                                                    tmp_path: Path) -> None:
    data, card = export_space(WALK_SPACE.replace('network = "preact_resnet"', f'network = "{network}"'), dataset,
                              tmp_path)
    (model,) = card["models"]
    training = model["training"]
    listed = data["hyperparameters"]
    used = {name for name, kind in HYPERPARAMETERS.items() if kind.network in (None, network)}
    assert set(training["hyperparameters"]) == used  # a new knob must reach the card; another network's not
    assert {"conv_layers", "dense_units"} <= used if network == "cnn" else {"resnet_depth", "resnet_width"} <= used
    for name in used:
        expected = listed[name][0] if isinstance(listed[name], list) else listed[name]
        assert training["hyperparameters"][name] == expected, name
    assert training["optimizer"]["name"] == "sgd" and training["optimizer"]["learning_rate"] == 0.05
    assert training["optimizer"]["momentum"] == SGD_MOMENTUM and training["optimizer"]["nesterov"] is True
    assert training["optimizer"]["weight_decay"] == pytest.approx(0.0005)
    assert training["learning_rate_schedule"]["name"] == "cosine"
    assert training["learning_rate_schedule"]["warmup_epochs"] == 1
    assert training["learning_rate_schedule"]["initial_learning_rate"] == 0.05
    assert training["search_trial"]["epochs_planned"] == 2 and training["search_trial"]["train_images"] == 300
    assert 1 <= training["search_trial"]["epochs_trained"] <= 2
    assert training["retraining"]["epochs_planned"] == 1 and training["retraining"]["epochs_trained"] == 1
    assert training["retraining"]["train_images"] == len(dataset.train_labels) - 100
    assert training["seeds"] == {"split": 7, "weights": 11} and card["split"] == {"seed": 7, "validation_images": 100}
    assert card["kind"] == "single" and card["precision"] == "float32" and training["teacher"] is None


@pytest.mark.slow
def test_defaults_are_resolved_in_the_card(dataset: Dataset, tmp_path: Path) -> None:
    _, card = export_space(DEFAULTS_SPACE, dataset, tmp_path)
    hyperparameters = card["models"][0]["training"]["hyperparameters"]
    assert hyperparameters["optimizer"] == "adam" and hyperparameters["learning_rate"] == default_learning_rate("adam")
    for name, kind in HYPERPARAMETERS.items():
        if kind.network == "preact_resnet":
            assert name not in hyperparameters, name  # the study's CNN has no residual depth or width
        elif name not in ("batch_size", "loss", "optimizer", "learning_rate"):  # those the space sets
            assert hyperparameters[name] == study_default(name), name
    assert hyperparameters["loss"] == "mean_squared_error" and hyperparameters["batch_size"] == 64
    optimizer = card["models"][0]["training"]["optimizer"]
    assert optimizer["learning_rate"] == 0.001 and optimizer["beta_1"] == 0.9  # Keras's own defaults, as built
    assert card["models"][0]["training"]["retraining"] is None


def test_the_schema_file_ships_inside_the_package() -> None:
    package = Path(kmnist_search.__file__).parent
    patterns = tomllib.loads((package.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(SCHEMA_PATH.relative_to(package).match(pattern) for pattern in patterns["kmnist_search"])
    assert card_schema()["properties"]["schema_version"]["const"] == CARD_SCHEMA_VERSION


def test_the_shipped_card_validates_and_records_its_training() -> None:
    card = read_card(SHIPPED_CARD)
    assert card["kind"] == "single" and card["precision"] == "int8" and len(card["models"]) == 1
    training = card["models"][0]["training"]
    assert training["hyperparameters"]["network"] == "preact_resnet"
    assert "conv_layers" not in training["hyperparameters"] and training["hyperparameters"]["resnet_width"] == 24
    assert training["optimizer"]["name"] == "sgd" and training["optimizer"]["nesterov"] is True
    assert training["learning_rate_schedule"]["name"] == "cosine"
    assert training["learning_rate_schedule"]["warmup_epochs"] == 1
    assert training["retraining"]["epochs_trained"] == 60 and training["retraining"]["train_images"] == 54000
    assert card["quantization"]["source_metrics"]["test_accuracy"] >= card["metrics"]["test_accuracy"] - 0.002


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda card: card.pop("models"), "'models' is a required property"),
    (lambda card: card.update(schema_version=1), "schema version 1, older"),
    (lambda card: card.update(schema_version=9), "newer than this kmnist-search reads"),
    (lambda card: card["models"][0]["training"]["hyperparameters"].pop("learning_rate"), "learning_rate"),
    (lambda card: card["metrics"].update(test_accuracy=1.5), "test_accuracy"),
])
def test_invalid_cards_are_refused_in_one_line(change: Any, fragment: str, tmp_path: Path) -> None:
    card = json.loads(SHIPPED_CARD.read_text())
    change(card)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError) as error:
        read_card(path)
    assert fragment in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ModelFileError):
        validate_card(card, "memory")


@pytest.mark.slow
def test_verify_and_inference_refuse_a_card_that_does_not_validate(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / exported.name
    for suffix in (".onnx", ".json", ".keras"):
        shutil.copy(exported.with_suffix(suffix), copy.with_suffix(suffix))
    card = json.loads(copy.with_suffix(".json").read_text())
    del card["split"]
    copy.with_suffix(".json").write_text(json.dumps(card))
    assert_one_line_error(run_cli("kmnist_search.verify", str(copy), cwd=tmp_path), "is not a valid model card")

    proto = onnx.load(str(copy))
    onnx.helper.set_model_props(proto, {MODEL_CARD_KEY: json.dumps(card)})
    onnx.save(proto, str(copy))
    with pytest.raises(ModelFileError, match="is not a valid model card"):
        Classifier(copy)
    assert_one_line_error(run_cli("kmnist_search.predict", str(copy), str(copy), cwd=tmp_path),
                          "is not a valid model card")
