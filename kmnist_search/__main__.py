"""``python -m kmnist_search VERB ...`` and ``kmnist-search VERB ...``: every command behind one name.

``run`` is the main job and the default: ``kmnist-search --strategy grid`` runs it. The other verbs are
the ``python -m kmnist_search.VERB`` commands, plus ``model-card``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path

VERBS = {"run": "run", "export": "export", "verify": "verify", "predict": "predict", "quantize": "quantize",
         "ensemble": "ensemble", "summary": "summary", "download": "download", "model-card": "model_card"}


def command(verb: str) -> Callable[[], None]:
    """The ``cli`` of the command module behind ``verb``."""
    cli: Callable[[], None] = import_module(f"kmnist_search.commands.{VERBS[verb]}").cli
    return cli


def cli(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(f"usage: kmnist-search [VERB] [options]\n\nverbs: {', '.join(VERBS)} (default: run)\n"
              f"`kmnist-search VERB --help` describes each.")
        return
    from kmnist_search.commands import common

    common.invoked_as = "kmnist-search" if Path(sys.argv[0]).name == "kmnist-search" else "python -m kmnist_search"
    verb = args[0] if args and args[0] in VERBS else "run"
    sys.argv = [common.program(verb), *(args[1:] if args and args[0] in VERBS else args)]
    command(verb)()


if __name__ == "__main__":
    cli()
