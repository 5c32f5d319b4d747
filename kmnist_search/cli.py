"""Shared plumbing for the thin command-line front ends (``python -m kmnist_search.X``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from kmnist_search.errors import KmnistSearchError


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are a single line, not usage plus error; every command
    takes ``--debug``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help="show tracebacks")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def add_data_arguments(self) -> None:
        """The options that say where the dataset files come from."""
        self.add_argument("--data-dir", type=Path, help="use the official files in DIR; never download")
        self.add_argument("--cache-dir", type=Path, help="download cache (default ~/.keras/datasets)")
        self.add_argument("--no-checksum", action="store_true",
                          help="accept local files whose checksums differ from the official release")


def quiet_tensorflow_logs() -> None:
    """Silence TensorFlow's C++ start-up chatter unless the user asked for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main`` and turn expected failures into one line on stderr and a non-zero exit.

    ``--debug`` anywhere on the command line keeps the full traceback instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = main(args)
    except KmnistSearchError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)
