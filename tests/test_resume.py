"""Training that survives interruption: a trial or a retraining continues from its last epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from kmnist_search.data.datasets import Dataset, load_dataset
from kmnist_search.data.spaces import parse_space
from kmnist_search.search import resume
from kmnist_search.search.runner import SearchOptions, run_search
from tests.cli import Command
from tests.conftest import as_dict
from tests.kills import Killed, killed_when

TIMINGS = ("seconds", "cpu_seconds")  # a logged epoch's times, which differ from run to run

# Everything random at once: augmentation, random erasing, mixup, dropout, SGD momentum, a cosine schedule.
RANDOM_RECIPE = {
    "name": "resumable",
    "hyperparameters": {"learning_rate": [0.05], "batch_size": [32], "loss": ["categorical_crossentropy"],
                        "optimizer": "sgd", "conv_layers": "8-p-16", "dense_units": 16, "augment": 0.05,
                        "cutout": 0.2, "mixup": 0.2},
    "training": {"epochs": 4, "validation_images": 100, "train_images": 400, "lr_schedule": "cosine"},
}


@pytest.fixture
def dataset(synthetic_data_dir: Path) -> Dataset:
    return load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)


def weights_of(results: dict[str, Any]) -> list[np.ndarray]:
    """The winner's weights, from the run folder (as_dict's ``folder``)."""
    return keras.models.load_model(results["folder"] / "winner.keras", compile=False).get_weights()


def assert_same_training(resumed: dict[str, Any], whole: dict[str, Any]) -> None:
    """Same epochs, same metrics, same weights (up to floating-point summation order)."""
    strip = [{k: v for k, v in e.items() if k not in TIMINGS} for e in resumed["trials"][0]["history"]]
    expected = [{k: v for k, v in e.items() if k not in TIMINGS} for e in whole["trials"][0]["history"]]
    assert [e["epoch"] for e in strip] == [1, 2, 3, 4]
    for got, want in zip(strip, expected, strict=True):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    for got, want in zip(weights_of(resumed), weights_of(whole), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def shared_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    from tests.conftest import write_kmnist_files

    return load_dataset("kmnist", write_kmnist_files(tmp_path_factory.mktemp("data")), verify_checksums=False)


@pytest.fixture(scope="module")
def uninterrupted(shared_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The recipe trained once without interruption, for every interrupted run to be compared with."""
    folder = tmp_path_factory.mktemp("whole") / "whole"
    return as_dict(run_search(shared_dataset, parse_space(RANDOM_RECIPE),
                              SearchOptions("grid", folder.parent, folder.name)), folder)


@pytest.mark.parametrize("instant", ["after the state was committed", "between the weights file and the state",
                                     "after the log was written, before the weights file"])
@pytest.mark.slow
def test_a_trial_killed_mid_way_ends_where_an_uninterrupted_one_does(instant: str, shared_dataset: Dataset,
                                                                      tmp_path: Path,
                                                                      uninterrupted: dict[str, Any]) -> None:
    dataset = shared_dataset
    space = parse_space(RANDOM_RECIPE)
    options = SearchOptions("grid", tmp_path, "resumed")
    if instant == "after the state was committed":
        kill = killed_when(resume.TrainingCheckpoint, "save", lambda self, model, epoch: epoch == 2, after=True)
    elif instant == "between the weights file and the state":
        kill = killed_when(resume, "atomic_write_json", lambda path, data: data.get("epoch") == 2)
    else:
        kill = killed_when(resume.TrainingCheckpoint, "save", lambda self, model, epoch: epoch == 2)
    with kill, pytest.raises(Killed):
        run_search(dataset, space, options)
    trial_dir = next(tmp_path.glob("resumed/trial_*"))
    log_before = json.loads((trial_dir / "trial_log.json").read_text())["epochs"]
    saved = resume.TrainingCheckpoint(trial_dir / "resume").saved_epoch()
    assert saved == (2 if instant == "after the state was committed" else 1)
    resumed = as_dict(run_search(dataset, space, options), tmp_path / "resumed")
    assert_same_training(resumed, uninterrupted)
    history = resumed["trials"][0]["history"]
    assert history[:saved] == log_before[:saved]  # the saved epochs were kept, not trained again
    assert not (trial_dir / "resume").exists()  # recorded trials keep no training state


