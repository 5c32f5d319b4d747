"""``python -m kmnist_search.export RUN_DIR``: export a finished run's winner to ONNX and verify it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kmnist_search import pipeline
from kmnist_search.base.names import check_name
from kmnist_search.commands.common import OneLineArgumentParser, data_options, program, run_main
from kmnist_search.commands.tensorflow_start import load_tensorflow_quietly


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=program("export"),
                                   description="Export a run's winner to ONNX and verify it with onnxruntime.")
    parser.add_argument("run_dir", type=Path, help="a finished run directory (with results.json)")
    parser.add_argument("--exports-dir", type=Path, default=Path("exports"), help="where to write (default exports/)")
    parser.add_argument("--name", help="file name stem (default: the run's name)")
    parser.add_data_arguments()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.name is not None:
        check_name(args.name, "--name")
    pipeline.open_run(args.run_dir)  # checked before TensorFlow loads
    load_tensorflow_quietly()
    exported = pipeline.export(args.run_dir, **data_options(args), exports_dir=args.exports_dir, name=args.name)
    print(exported.describe())
    return 0


def cli() -> None:
    run_main(main)
