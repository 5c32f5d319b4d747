"""Exported models -> one ONNX graph that averages their probabilities, verified like a single export.

Reads each member's model card and its Keras file, joins the members on one ``image`` input with an
average of their softmax outputs, and publishes that graph only after onnxruntime reproduces the Keras
ensemble on the full test set. Members must share the dataset and the validation split (seed and size)
so that the ensemble's validation accuracy is measured on images no member trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kmnist_search.base.errors import ModelFileError, ParityError
from kmnist_search.data.contract import INPUT_NAME, OUTPUT_NAME
from kmnist_search.data.datasets import Dataset
from kmnist_search.export.card import ensemble_card, read_member_cards
from kmnist_search.export.convert import (
    EXPORT_REFERENCE_MISSING,
    convert_to_onnx,
    export_versions,
    keras_probabilities,
    load_keras_model,
    measure_parity,
    publish,
    session_from_proto,
    without_augmentation,
)
from kmnist_search.export.parity import EXACT


@dataclass(frozen=True)
class Member:
    """One exported model: its model card and its Keras model (without training-only layers)."""

    card_path: Path
    card: dict[str, Any]
    model: keras.Model


def load_members(card_paths: Sequence[Path]) -> list[Member]:
    """The members' cards and their Keras models, without training-only layers."""
    def reference(path: Path, card: dict[str, Any]) -> Any:
        return without_augmentation(load_keras_model(path.with_name(card["keras_file"]), EXPORT_REFERENCE_MISSING,
                                                     "export the model again"))

    members = [Member(path, card, reference(path, card))
               for path, card in zip(card_paths, read_member_cards(card_paths), strict=True)]
    if len({(tuple(m.model.input_shape[1:]), tuple(m.model.output_shape[1:])) for m in members}) != 1:
        raise ModelFileError("the members' input or output shapes differ: they are not models of one dataset")
    return members


def build_ensemble(models: Sequence[keras.Model]) -> keras.Model:
    """One Keras model: each member on the shared input, then the mean of their probabilities."""
    inputs = keras.Input(shape=models[0].input_shape[1:], name=INPUT_NAME)
    outputs = [keras.Model(model.inputs, model.outputs[0], name=f"member_{index}")(inputs)
               for index, model in enumerate(models)]
    return keras.Model(inputs, keras.layers.Average(name=OUTPUT_NAME)(outputs), name="kmnist_ensemble")


def export_ensemble(card_paths: Sequence[Path], dataset: Dataset, exports_dir: Path, name: str) -> dict[str, Any]:
    """Export the averaged ensemble of exported models to ``exports_dir/NAME.onnx`` with its model card.

    Raises ParityError (and writes nothing) if onnxruntime disagrees with the Keras ensemble.
    """
    members = load_members(card_paths)
    if members[0].card["dataset"]["name"] != dataset.spec.name:
        raise ModelFileError(f"the members classify {members[0].card['dataset']['name']}, not {dataset.spec.name}")
    ensemble = build_ensemble([m.model for m in members])
    proto = convert_to_onnx(ensemble, dataset.spec.image_shape)
    parity = measure_parity(session_from_proto(proto), ensemble, dataset.test_images, dataset.test_labels)
    if not parity.passes(EXACT):
        raise ParityError(f"the ONNX export does not reproduce the Keras ensemble ({parity.describe(EXACT)}): "
                          f"nothing was written to {exports_dir}; report this with --debug output")
    split = members[0].card["split"]
    validation = dataset.split(split["validation_images"], split["seed"])
    validation_accuracy = float(np.mean(keras_probabilities(ensemble, validation.validation_images).argmax(axis=1)
                                        == validation.validation_labels))
    card = ensemble_card([(m.card_path, m.card) for m in members], dataset.spec, validation_accuracy, parity, EXACT,
                         name, export_versions())
    return publish(proto, card, ensemble, exports_dir, f"an ensemble of {', '.join(p.name for p in card_paths)}")
