"""Shared plumbing for the command-line front ends: one-line errors, common options, quiet start-up."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from kmnist_search.base.errors import DISK_ERRORS, KmnistSearchError, TrialDiskError

DEBUG_FLAG = "--debug"
libraries_silenced = False  # set by run_main unless --debug
invoked_as: str | None = None  # "kmnist-search" or "python -m kmnist_search" when the one-name front end ran it


def program(verb: str) -> str:
    """A command as the user called it, for its usage line: ``kmnist-search run``, ``python -m kmnist_search
    run`` or ``python -m kmnist_search.run``."""
    if invoked_as:
        return f"{invoked_as} {verb}"
    return f"python -m kmnist_search {verb}" if verb == "model-card" else f"python -m kmnist_search.{verb}"


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are a single line, not usage plus error; every command
    takes ``--debug``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action="store_true", help="show tracebacks and the libraries' own log lines")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def add_data_arguments(self) -> None:
        """The options that say where the dataset files come from."""
        self.add_argument("--data-dir", type=Path, help="use the official files in DIR; never download")
        self.add_argument("--cache-dir", type=Path, help="download cache (default ~/.keras/datasets)")
        self.add_argument("--no-checksum", action="store_true",
                          help="accept local files whose checksums differ from the official release")


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed data options (``add_data_arguments``) as the library's keyword arguments."""
    return {"data_dir": args.data_dir, "cache_dir": args.cache_dir, "verify_checksums": not args.no_checksum}


def silence_libraries() -> None:
    """No TensorFlow C++ log lines and no library warnings on the console (``--debug`` keeps them).

    TensorFlow reads its log level when it loads, so this runs before anything imports it.
    """
    global libraries_silenced
    libraries_silenced = True
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    warnings.simplefilter("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    sys.unraisablehook = _quiet_h5py_cleanup


def _quiet_h5py_cleanup(unraisable: Any) -> None:
    """h5py reports a failed write a second time while it frees the file's handles ("Exception ignored in
    ObjectID.__dealloc__", with tracebacks): the write's own error already says it in one line."""
    if "h5py" in repr(unraisable.object):
        return
    sys.__unraisablehook__(unraisable)


def print_safely(text: str) -> None:
    """Print, and end quietly when the reader has gone (``... | head``)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null so Python's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main`` and turn expected failures into one line on stderr and a non-zero exit.

    ``--debug`` anywhere on the command line keeps the full traceback and the libraries' own logs.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    if not debug:
        silence_libraries()
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
    except OSError as error:
        if debug or error.errno not in DISK_ERRORS:
            raise
        where = f" writing {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{where}: {DISK_ERRORS[error.errno]}; then rerun the same command "
              f"(what had finished is kept)", file=sys.stderr)
        if isinstance(error, TrialDiskError):
            # End here: freeing the h5py file whose write failed prints its error again, or crashes the
            # interpreter. Every file the run keeps is written whole or not at all; its locks end with it.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        sys.exit(1)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    sys.exit(code)
