"""``python -m kmnist_search.verify exports/kmnist-reference.onnx``: re-verify an export.

Checks the file's sha256 against its model card, then compares onnxruntime with Keras on every test
image under the rule the card records. Exits non-zero if anything disagrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kmnist_search import pipeline
from kmnist_search.base.errors import ParityError
from kmnist_search.commands.common import OneLineArgumentParser, data_options, program, run_main
from kmnist_search.commands.tensorflow_start import load_tensorflow_quietly
from kmnist_search.export.inference import checked_export


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=program("verify"),
                                   description="Prove an exported ONNX model reproduces its Keras model.")
    parser.add_argument("model", type=Path, help="an exported .onnx file with its .json card and .keras beside it")
    parser.add_argument("--keras-model", type=Path, help="the Keras model to compare with (default: beside it)")
    parser.add_data_arguments()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    checked_export(args.model)  # checked before TensorFlow loads
    load_tensorflow_quietly()
    verification = pipeline.verify(args.model, **data_options(args), keras_model=args.keras_model,
                                   raise_on_failure=False)
    print(verification.describe())
    if not verification.passed:
        raise ParityError(f"{args.model} does not reproduce {verification.keras_path} or its card: do not ship it; "
                          f"export it again")
    print("verified")
    return 0


def cli() -> None:
    run_main(main)
