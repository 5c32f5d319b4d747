"""``python -m kmnist_search.predict exports/kmnist-reference.onnx a.png b.png arrays.npy``: classify
Kuzushiji characters with an exported model, onnxruntime only (no TensorFlow or Keras)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from kmnist_search.base.errors import InputImageError
from kmnist_search.base.formatting import percent
from kmnist_search.commands.common import OneLineArgumentParser, print_safely, program, run_main
from kmnist_search.export.inference import Classifier, Prediction, predict_files


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=program("predict"),
                                   description="Classify Kuzushiji characters with an exported ONNX model.")
    parser.add_argument("model", type=Path, help="an exported .onnx file")
    parser.add_argument("inputs", type=Path, nargs="*", help="image files (PNG, JPEG, ...) or .npy/.npz arrays")
    parser.add_argument("--top", type=int, default=3, help="how many classes to list per image (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    return parser


def format_prediction(prediction: Prediction) -> str:
    label = prediction.label
    top = ", ".join(f"{c.character} {c.romanized} {percent(p, 1)}" for c, p in prediction.top)
    line = (f"{prediction.source}: {label.character} ({label.romanized}, {label.codepoint}, class {label.index}) "
            f"{percent(prediction.probability, 1)}   top {len(prediction.top)}: {top}")
    if prediction.notes:
        line += f"   [{'; '.join(prediction.notes)}]"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.inputs:
        raise InputImageError("no inputs: pass one or more image files or .npy/.npz arrays after the model")
    if args.top < 1:
        raise InputImageError(f"--top {args.top}: must be at least 1")
    classifier = Classifier(args.model)
    predictions = predict_files(classifier, args.inputs, args.top)
    if args.json:
        print_safely(json.dumps([p.to_dict() for p in predictions], ensure_ascii=False, indent=2))
    else:
        print_safely("\n".join(format_prediction(prediction) for prediction in predictions))
    return 0


def cli() -> None:
    run_main(main)
