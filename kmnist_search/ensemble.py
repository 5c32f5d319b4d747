"""Exported models -> one ONNX graph that averages their probabilities, verified like a single export.

``python -m kmnist_search.ensemble exports/a.json exports/b.json --name kmnist-reference`` reads each
member's model card and its Keras file, joins the members on one ``image`` input with an average of
their softmax outputs, and exports that graph to ONNX only after onnxruntime reproduces the Keras
ensemble on the full test set. Members must share the dataset and the validation split (seed and size)
so that the ensemble's validation accuracy is measured on images no member trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kmnist_search.cli import OneLineArgumentParser, run_main
from kmnist_search.datasets import Dataset, load_dataset, split_train_validation
from kmnist_search.errors import ModelFileError, ParityError
from kmnist_search.export import (
    convert_to_onnx,
    describe_export,
    keras_probabilities,
    load_keras_model,
    measure_parity,
    model_card_interface,
    save_inference_copy,
    session_from_proto,
    stamp_and_write,
    without_augmentation,
)
from kmnist_search.hypermodel import INPUT_NAME, OUTPUT_NAME
from kmnist_search.verify import read_card


@dataclass(frozen=True)
class Member:
    """One exported model: its model card and its Keras model (without training-only layers)."""

    card_path: Path
    card: dict[str, Any]
    model: keras.Model


def read_member_cards(card_paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read the members' model cards; they must classify one dataset and hold out one validation split."""
    if len(card_paths) < 2:
        raise ModelFileError("an ensemble needs at least two member model cards")
    cards = []
    for path in card_paths:
        if path.suffix != ".json":
            raise ModelFileError(f"{path} is not a model card: pass the .json written beside an exported .onnx")
        card = read_card(path)
        if "members" in card:
            raise ModelFileError(f"{path} is already an ensemble: pass its members' cards instead")
        if "keras_file" not in card or "training" not in card:
            raise ModelFileError(f"{path} is not a kmnist-search model card: export the member with "
                                 f"`python -m kmnist_search.export RUN_DIR` first")
        cards.append(card)
    for path, card in zip(card_paths[1:], cards[1:], strict=True):
        for label, key in (("dataset", lambda c: c["dataset"]["name"]),
                           ("split seed", lambda c: c["training"]["seed"]),
                           ("validation set size", lambda c: c["training"]["validation_images"])):
            if key(card) != key(cards[0]):
                raise ModelFileError(f"{path} and {card_paths[0]} differ in {label} ({key(card)} vs "
                                     f"{key(cards[0])}): ensemble members must share the dataset and validation "
                                     f"split; retrain with the same --seed")
    return cards


def load_members(card_paths: Sequence[Path]) -> list[Member]:
    """The members' cards and their Keras models, without training-only layers."""
    members = [Member(path, card, without_augmentation(load_keras_model(path.with_name(card["keras_file"]))))
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


def validation_accuracy(model: keras.Model, dataset: Dataset, seed: int, validation_images: int) -> float:
    """Accuracy on the held-out validation images the members were selected on (none trained on them)."""
    split = split_train_validation(dataset.train_images, dataset.train_labels, validation_images, seed)
    predicted = keras_probabilities(model, split.validation_images).argmax(axis=1)
    return float(np.mean(predicted == split.validation_labels))


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
    if not parity.passed:
        raise ParityError(f"the ONNX export does not reproduce the Keras ensemble ({parity.describe()}): nothing "
                          f"was written to {exports_dir}; report this with --debug output")
    training = members[0].card["training"]
    card = {
        **model_card_interface(dataset.spec, name),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "members": [{"card": m.card_path.name, "onnx_sha256": m.card.get("onnx_sha256"),
                     "training": m.card["training"], "metrics": m.card["metrics"]} for m in members],
        "combination": "mean of the members' softmax probabilities",
        "training": {"seed": training["seed"], "validation_images": training["validation_images"],
                     "search_spaces": [m.card["training"]["search_space"] for m in members]},
        "dataset": members[0].card["dataset"],
        "metrics": {"validation_accuracy": validation_accuracy(ensemble, dataset, training["seed"],
                                                               training["validation_images"]),
                    "test_accuracy": parity.keras_accuracy, "test_images": len(dataset.test_labels)},
        "parity": asdict(parity),
    }
    save_inference_copy(ensemble, exports_dir / card["keras_file"])
    return stamp_and_write(proto, card, exports_dir, f"an ensemble of {', '.join(p.name for p in card_paths)}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kmnist_search.ensemble CARD.json CARD.json ... --name NAME``."""
    parser = OneLineArgumentParser(prog="python -m kmnist_search.ensemble",
                                   description="Average exported models into one ONNX model and verify it.")
    parser.add_argument("cards", type=Path, nargs="+", help="the members' model cards (exports/NAME.json)")
    parser.add_argument("--name", required=True, help="file name stem of the ensemble")
    parser.add_argument("--exports-dir", type=Path, default=Path("exports"), help="where to write (default exports/)")
    parser.add_data_arguments()
    args = parser.parse_args(argv)
    dataset_name = read_member_cards(args.cards)[0]["dataset"]["name"]
    dataset = load_dataset(dataset_name, args.data_dir, args.cache_dir, verify_checksums=not args.no_checksum)
    card = export_ensemble(args.cards, dataset, args.exports_dir, args.name)
    print(describe_export(card, args.exports_dir))
    print(f"validation accuracy {card['metrics']['validation_accuracy'] * 100:.2f}%, test accuracy "
          f"{card['metrics']['test_accuracy'] * 100:.2f}% (members: "
          + ", ".join(f"{m['metrics']['test_accuracy'] * 100:.2f}%" for m in card["members"]) + ")")
    return 0


if __name__ == "__main__":
    run_main(main)
