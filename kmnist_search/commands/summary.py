"""``python -m kmnist_search.summary RUN_DIR [--format table|markdown|csv|json|html] [--top N] [--write-report]``.

Prints a run's ranked trials, hyperparameter effects and winner. It only reads the run, unless
``--write-report`` asks it to (re)write ``RUN_DIR/report/``; ``--format html`` prints the path of the
run's HTML report, writing it first if it is not there yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kmnist_search import pipeline
from kmnist_search.base.errors import RunError
from kmnist_search.commands.common import OneLineArgumentParser, print_safely, program, run_main
from kmnist_search.pipeline import HTML_PAGE, RunDir

FORMATS = ("table", "markdown", "csv", "json", "html")


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=program("summary"),
                                   description="Summarise a search: ranked trials, effects and the winner.")
    parser.add_argument("run_dir", type=Path, help="a run directory, e.g. runs/quick-grid")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    parser.add_argument("--top", type=int, help="only the N best trials")
    parser.add_argument("--write-report", action="store_true",
                        help="also (re)write the figures and the report pages (README.md, index.html) in "
                             "RUN_DIR/report/")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.top is not None and args.top < 1:
        raise RunError(f"--top {args.top}: must be at least 1")
    if args.format == "html":
        page = RunDir.existing(args.run_dir).report_dir / HTML_PAGE
        if args.write_report or not page.is_file():
            page = pipeline.write_report(args.run_dir)
        print_safely(str(page))
        return 0
    text = pipeline.summarise(args.run_dir, args.format, args.top)
    if args.write_report:
        report = pipeline.write_report(args.run_dir)
        if args.format == "table":
            text += f"\n\nreport: {report}"
    print_safely(text)
    return 0


def cli() -> None:
    run_main(main)
