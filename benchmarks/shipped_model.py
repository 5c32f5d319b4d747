"""The shipped model's size, accuracy and speed, from the records beside it.

Run: python benchmarks/shipped_model.py

Measures nothing itself: ``python -m kmnist_search model-card exports/kmnist-reference.onnx`` runs the
test set through the file with onnxruntime alone and times it beside a fixed reference model, writing
``exports/kmnist-reference.evaluation.json``; the model card ``exports/kmnist-reference.json`` records
the float32 model it was quantized from. This renders both into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from records import BENCHMARKS, ROOT, description, show

CARD = ROOT / "exports" / "kmnist-reference.json"
EVALUATION = ROOT / "exports" / "kmnist-reference.evaluation.json"
DOCUMENT = BENCHMARKS
MARKER = "figures:shipped-model"


def render(card: dict[str, Any], evaluation: dict[str, Any]) -> str:
    speed, source = evaluation["latency"], card["quantization"]
    return "\n".join([
        f"`python -m kmnist_search model-card exports/{card['onnx_file']}` ({evaluation['measured_at'][:10]}, "
        f"{speed['machine']}; {speed['protocol']}):", "",
        "| model | bytes | test acc | single image p50 | p90 | images/s (batch 256) | single image vs reference |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| `{card['onnx_file']}`, int8 | {evaluation['onnx_bytes']:,} | {evaluation['test_accuracy']:.2%} | "
        f"{speed['single_image_ms']:.3f} ms | {speed['single_image_p90_ms']:.3f} ms | "
        f"{speed['images_per_second']:,.0f} | {speed['ratio_to_reference']:.2f}x |",
        f"| the float32 model it was quantized from (as the card records it) | {source['source_onnx_bytes']:,} | "
        f"{source['source_metrics']['test_accuracy']:.2%} | | | | |",
        "", f"The reference is a fixed small model timed beside it in the same rounds "
        f"({speed['reference_single_image_ms']:.3f} ms per image), so the ratio holds when the host's speed "
        f"swings. int8 keeps the model {source['source_onnx_bytes'] / evaluation['onnx_bytes']:.1f}x smaller than "
        f"float32 for {(source['source_metrics']['test_accuracy'] - evaluation['test_accuracy']) * 100:.2f} "
        "points of test accuracy."])


def main() -> int:
    argparse.ArgumentParser(description=description(__doc__)).parse_args()
    text = render(json.loads(CARD.read_text(encoding="utf-8")), json.loads(EVALUATION.read_text(encoding="utf-8")))
    show(DOCUMENT, MARKER, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
