"""Loading TensorFlow without its start-up lines, for the commands that train or export."""

from __future__ import annotations

import gc
import os
import sys

from kmnist_search.base.errors import RunError
from kmnist_search.commands import common


def load_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with standard error pointed at /dev/null: TensorFlow's C++ start-up
    lines (absl, oneDNN, CPU features) are printed before any log level applies. ``--debug`` shows them.
    Keras must run on TensorFlow: another ``KERAS_BACKEND`` is refused in one line.

    What is loaded by then stays for the life of the process, so the garbage collector is told to leave it
    alone (``gc.freeze``): Keras Tuner runs a full collection before every trial, and TensorFlow's and
    Keras's several hundred thousand objects made each one take a noticeable fraction of a second."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":
        raise RunError(f"KERAS_BACKEND={backend}: kmnist-search trains and exports with TensorFlow; unset "
                       f"KERAS_BACKEND or set it to tensorflow")
    if common.libraries_silenced:
        _import_silently()
    else:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    gc.freeze()


def _import_silently() -> None:
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    from kmnist_search.pipeline import quiet_keras_tuner

    quiet_keras_tuner()
