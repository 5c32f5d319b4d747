"""The replay of recorded curves makes the live search's decisions: the same trials, stopped at the same
epochs, the same winner."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from kmnist_search import pipeline
from kmnist_search.data.datasets import load_dataset
from kmnist_search.data.spaces import parse_space
from kmnist_search.search.callbacks import steps_in_an_epoch
from kmnist_search.search.keras_tuner_patches import apply_keras_tuner_patches
from kmnist_search.search.pruners import Curve, NoPruning, PercentilePruner, make_pruner
from kmnist_search.search.replay import RecordedRun, configuration_key, replay

SPACE = {
    "name": "replayed",
    "hyperparameters": {"learning_rate": [1.0, 0.3, 0.01, 0.001], "batch_size": [64, 128],
                        "loss": ["categorical_crossentropy"], "conv_layers": "4-p-8", "dense_units": 16},
    "training": {"epochs": 4, "validation_images": 100, "train_images": 128},
    "pruning": {"warmup_epochs": 1, "min_trials": 2},
}


def recorded_from(result: pipeline.SearchResult, train_images: int) -> dict[str, RecordedRun]:
    return {configuration_key(t.hyperparameters): RecordedRun(
        Curve(tuple(e.value("val_accuracy") for e in t.history),
              steps_in_an_epoch(train_images, t.hyperparameters["batch_size"])),
        tuple(e.cpu_seconds or 0.0 for e in t.history)) for t in result.trials}


@pytest.mark.slow
def test_the_replay_reproduces_a_live_pruned_search_exactly(synthetic_data_dir: Path, tmp_path: Path) -> None:
    dataset = load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)
    space = parse_space(SPACE)
    unpruned = pipeline.search(space, "grid", dataset=dataset, project_dir=tmp_path, name="unpruned", prune="none",
                               deterministic=True)
    assert unpruned is not None
    recorded = recorded_from(unpruned, SPACE["training"]["train_images"])
    # The default rule, live: every rule reaches the search through the same pruner interface, and what each
    # decides from a history is a pure function that the pruning tests check on their own.
    pruned = pipeline.search(space, "grid", dataset=dataset, project_dir=tmp_path, name="pruned",
                             deterministic=True)
    assert pruned is not None
    for trial in pruned.trials:  # determinism: the pruned run trained the unpruned run's epochs exactly
        full = recorded[configuration_key(trial.hyperparameters)].curve.values
        assert tuple(e.value("val_accuracy") for e in trial.history) == full[:trial.epochs_run]
    replayed = replay(space, "grid", recorded, make_pruner(space.pruning, space.epochs), seed=42)
    live = [(configuration_key(t.hyperparameters), t.epochs_run, t.message) for t in pruned.trials]
    assert [(t.configuration, t.epochs, t.stop.message() if t.stop else None) for t in replayed.trials] == live
    assert any(t.stop for t in replayed.trials) and any(not t.stop for t in replayed.trials)
    assert replayed.winner == configuration_key(pruned.winner.hyperparameters)
    assert replay(space, "grid", recorded, NoPruning(), seed=42).epochs == 8 * 4


def test_a_replay_prices_each_trial_by_the_epochs_it_trained() -> None:
    space = parse_space(SPACE)
    recorded = {configuration_key(values): RecordedRun(Curve(tuple([score] * 4)), (1.0, 2.0, 3.0, 4.0))
                for values, score in zip(space.configurations(), (0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.6, 0.4), strict=True)}
    outcome = replay(space, "grid", recorded, PercentilePruner(50, warmup_epochs=1, min_trials=2), seed=42)
    epochs = {t.configuration: t.epochs for t in outcome.trials}
    # 0.7 passes epoch 2 (median of 0.9, 0.2, 0.8, 0.1: 0.5) but not epoch 3 (median of 0.9, 0.2, 0.8: 0.8)
    assert list(epochs.values()) == [4, 4, 4, 2, 3, 2, 3, 2]
    assert outcome.epochs == 24 and outcome.cpu_seconds == pytest.approx(3 * 10.0 + 3 * 3.0 + 2 * 6.0)
    assert outcome.winner == configuration_key(space.configurations()[0])
    hyperband = replay(space, "hyperband", recorded, None, seed=1)
    assert hyperband.winner == configuration_key(space.configurations()[0])
    assert 0 < hyperband.epochs < 8 * 4 * 2


def test_a_bayesian_search_takes_the_untried_configuration_with_the_best_bound_and_never_repeats_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apply_keras_tuner_patches()  # as in a process that also searched live
    monkeypatch.chdir(tmp_path)
    space = parse_space(SPACE)
    scores = (0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.6, 0.4)
    recorded = {configuration_key(values): RecordedRun(Curve(tuple([score] * 4)), (1.0,) * 4)
                for values, score in zip(space.configurations(), scores, strict=True)}
    searched = replay(space, "bayesian", recorded, NoPruning(), seed=7, max_trials=8)
    keys = [t.configuration for t in searched.trials]
    assert sorted(keys) == sorted(recorded) and searched.winner == configuration_key(space.configurations()[0])
    assert not tf.io.gfile.glob("ram://kmnist-replay-*")  # Keras Tuner's state files went to memory and are gone
    assert not list(tmp_path.iterdir())  # and none to disk
