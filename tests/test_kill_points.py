"""A kill at each instant of Keras Tuner's bookkeeping, for every strategy: the rerun trains every
configuration exactly once, never a finished trial again, and never an epoch twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kmnist_search.data.datasets import Dataset, load_dataset
from kmnist_search.data.spaces import parse_space
from kmnist_search.search import callbacks, keras_tuner_patches, tuners
from kmnist_search.search.runner import SearchOptions, run_search
from tests.conftest import ALL_FOUR, FinishedRun, as_dict, searched_configurations
from tests.kills import Killed, killed_when

SPACE = {
    "name": "bookkeeping",
    "hyperparameters": {"learning_rate": [1.0, 0.1], "batch_size": [64],
                        "loss": ["categorical_crossentropy", "mean_squared_error"],
                        "conv_layers": "4-p-8", "dense_units": 8},
    "training": {"epochs": 2, "validation_images": 50, "train_images": 64},
    "pruning": {"strategy": "none"},
}


def trial_state(obj: dict[str, Any], trial: int, status: str) -> bool:
    return int(obj.get("trial_id", -1)) == trial and obj.get("status") == status


def has_metrics(obj: dict[str, Any]) -> bool:
    return bool(obj.get("metrics", {}).get("metrics"))


# (condition on Keras Tuner's state write, kill after the write rather than before it)
KILL_POINTS = {
    "a new trial is in its trial.json, not yet in oracle.json": (
        lambda path, obj: path.endswith("trial.json") and trial_state(obj, 1, "RUNNING") and not has_metrics(obj),
        True),
    "a trial has trained, its metrics not yet recorded": (
        lambda path, obj: path.endswith("trial.json") and trial_state(obj, 0, "RUNNING") and has_metrics(obj),
        False),
    "a trial ended in its trial.json, not yet in oracle.json": (
        lambda path, obj: path.endswith("trial.json") and trial_state(obj, 0, "COMPLETED"), True),
    "the oracle recorded the end, the tuner not yet": (
        lambda path, obj: path.endswith("oracle.json") and bool(obj.get("end_order"))
        and obj["end_order"][0] in obj.get("ongoing_trials", {}).values(), True),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    from tests.conftest import write_kmnist_files

    return load_dataset("kmnist", write_kmnist_files(tmp_path_factory.mktemp("data")), verify_checksums=False)


class Training:
    """Every epoch any trial trains and every trial run, across the killed run and its rerun."""

    def __init__(self) -> None:
        self.epochs = 0
        self.trials_run: list[str] = []


@pytest.fixture
def training(monkeypatch: pytest.MonkeyPatch) -> Training:
    seen = Training()
    on_epoch_end, run_trial = callbacks.EpochLogger.on_epoch_end, tuners.TrialRecorder.run_trial

    def counting_epochs(self: callbacks.EpochLogger, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seen.epochs += 1
        on_epoch_end(self, epoch, logs)

    def counting_trials(self: tuners.TrialRecorder, trial: Any, *args: Any, **kwargs: Any) -> Any:
        seen.trials_run.append(str(trial.trial_id))
        return run_trial(self, trial, *args, **kwargs)

    monkeypatch.setattr(callbacks.EpochLogger, "on_epoch_end", counting_epochs)
    monkeypatch.setattr(tuners.TrialRecorder, "run_trial", counting_trials)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
@pytest.mark.parametrize("strategy", ["grid", "random", "bayesian", "hyperband"])
def test_a_kill_in_the_bookkeeping_loses_and_repeats_nothing(strategy: str, point: str, dataset: Dataset,
                                                             tmp_path: Path, training: Training) -> None:
    space = parse_space(SPACE)
    options = SearchOptions(strategy, tmp_path, "killed", max_trials=4)
    condition, after = KILL_POINTS[point]
    try:
        with killed_when(keras_tuner_patches, "_save_json_atomically", condition, after=after), pytest.raises(Killed):
            run_search(dataset, space, options)
    finally:
        keras_tuner_patches.apply_keras_tuner_patches()
    run_dir = tmp_path / "killed"
    ended_before = {log: log.read_text() for log in run_dir.glob("trial_*/trial_log.json")
                    if json.loads((log.parent / "trial.json").read_text())["status"] == "COMPLETED"}
    training.trials_run.clear()

    results = as_dict(run_search(dataset, space, options))
    trials = results["trials"]
    assert all(t["status"] == "COMPLETED" for t in trials), [(t["trial_id"], t["status"]) for t in trials]
    if strategy != "hyperband":
        assert searched_configurations(trials) == ALL_FOUR
    assert training.epochs == sum(t["epochs_run"] for t in trials)  # no epoch trained twice
    for log, text in ended_before.items():
        assert log.read_text() == text
        assert json.loads((log.parent / "trial.json").read_text())["trial_id"] not in training.trials_run
    assert not list(run_dir.glob("trial_*/resume"))  # nothing left to resume


@pytest.mark.slow
def test_a_pruned_trial_killed_before_it_was_recorded_trains_no_further(dataset: Dataset, tmp_path: Path,
                                                                       training: Training) -> None:
    data = {**SPACE, "hyperparameters": {"learning_rate": [1.0, 1e-5], "batch_size": [64],  # the study's CNN
                                         "loss": ["categorical_crossentropy"]},
            "training": {**SPACE["training"], "epochs": 4},
            "pruning": {"strategy": "median", "warmup_epochs": 1, "min_trials": 1}}
    space = parse_space(data)
    options = SearchOptions("grid", tmp_path, "pruned")
    def trial_1_trained(path: str, obj: dict[str, Any]) -> bool:
        return path.endswith("trial.json") and trial_state(obj, 1, "RUNNING") and has_metrics(obj)

    try:
        with killed_when(keras_tuner_patches, "_save_json_atomically", trial_1_trained), pytest.raises(Killed):
            run_search(dataset, space, options)
    finally:
        keras_tuner_patches.apply_keras_tuner_patches()
    stop = json.loads((tmp_path / "pruned" / "trial_1" / "pruned.json").read_text())  # saved, not yet recorded
    assert stop["epoch"] < 4
    results = as_dict(run_search(dataset, space, options))
    pruned = next(t for t in results["trials"] if t["hyperparameters"]["learning_rate"] == 1e-5)
    assert pruned["status"] == "PRUNED" and pruned["epochs_run"] == stop["epoch"]
    assert training.epochs == sum(t["epochs_run"] for t in results["trials"])


@pytest.mark.parametrize("instant", ["the ONNX file staged, not its card",
                                     "the card written, not yet recorded in results.json"])
@pytest.mark.slow
def test_a_kill_during_the_export_is_completed_by_the_rerun_without_repeating_it(instant: str, dataset: Dataset,
                                                                                tmp_path: Path) -> None:
    from kmnist_search import pipeline
    from kmnist_search.data.rundir import RunDir
    from kmnist_search.export import convert

    space = {**SPACE, "hyperparameters": {**SPACE["hyperparameters"], "learning_rate": [1.0],
                                          "loss": ["categorical_crossentropy"]}, "training": {**SPACE["training"],
                                                                                             "epochs": 1}}
    options = {"dataset": dataset, "project_dir": tmp_path / "runs", "exports_dir": tmp_path / "exports",
               "report": False}
    kill = (killed_when(convert, "write_card", lambda path, card: True) if instant.startswith("the ONNX")
            else killed_when(RunDir, "record_export", lambda self, export: True))
    with kill, pytest.raises(Killed):
        pipeline.run(space, "grid", **options)
    onnx_path = tmp_path / "exports" / "bookkeeping-grid.onnx"
    written = {p.name: p.stat().st_mtime_ns for p in onnx_path.parent.iterdir()}
    outcome = pipeline.run(space, "grid", **options)
    assert outcome.search.resumed_finished  # nothing trained again
    if instant.startswith("the ONNX"):
        assert outcome.export is not None and pipeline.verify(outcome.export, dataset=dataset).passed
    else:  # the export was whole: recorded, not done again
        assert outcome.export is not None and outcome.export.onnx_path == onnx_path
        assert {p.name: p.stat().st_mtime_ns for p in onnx_path.parent.iterdir()} == written
    assert pipeline.export_complete(pipeline.open_run(tmp_path / "runs" / "bookkeeping-grid"))


def test_a_trial_ended_by_a_live_worker_after_the_chief_restarted_is_not_retried(tmp_path: Path) -> None:
    import keras_tuner as kt

    keras_tuner_patches.apply_keras_tuner_patches()

    def chief() -> kt.Oracle:
        hyperparameters = kt.HyperParameters()
        hyperparameters.Choice("learning_rate", [1.0, 0.1, 0.01])
        oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=3,
                                               hyperparameters=hyperparameters, seed=1)
        oracle._set_project_dir(str(tmp_path), "distributed")
        oracle.verbose = 0  # as the search sets it
        return oracle

    first = chief()
    running = first.create_trial("worker-a")
    restarted = chief()
    restarted.reload()  # the chief died and came back while worker-a kept training
    assert restarted._retry_queue == [running.trial_id]
    running.status = "COMPLETED"
    restarted.update_trial(running.trial_id, {"val_accuracy": 0.9})
    restarted.end_trial(running)  # worker-a reports the end to the restarted chief
    assert restarted._retry_queue == []
    assert restarted.create_trial("worker-b").trial_id != running.trial_id  # not trained a second time


@pytest.mark.slow
@pytest.mark.parametrize("instant", ["staged, not committed", "committed, nothing replaced yet",
                                     "committed, the first file replaced"])
def test_a_killed_re_export_leaves_the_previous_set_or_the_new_one_never_a_mix(
        instant: str, finished_run: FinishedRun, tmp_path: Path) -> None:
    import os

    import keras

    from kmnist_search import pipeline
    from kmnist_search.base import files
    from kmnist_search.export.convert import export_winner

    run_dir, dataset, _ = finished_run
    exports = tmp_path / "exports"
    first = export_winner(run_dir, dataset, exports, name="t1")
    other = tmp_path / "other"  # the same run with other weights: a model the first export is not
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns(".kmnist-search.lock"))
    model = keras.models.load_model(other / "winner.keras", compile=False)
    model.set_weights([w * 0.5 if w.ndim > 1 else w for w in model.get_weights()])
    model.save(other / "winner.keras")
    marker = exports / ".t1.publishing.json"
    if instant.startswith("staged"):
        kill = killed_when(files, "atomic_write_json", lambda path, data: path == marker)
    elif instant.endswith("yet"):
        kill = killed_when(files, "finish_staged_set", lambda path: True)
    else:
        kill = killed_when(os, "replace", lambda source, target: Path(target) == exports / "t1.keras", after=True)
    with kill, pytest.raises(Killed):
        export_winner(other, dataset, exports, name="t1")
    assert marker.exists() == instant.startswith("committed")
    report = pipeline.verify(exports / "t1.onnx", dataset=dataset)  # completes an interrupted export first
    assert report.passed
    card = json.loads((exports / "t1.json").read_text())
    assert (card["onnx_sha256"] == first["onnx_sha256"]) == instant.startswith("staged")  # one set, whole
    assert not marker.exists()
    assert not [p for p in exports.iterdir() if p.name.startswith(files.PARTIAL_PREFIX)]

