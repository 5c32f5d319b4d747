"""``python -m kmnist_search.download [kmnist|k49|kkanji]``: download and verify the Kuzushiji datasets.

With no dataset named and a terminal attached, asks which to fetch, as the study's script did.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from kmnist_search.base.errors import DataError
from kmnist_search.commands.common import OneLineArgumentParser, program, run_main
from kmnist_search.commands.tensorflow_start import load_tensorflow_quietly
from kmnist_search.pipeline import DATASETS, DatasetSpec, default_cache_dir, download, get_spec, with_mirror


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=program("download"),
                                   description="Download the official dataset files and verify their checksums.")
    parser.add_argument("datasets", nargs="*", metavar="DATASET", help=f"one or more of {', '.join(DATASETS)}")
    parser.add_argument("--cache-dir", type=Path, help=f"where to keep them (default {default_cache_dir()})")
    parser.add_argument("--base-url", help="a mirror with the official layout (BASE/DATASET/FILE)")
    parser.add_argument("--list", action="store_true", help="list the datasets and their files")
    return parser


def describe(spec: DatasetSpec) -> str:
    lines = [f"{spec.name}: {spec.title}" + (f" ({spec.note})" if spec.note else "")]
    for data_file in spec.files.values():
        algorithm, digest = data_file.pinned_hash
        size = f"{data_file.size_bytes:,} bytes" if data_file.size_bytes else "size not pinned"
        lines.append(f"  {data_file.name:<26} {size:>18}  {algorithm} {digest}")
    return "\n".join(lines)


def pick_interactively() -> list[str]:
    """Ask which datasets to download (the study's script let the user pick)."""
    names = list(DATASETS)
    for number, name in enumerate(names, start=1):
        print(f"  {number}) {DATASETS[name].title}")
    answer = input("Which datasets? (numbers or names, comma separated) ").strip()
    chosen = []
    for token in filter(None, (t.strip() for t in answer.split(","))):
        chosen.append(names[int(token) - 1] if token.isdigit() and 0 < int(token) <= len(names) else token)
    if not chosen:
        raise DataError("no dataset chosen: name one, e.g. `python -m kmnist_search.download kmnist`")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print("\n".join(describe(spec) for spec in DATASETS.values()))
        return 0
    names = args.datasets
    if not names:
        if not sys.stdin.isatty():
            raise DataError(f"name a dataset to download ({', '.join(DATASETS)}), e.g. "
                            f"`python -m kmnist_search.download kmnist`")
        names = pick_interactively()
    load_tensorflow_quietly()  # Keras's downloader
    for name in names:
        spec = get_spec(name)
        if args.base_url:
            spec = with_mirror(spec, args.base_url)
        directory = download(spec, args.cache_dir)
        print(f"{spec.name}: verified in {directory}")
    return 0


def cli() -> None:
    run_main(main)
