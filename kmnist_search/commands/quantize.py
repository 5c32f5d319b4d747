"""``python -m kmnist_search.quantize CARD.json --name NAME``: write an int8 copy of an export, verified
against its Keras model within the int8 tolerance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kmnist_search import pipeline
from kmnist_search.base.names import check_name
from kmnist_search.commands.common import OneLineArgumentParser, data_options, program, run_main
from kmnist_search.commands.tensorflow_start import load_tensorflow_quietly


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=program("quantize"),
                                   description="Quantize an exported model to int8 ONNX and verify it.")
    parser.add_argument("card", type=Path, help="the float32 export's model card (exports/NAME.json)")
    parser.add_argument("--name", required=True, help="file name stem of the int8 model")
    parser.add_argument("--exports-dir", type=Path, default=Path("exports"), help="where to write (default exports/)")
    parser.add_argument("--calibration-images", type=int, default=pipeline.INT8_CALIBRATION_IMAGES,
                        help=f"training images used to calibrate activation ranges "
                             f"(default {pipeline.INT8_CALIBRATION_IMAGES})")
    parser.add_data_arguments()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_name(args.name, "--name")
    if args.calibration_images < 1:
        parser.error(f"--calibration-images must be at least 1, got {args.calibration_images}")
    pipeline.read_quantizable_card(args.card)  # checked before TensorFlow loads
    load_tensorflow_quietly()
    written = pipeline.quantize(args.card, args.name, **data_options(args), exports_dir=args.exports_dir,
                                calibration_images=args.calibration_images)
    print(written.describe())
    return 0


def cli() -> None:
    run_main(main)
