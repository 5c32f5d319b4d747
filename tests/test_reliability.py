"""Crash safety: SIGKILL at random points of every strategy, then a rerun completes the same search;
failed trials; reproducibility; atomic state files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest

from kmnist_search.base.errors import RunError
from kmnist_search.data.datasets import Dataset, load_dataset, split_train_validation
from kmnist_search.data.spaces import parse_space
from kmnist_search.search.runner import SearchOptions, run_search
from tests.cli import Command
from tests.conftest import ALL_FOUR, as_dict, searched_configurations

REPO = Path(__file__).resolve().parents[1]
FOUR_CONFIGURATIONS = """
name = "four"
[hyperparameters]
learning_rate = [1.0, 0.1]
batch_size = [64]
loss = ["categorical_crossentropy", "mean_squared_error"]
conv_layers = "4-p-8"
dense_units = 16
[training]
epochs = 2
validation_images = 100
train_images = 300
"""


def run_arguments(strategy: str, space: Path, data_dir: Path) -> list[str]:
    return ["--strategy", strategy, "--space", str(space), "--data-dir", str(data_dir), "--no-checksum", "--quiet",
            "--max-trials", "4", "--name", "killed"]


def trials_with_epochs(run_dir: Path) -> list[Path]:
    logs = []
    for log in run_dir.glob("trial_*/trial_log.json"):
        try:
            if json.loads(log.read_text())["epochs"]:
                logs.append(log)
        except (json.JSONDecodeError, KeyError, OSError):
            continue
    return logs


def completed_trials(run_dir: Path) -> list[Path]:
    done = []
    for trial in run_dir.glob("trial_*/trial.json"):
        try:
            if json.loads(trial.read_text())["status"] == "COMPLETED":
                done.append(trial)
        except (json.JSONDecodeError, KeyError, OSError):
            continue
    return done


MOMENTS: dict[str, Callable[[Path], bool]] = {
    "first-epoch": lambda run: len(trials_with_epochs(run)) >= 1,
    "export": lambda run: (run / "results.json").is_file(),
}


@pytest.mark.parametrize(("strategy", "moment"), [
    # Real SIGKILLs of a whole command at a random point past a milestone. Kills at the exact instants of
    # an epoch are in test_resume.py, at those of the bookkeeping for every strategy in test_kill_points.py.
    ("grid", "export"), ("hyperband", "first-epoch"),
])
@pytest.mark.slow
def test_sigkill_then_rerun_completes_the_same_search(strategy: str, moment: str, synthetic_data_dir: Path,
                                                      tmp_path: Path, command: Command) -> None:
    space = tmp_path / "four.toml"
    space.write_text(FOUR_CONFIGURATIONS)
    run_dir = tmp_path / "runs" / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    arguments = run_arguments(strategy, space, synthetic_data_dir)
    process = subprocess.Popen([sys.executable, "-m", "kmnist_search.run", *arguments], cwd=tmp_path,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not MOMENTS[moment](run_dir) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(f"{strategy}-{moment}").uniform(0.0, 0.8))  # a random point past the moment
    killed_while_running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before = {str(p): p.parent.joinpath("trial_log.json").read_text() for p in completed_trials(run_dir)}

    rerun = command("run", *arguments, cwd=tmp_path)  # the state on disk is what resumes it
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert all(t["status"] in ("COMPLETED", "PRUNED") for t in results["trials"])
    if strategy != "hyperband":
        assert searched_configurations(results["trials"]) == ALL_FOUR  # every configuration exactly once
    for trial_json, log in finished_before.items():  # no completed trial was run again
        assert Path(trial_json).parent.joinpath("trial_log.json").read_text() == log
    card = json.loads((tmp_path / "exports" / "killed.json").read_text())
    assert card["parity"]["label_agreement"] == 1.0
    assert killed_while_running or moment == "export"


def tiny(epochs: int, learning_rates: list[float], optimizer: str = "adadelta") -> dict[str, object]:
    return {"name": "tiny", "hyperparameters": {"learning_rate": learning_rates, "batch_size": [32],
                                                "loss": ["categorical_crossentropy"]},
            "training": {"epochs": epochs, "validation_images": 100, "train_images": 300, "optimizer": optimizer}}


@pytest.fixture
def dataset(synthetic_data_dir: Path) -> Dataset:
    return load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)


@pytest.mark.slow
def test_diverging_trial_is_failed_and_the_search_goes_on(dataset: Dataset, tmp_path: Path) -> None:
    space = parse_space(tiny(1, [1e6, 0.01], optimizer="sgd"))  # SGD at lr 1e6 diverges to NaN
    results = as_dict(run_search(dataset, space, SearchOptions("grid", tmp_path, "nan")))
    by_lr = {t["hyperparameters"]["learning_rate"]: t for t in results["trials"]}
    assert by_lr[1e6]["status"] == "FAILED"
    assert by_lr[1e6]["message"].startswith("loss became nan at epoch 1")
    assert by_lr[0.01]["status"] == "COMPLETED" and results["winner"]["hyperparameters"]["learning_rate"] == 0.01


@pytest.mark.slow
def test_too_many_consecutive_failures_stop_the_search(dataset: Dataset, tmp_path: Path) -> None:
    space = parse_space(tiny(1, [1e6, 1e7, 1e8, 0.01], optimizer="sgd"))
    with pytest.raises(RunError, match=r"3 consecutive failed trials \(last: loss became nan"):
        run_search(dataset, space, SearchOptions("grid", tmp_path, "nan"))


@pytest.mark.slow
def test_exception_inside_a_trial_is_recorded(dataset: Dataset, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from kmnist_search.search.hypermodel import KmnistHyperModel

    real_fit = KmnistHyperModel.fit

    def flaky_fit(self: KmnistHyperModel, hp, model, *args, **kwargs):  # type: ignore[no-untyped-def]
        if hp.get("learning_rate") == 0.1:
            raise MemoryError("simulated: out of memory in this trial")
        return real_fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(KmnistHyperModel, "fit", flaky_fit)
    results = as_dict(run_search(dataset, parse_space(tiny(1, [1.0, 0.1])), SearchOptions("grid", tmp_path, "x")))
    failed = [t for t in results["trials"] if t["status"] == "FAILED"]
    assert len(failed) == 1 and failed[0]["message"] == "simulated: out of memory in this trial"


@pytest.mark.slow
@pytest.mark.graph  # the same seed trains the same as a search does: through traced graphs
def test_same_seed_same_search(dataset: Dataset, tmp_path: Path) -> None:
    space = parse_space(tiny(1, [1.0, 0.1]))
    first = as_dict(run_search(dataset, space, SearchOptions("random", tmp_path, "a", seed=5, max_trials=2)))
    second = as_dict(run_search(dataset, space, SearchOptions("random", tmp_path, "b", seed=5, max_trials=2)))
    assert [t["hyperparameters"] for t in first["trials"]] == [t["hyperparameters"] for t in second["trials"]]
    for a, b in zip(first["trials"], second["trials"], strict=True):
        assert a["best_val_accuracy"] == pytest.approx(b["best_val_accuracy"], abs=0.02)


@pytest.mark.slow
def test_init_seed_changes_the_weights_but_not_the_validation_split(dataset: Dataset, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import kmnist_search.data.datasets as datasets

    split_seeds: list[int] = []

    def recording_split(*args: object) -> object:
        split_seeds.append(int(args[3]))  # type: ignore[call-overload]
        return split_train_validation(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(datasets, "split_train_validation", recording_split)
    space = parse_space(tiny(1, [1.0]))
    base = as_dict(run_search(dataset, space, SearchOptions("grid", tmp_path, "a", seed=5)), tmp_path / "a")
    member = as_dict(run_search(dataset, space, SearchOptions("grid", tmp_path, "b", seed=5, init_seed=9)),
                     tmp_path / "b")
    assert split_seeds == [5, 5] and (base["init_seed"], member["init_seed"]) == (None, 9)
    weights = [keras.models.load_model(r["folder"] / "winner.keras", compile=False).get_weights()
               for r in (base, member)]
    assert max(float(np.abs(a - b).max()) for a, b in zip(*weights, strict=True)) > 1e-3
    with pytest.raises(RunError, match="init_seed changed"):
        run_search(dataset, space, SearchOptions("grid", tmp_path, "b", seed=5, init_seed=10))


def test_keras_tuner_state_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from keras_tuner.src import utils as keras_tuner_utils

    from kmnist_search.search.keras_tuner_patches import apply_keras_tuner_patches

    apply_keras_tuner_patches()
    target = tmp_path / "oracle.json"
    keras_tuner_utils.save_json(str(target), {"version": 1})

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        keras_tuner_utils.save_json(str(target), {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["oracle.json"]


@pytest.mark.slow
def test_batch_size_larger_than_the_data(dataset: Dataset, tmp_path: Path) -> None:
    data = tiny(1, [1.0])
    data["hyperparameters"]["batch_size"] = [256]  # type: ignore[index]
    data["training"].pop("train_images", None)  # type: ignore[union-attr]  # all the small set leaves
    small = Dataset(dataset.spec, dataset.train_images[:350], dataset.train_labels[:350], dataset.test_images,
                    dataset.test_labels, dataset.checksums)
    with pytest.raises(RunError, match="batch_size 256 is larger than the 250 training images"):
        run_search(small, parse_space(data), SearchOptions("grid", tmp_path, "x"))
    assert not (tmp_path / "x").exists()  # refused before the run records the space: the fixed space may run
    data["hyperparameters"]["batch_size"] = [32]  # type: ignore[index]
    assert run_search(small, parse_space(data), SearchOptions("grid", tmp_path, "x")) is not None
