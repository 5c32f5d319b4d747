"""Running the commands as a user does, in a fresh process, and checking their one-line errors: the helpers
every command-line test shares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TINY_SPACE = """
name = "tiny"
[hyperparameters]
learning_rate = [1.0, 0.1]
batch_size = [64]
loss = ["categorical_crossentropy"]
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


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A failed command that said so in one ``error:`` (or usage) line holding every fragment, no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "python -m kmnist_search"))]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
