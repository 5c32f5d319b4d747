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
from pathlib import Path

import numpy as np
import onnxruntime as ort
from records import description

from kmnist_search.data.datasets import load_dataset
from kmnist_search.export.convert import onnx_probabilities
from kmnist_search.export.int8 import QUANTIZED_OPS, calibration_images, model_split, quantize_onnx

VARIANTS = {  # name: (op types to quantize, keep the classifier heads in float32)
    "every op": (None, False),
    "body only": (QUANTIZED_OPS, False),
    "body only, float heads (current)": (QUANTIZED_OPS, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("cards", type=Path, nargs="+")
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()

    dataset = load_dataset("kmnist", args.data_dir)
    print("| export | variant | label flips vs float32 | max abs prob. diff | mean abs prob. diff | bytes |")
    print("|---|---|---|---|---|---|")
    for card_path in args.cards:
        card = json.loads(card_path.read_text())
        source = card_path.with_name(card["onnx_file"])
        split = model_split(dataset, card)
        images = calibration_images(split, card["training"]["seed"], 1000)
        reference = onnx_probabilities(ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]),
                                       split.validation_images)
        for variant, (op_types, float_heads) in VARIANTS.items():
            proto = quantize_onnx(source, images, op_types, float_heads).SerializeToString()
            session = ort.InferenceSession(proto, providers=["CPUExecutionProvider"])
            probabilities = onnx_probabilities(session, split.validation_images)
            flips = int(np.sum(probabilities.argmax(axis=1) != reference.argmax(axis=1)))
            difference = np.abs(probabilities - reference)
            print(f"| {card_path.stem} | {variant} | {flips} | {difference.max():.4f} | {difference.mean():.2e} "
                  f"| {len(proto):,} |", flush=True)


if __name__ == "__main__":
    main()
