"""``python -m kmnist_search.ensemble CARD.json CARD.json ... --name NAME``: average exported models into
one ONNX model and verify it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kmnist_search import pipeline
from kmnist_search.base.formatting import percent
from kmnist_search.base.names import check_name
from kmnist_search.commands.common import OneLineArgumentParser, data_options, program, run_main
from kmnist_search.commands.tensorflow_start import load_tensorflow_quietly


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=program("ensemble"),
                                   description="Average exported models into one ONNX model and verify it.")
    parser.add_argument("cards", type=Path, nargs="+", help="the members' model cards (exports/NAME.json)")
    parser.add_argument("--name", required=True, help="file name stem of the ensemble")
    parser.add_argument("--exports-dir", type=Path, default=Path("exports"), help="where to write (default exports/)")
    parser.add_data_arguments()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_name(args.name, "--name")
    pipeline.read_member_cards(args.cards)  # checked before TensorFlow loads
    load_tensorflow_quietly()
    written = pipeline.ensemble(args.cards, args.name, **data_options(args), exports_dir=args.exports_dir)
    card = written.card
    print(written.describe())
    print(f"validation accuracy {percent(card['metrics']['validation_accuracy'])}, test accuracy "
          f"{percent(card['metrics']['test_accuracy'])} (members: "
          + ", ".join(percent(m["metrics"]["test_accuracy"]) for m in card["models"]) + ")")
    return 0


def cli() -> None:
    run_main(main)
