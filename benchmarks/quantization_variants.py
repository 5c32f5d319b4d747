"""How much of a model to quantize, judged on validation images only.

Run: python benchmarks/quantization_variants.py exports/A.json exports/B.json ... --data-dir ../shared/data/kmnist

For each float32 export (a model card with its .onnx beside it) this quantizes three ways with the
same calibration images as ``python -m kmnist_search.quantize``: every op (the output probabilities
included), the body only (softmax and ensemble averaging in float32), and the body only with the
classifier heads in float32 too (the method ``kmnist_search.quantize`` uses). Each variant is
compared with its float32 original on the validation split the model was selected on: label flips,
max and mean absolute probability difference, and file size. No test image is used.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

from kmnist_search.datasets import load_dataset, split_train_validation
from kmnist_search.export import onnx_probabilities
from kmnist_search.quantize import QUANTIZED_OPS, TrainingImageBatches, calibration_images, classifier_heads

VARIANTS = ("every op", "body only", "body only, float heads (current)")


def quantize_variant(source: Path, images: np.ndarray, variant: str, output: Path) -> None:
    with tempfile.TemporaryDirectory() as temp_dir:
        prepared = Path(temp_dir) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        options: dict[str, object] = {}
        if variant != "every op":
            options["op_types_to_quantize"] = QUANTIZED_OPS
        if variant.endswith("(current)"):
            options["nodes_to_exclude"] = classifier_heads(onnx.load(str(prepared)))
        quantize_static(str(prepared), str(output), TrainingImageBatches(images), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        **options)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", type=Path, nargs="+")
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()

    dataset = load_dataset("kmnist", args.data_dir)
    print("| export | variant | label flips vs float32 | max abs prob. diff | mean abs prob. diff | bytes |")
    print("|---|---|---|---|---|---|")
    for card_path in args.cards:
        card = json.loads(card_path.read_text())
        source = card_path.with_name(card["onnx_file"])
        training = card["training"]
        split = split_train_validation(dataset.train_images, dataset.train_labels, training["validation_images"],
                                       training["seed"])
        images = calibration_images(dataset, card, 1000)
        reference = onnx_probabilities(ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]),
                                       split.validation_images)
        for variant in VARIANTS:
            with tempfile.TemporaryDirectory() as temp_dir:
                output = Path(temp_dir) / "int8.onnx"
                quantize_variant(source, images, variant, output)
                session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
                probabilities = onnx_probabilities(session, split.validation_images)
                size = output.stat().st_size
            flips = int(np.sum(probabilities.argmax(axis=1) != reference.argmax(axis=1)))
            difference = np.abs(probabilities - reference)
            print(f"| {card_path.stem} | {variant} | {flips} | {difference.max():.4f} | {difference.mean():.2e} "
                  f"| {size:,} |", flush=True)


if __name__ == "__main__":
    main()
