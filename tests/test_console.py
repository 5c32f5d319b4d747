"""What a person sees on the console: trial lines, an ETA, no library noise, fast help."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.conftest import write_kmnist_files

COMMANDS = ("run", "export", "ensemble", "quantize", "verify", "predict", "summary", "download")
NOISE = ("I0000", "absl::InitializeLog", "oneDNN", "cpu_feature_guard", "Warning", "WARNING", "Traceback")


@pytest.fixture(scope="module")
def quick_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough synthetic images for quick_space's 200 validation and 300 training images."""
    return write_kmnist_files(tmp_path_factory.mktemp("quick") / "kmnist", train_per_class=50, test_per_class=20)


@pytest.fixture(scope="module")
def quick_space(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The quick space, its validation and training subsets cut to 200 and 300 images."""
    from kmnist_search.data.spaces import BUILTIN_DIR

    path = tmp_path_factory.mktemp("spaces") / "quick.toml"
    text = (BUILTIN_DIR / "quick.toml").read_text()
    path.write_text(text.replace("train_images = 10000", "train_images = 300").replace(
        "validation_images = 6000", "validation_images = 200"))
    assert "train_images = 300\n" in path.read_text() and "validation_images = 200\n" in path.read_text()
    return str(path)


def steps_past_total(text: str) -> list[str]:
    return [match.group(0) for match in re.finditer(r"\b(\d+)/(\d+)\b", text)
            if int(match.group(1)) > int(match.group(2))]


@pytest.mark.slow
def test_the_quick_grid_prints_a_line_per_trial_and_an_eta(quick_data: Path, quick_space: str, tmp_path: Path) -> None:
    result = run_cli("kmnist_search.run", "--strategy", "grid", "--space", quick_space, "--data-dir", str(quick_data),
                     "--no-checksum", "--no-export", "--epochs", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for index in range(1, 5):
        assert re.search(rf"^trial {index}/4 started: batch_size=128, learning_rate=(1\.0|0\.1), loss=", output, re.M)
        assert re.search(rf"^trial {index}/4 (completed|pruned|failed)", output, re.M), output
    assert re.search(r"^search: 4 trials planned; estimated time left \d", output, re.M)
    assert re.search(r"about [\d.]+ (s|min|h) left$", output, re.M)
    assert re.search(r"^  trial 1/4 epoch 2/2: ", output, re.M)  # not a terminal: an epoch per line
    assert [line for line in output.splitlines() if any(noise in line for noise in NOISE)] == []
    assert steps_past_total(output) == []
    assert result.stderr == ""


@pytest.mark.slow
def test_quiet_keeps_the_trial_lines_only_and_a_diverging_trial_is_one_of_them(synthetic_data_dir: Path,
                                                                              tmp_path: Path) -> None:
    space = tmp_path / "diverge.toml"
    space.write_text('[hyperparameters]\nlearning_rate = [1e12, 1.0]\nbatch_size = [64]\n'
                     'loss = ["categorical_crossentropy"]\noptimizer = "sgd"\n'
                     '[training]\nepochs = 2\nvalidation_images = 100\ntrain_images = 300\n')
    result = run_cli("kmnist_search.run", "--space", str(space), "--data-dir", str(synthetic_data_dir),
                     "--no-checksum", "--no-export", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    console = result.stdout + result.stderr
    assert re.search(r"^trial 1/2 started", result.stdout, re.M) and "epoch 1/2:" not in console
    assert "trial 1/2 failed: loss became nan at epoch 1" in console
    assert "Traceback" not in console and "Invalid loss" not in console
    assert re.search(r"^trial 2/2 completed: val_accuracy [\d.]+% \(best epoch [12] of 2\)", result.stdout, re.M)


@pytest.mark.parametrize(("total", "expected"), [(1, "search: 1 trial planned;"), (4, "search: 4 trials planned;")])
def test_the_plan_line_counts_trials_in_words_that_agree(total: int, expected: str) -> None:
    from kmnist_search.commands.console import ConsoleProgress

    output = io.StringIO()
    ConsoleProgress(file=output).search_started(total, 0, 60.0)
    assert output.getvalue().startswith(expected)


def help_modules(command: str) -> set[str]:
    probe = ("import runpy, sys\n"
             f"sys.argv = ['{command}', '--help']\n"
             "try:\n"
             f"    runpy.run_module('kmnist_search.{command}', run_name='__main__')\n"
             "except SystemExit:\n"
             "    pass\n"
             "print('MODULES', ' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert "usage: python -m kmnist_search." in result.stdout
    return set(result.stdout.rsplit("MODULES", 1)[1].split())


# What --help may not import: the libraries that take seconds to load (TensorFlow alone takes several).
SLOW_TO_IMPORT = {"tensorflow", "keras", "keras_tuner", "tf2onnx", "onnx", "matplotlib", "plotly", "sklearn",
                  "scipy", "optuna", "h5py"}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_answers_at_once_without_tensorflow(command: str) -> None:
    modules = help_modules(command)
    assert not modules & SLOW_TO_IMPORT


def test_run_help_lists_every_built_in_space(tmp_path: Path) -> None:
    from kmnist_search.data.spaces import builtin_space_names

    result = run_cli("kmnist_search.run", "--help", cwd=tmp_path)
    text = "".join(result.stdout.split())  # argparse wraps long help lines, also at hyphens
    assert all(name in text for name in builtin_space_names()) and len(builtin_space_names()) >= 9


@pytest.mark.slow
def test_json_output_survives_a_closed_pipe(exported: Path, tmp_path: Path) -> None:
    import numpy as np

    images = tmp_path / "many.npy"
    np.save(images, np.zeros((300, 28, 28), dtype=np.uint8))
    command = (f"{sys.executable} -m kmnist_search.predict {exported} {images} --json | head -n 2")
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.count("\n") == 2 and "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_the_time_left_prices_the_retraining_on_every_training_image() -> None:
    from kmnist_search.data.spaces import load_space
    from kmnist_search.search.plan import estimate_epoch_seconds
    from kmnist_search.search.progress import SearchClock

    space = load_space("resnet14")  # one configuration, retrained for 60 epochs on 54,000 images
    configuration = space.configurations()[0]
    clock = SearchClock(space, total_trials=1, train_images=12000, retrain_images=54000)
    clock.observe(configuration, 2 * estimate_epoch_seconds(space, configuration, 12000))  # twice as slow here
    retraining = space.retrain_epochs * estimate_epoch_seconds(space, configuration, 54000) * 2
    assert clock.seconds_left(trials_done=1) == pytest.approx(retraining)
    assert clock.seconds_left(trials_done=0) > retraining


def test_each_retraining_epoch_tells_the_time_left() -> None:
    from kmnist_search.commands.console import ConsoleProgress

    output = io.StringIO()
    console = ConsoleProgress(file=output)
    console.retraining_started(epochs=60, steps_per_epoch=422)
    for epoch, seconds in ((41, 150.0), (42, 120.0), (43, 130.0)):  # resumed at epoch 41
        console.epoch_ended(epoch, {"accuracy": 0.99, "val_accuracy": 0.995}, seconds)
    console.epoch_ended(60, {"accuracy": 0.99, "val_accuracy": 0.995}, 130.0)
    lines = output.getvalue().splitlines()
    assert lines[0].endswith("(2.5 min; about 47.5 min left)")  # 19 epochs at 150 s
    assert lines[2].endswith("(2.2 min; about 36.8 min left)")  # 17 epochs at the median, 130 s
    assert lines[3].endswith("(2.2 min)")  # the last epoch: nothing left
