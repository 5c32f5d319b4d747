"""Running the commands as a user does, in a fresh process (or in this one, where the process boundary is not
what is tested), and checking their one-line errors: the helpers every command-line test shares."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from kmnist_search.commands import common

TINY_SPACE = """
name = "tiny"
[hyperparameters]
learning_rate = [1.0, 0.1]
batch_size = [64]
loss = ["categorical_crossentropy"]
conv_layers = "16-32"  # conftest's EXPORT_NETWORK: it is quantized too
dense_units = 32
[training]
epochs = 1
validation_images = 100
train_images = 400
"""


def run_cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` in ``cwd``, this checkout first on the path; its exit code and output."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


Command = Callable[..., subprocess.CompletedProcess[str]]


def command_in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Command:
    """``command(VERB, ARGS, cwd=...)`` runs ``kmnist-search VERB ARGS`` as its console script does
    (``run_main``: one-line errors, exit codes) but in this process, where TensorFlow is loaded already: for
    tests of what a command does and says, not of the process boundary. What ``run_main`` changes for the
    process (warning filters, environment, the unraisable hook, the silenced flag) is put back after the
    test; the libraries' loggers stay at ERROR."""

    def command(verb: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        main = importlib.import_module(f"kmnist_search.commands.{verb}").main
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(common, "libraries_silenced", common.libraries_silenced)
        monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
        monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
        capsys.readouterr()
        with warnings.catch_warnings(), pytest.raises(SystemExit) as ended:
            common.run_main(main, list(args))
        output = capsys.readouterr()
        code = ended.value.code
        return subprocess.CompletedProcess([verb, *args], code if isinstance(code, int) else 1, output.out,
                                           output.err)

    return command


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A failed command that said so in one ``error:`` (or usage) line holding every fragment, no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "python -m kmnist_search"))]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
