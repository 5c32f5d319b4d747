"""Re-verify an exported model against its Keras original on the full test set:
``python -m kmnist_search.verify exports/kmnist-reference.onnx``.

Checks the file's sha256 against its model card, then compares onnxruntime with Keras on every
test image. Exits non-zero if anything disagrees (an int8 model, see :mod:`kmnist_search.quantize`,
may differ within the tolerance its card records).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from kmnist_search.cli import OneLineArgumentParser, quiet_tensorflow_logs, run_main
from kmnist_search.datasets import file_digest, load_dataset
from kmnist_search.errors import ModelFileError, ParityError
from kmnist_search.inference import Classifier


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog="python -m kmnist_search.verify",
                                   description="Prove an exported ONNX model reproduces its Keras model.")
    parser.add_argument("model", type=Path, help="an exported .onnx file with its .json card and .keras beside it")
    parser.add_argument("--keras-model", type=Path, help="the Keras model to compare with (default: beside it)")
    parser.add_data_arguments()
    return parser


def read_card(onnx_path: Path) -> dict:
    card_path = onnx_path.with_suffix(".json")
    if not card_path.is_file():
        raise ModelFileError(f"{card_path} is missing: an export without its model card was never verified; "
                             f"export it again with `python -m kmnist_search.export RUN_DIR`")
    try:
        card: dict = json.loads(card_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{card_path} is not valid JSON ({error}): export the model again") from None
    return card


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    classifier = Classifier(args.model)  # fails early, in one line, on a missing or truncated file
    card = read_card(args.model)
    digest = file_digest(args.model, "sha256")
    if digest != card.get("onnx_sha256"):
        raise ModelFileError(f"{args.model} has sha256 {digest[:12]}..., but its model card says "
                             f"{str(card.get('onnx_sha256'))[:12]}...: the file changed after it was verified")
    dataset = load_dataset(card["dataset"]["name"], args.data_dir, args.cache_dir,
                           verify_checksums=not args.no_checksum)
    quiet_tensorflow_logs()
    from kmnist_search.export import load_keras_model, measure_parity
    from kmnist_search.quantize import describe_quantized_parity, quantized_parity_passed

    keras_path = args.keras_model or args.model.with_name(card["keras_file"])
    report = measure_parity(classifier.session, load_keras_model(keras_path), dataset.test_images,
                            dataset.test_labels)
    quantization = card.get("quantization")
    tolerances = (quantization["min_label_agreement"], quantization["max_accuracy_drop"]) if quantization else ()
    print(f"{args.model}: sha256 matches its model card")
    print(describe_quantized_parity(report, *tolerances) if quantization else report.describe())
    if not (quantized_parity_passed(report, *tolerances) if quantization else report.passed):
        raise ParityError(f"{args.model} does not reproduce {keras_path}: do not ship it; export it again")
    print("verified")
    return 0


if __name__ == "__main__":
    run_main(main)