@pytest.mark.slow
def test_a_killed_retraining_continues_from_its_last_epoch(dataset: Dataset, tmp_path: Path) -> None:
    data = {**RANDOM_RECIPE, "training": {**RANDOM_RECIPE["training"], "epochs": 1, "retrain_epochs": 3}}
    space = parse_space(data)
    whole = as_dict(run_search(dataset, space, SearchOptions("grid", tmp_path, "whole")), tmp_path / "whole")
    options = SearchOptions("grid", tmp_path, "resumed")
    with killed_when(resume.SaveTrainingState, "on_epoch_end",
                     lambda self, epoch, logs=None: epoch == 1 and "retrain" in str(self.checkpoint.directory)), \
            pytest.raises(Killed):
        run_search(dataset, space, options)
    log_before = json.loads((tmp_path / "resumed" / "retrain_log.json").read_text())["epochs"]
    saved = resume.TrainingCheckpoint(tmp_path / "resumed" / "retrain_resume").saved_epoch()
    assert len(log_before) == 2 and saved == 1
    resumed = as_dict(run_search(dataset, space, options), tmp_path / "resumed")
    retraining = resumed["winner"]["settings"]["retraining"]
    assert retraining["epochs_trained"] == 3 and retraining == pytest.approx(
        {**whole["winner"]["settings"]["retraining"], "wall_time_s": retraining["wall_time_s"]}, rel=1e-4)
    log_after = json.loads((tmp_path / "resumed" / "retrain_log.json").read_text())["epochs"]
    assert log_after[0] == log_before[0]  # the saved epoch was kept; the second, never saved, was trained again
    assert {k: v for k, v in log_after[1].items() if k not in TIMINGS} == pytest.approx(
        {k: v for k, v in log_before[1].items() if k not in TIMINGS}, rel=1e-4)
    assert resumed["winner"]["test_accuracy"] == pytest.approx(whole["winner"]["test_accuracy"], abs=1e-9)
    for got, want in zip(weights_of(resumed), weights_of(whole), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not (tmp_path / "resumed" / "retrain_resume").exists()


@pytest.mark.slow
def test_sigkill_mid_trial_then_rerun_keeps_the_finished_epochs(synthetic_data_dir: Path, tmp_path: Path,
                                                                command: Command) -> None:
    space_file = tmp_path / "long.toml"
    space_file.write_text("""
name = "long"
[hyperparameters]
learning_rate = [1.0]
batch_size = [32]
loss = ["categorical_crossentropy"]
[training]
epochs = 6
validation_images = 100
train_images = 500
""")
    arguments = ["--space", str(space_file), "--data-dir", str(synthetic_data_dir), "--no-checksum", "--quiet",
                 "--no-export"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "kmnist_search.run", *arguments], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = tmp_path / "runs" / "long-grid" / "trial_0" / "resume" / "state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if state.is_file() and json.loads(state.read_text() or "{}").get("epoch", 0) >= 2:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    saved = json.loads(state.read_text())["epoch"]
    assert 2 <= saved < 6, "the trial finished before it could be killed"
    kept = json.loads((state.parent.parent / "trial_log.json").read_text())["epochs"][:saved]
    rerun = command("run", *arguments, cwd=tmp_path)  # the state on disk is what resumes it
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    results = json.loads((tmp_path / "runs" / "long-grid" / "results.json").read_text())
    history = results["trials"][0]["history"]
    assert [e["epoch"] for e in history] == [1, 2, 3, 4, 5, 6] and history[:saved] == kept
    assert results["winner"]["settings"]["search_trial"]["epochs_trained"] == 6
