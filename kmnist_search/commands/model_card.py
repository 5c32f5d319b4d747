"""``python -m kmnist_search model-card exports/NAME.onnx``: write an export's model card page.

Runs the test set through the ONNX file with onnxruntime alone, times it by the latency protocol, and
writes ``exports/NAME.evaluation.json`` and the page ``exports/NAME.md`` from it and the card JSON.
Every export writes its page; this command writes it again, for an older export or on another machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kmnist_search import pipeline
from kmnist_search.commands.common import OneLineArgumentParser, data_options, program, run_main
from kmnist_search.export.inference import checked_export


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=program("model-card"),
                                   description="Write an export's model card page (NAME.md) from its card and a "
                                               "fresh measurement with onnxruntime.")
    parser.add_argument("model", type=Path, help="an exported .onnx file with its .json card beside it")
    parser.add_data_arguments()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    checked_export(args.model)  # checked before the test set loads
    print(pipeline.write_model_card(args.model, **data_options(args)))
    return 0


def cli() -> None:
    run_main(main)
