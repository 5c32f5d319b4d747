"""--confirm K: the best configurations trained again with other seeds, the winner by mean, ties flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmnist_search import pipeline
from kmnist_search.base.errors import RunError
from kmnist_search.data.datasets import load_dataset
from kmnist_search.data.record import Trial
from kmnist_search.export.card import read_card
from kmnist_search.search import resume
from kmnist_search.search.confirm import (
    RUNS_PER_CONFIGURATION,
    ConfirmationRun,
    ConfirmedConfiguration,
    extra_seeds,
    ranked,
    top_configurations,
)
from kmnist_search.search.runner import SearchOptions
from tests.kills import Killed, killed_when

SPACE = {
    "name": "confirmed",
    "hyperparameters": {"learning_rate": [1.0, 0.3, 0.001], "batch_size": [64], "loss": ["categorical_crossentropy"],
                        "conv_layers": "4-p-8", "dense_units": 16},
    "training": {"epochs": 2, "validation_images": 100, "train_images": 300},
    "pruning": {"strategy": "none"},
}


def configuration(trial_id: str, *scores: float) -> ConfirmedConfiguration:
    return ConfirmedConfiguration(trial_id, {"learning_rate": float(trial_id)},
                                  tuple(ConfirmationRun("trial", 1, score, 1) for score in scores))


def test_the_winner_is_the_best_mean_and_overlapping_intervals_are_ties() -> None:
    confirmation = ranked([configuration("0", 0.95, 0.90, 0.91),   # mean 0.92, the best single run
                           configuration("1", 0.93, 0.93, 0.93),   # mean 0.93, sd 0
                           configuration("2", 0.80, 0.81, 0.79)])
    assert confirmation.winner.trial_id == "1"
    assert [c.trial_id for c in confirmation.tied] == ["0"]  # 0.93 - 0.92 <= 0 + sd(0.95, 0.90, 0.91)
    assert confirmation.winner_summary().tied_trial_ids == ["0"]
    assert confirmation.to_record().configurations[2].sd_val_accuracy == pytest.approx(0.01)
    clear = ranked([configuration("0", 0.95, 0.95, 0.95), configuration("1", 0.90, 0.91, 0.92)])
    assert clear.tied == ()


def test_extra_seeds_fill_up_to_the_runs_per_configuration() -> None:
    assert extra_seeds(42, "03", search_trial_counts=True) == [(1, 1045), (2, 2045)]
    assert len(extra_seeds(42, "03", search_trial_counts=False)) == RUNS_PER_CONFIGURATION
    with pytest.raises(RunError, match="--confirm -1: must be 0"):
        SearchOptions("grid", Path("runs"), "x", confirm=-1)


def record(trial_id: str, status: str, score: float, epochs: int, learning_rate: float) -> Trial:
    return Trial.model_validate(dict(trial_id=trial_id, hyperparameters={"learning_rate": learning_rate},
                                     status=status, best_val_accuracy=score, best_val_loss=None, best_epoch=epochs,
                                     epochs_run=epochs, wall_time_s=None, message=None))


def test_the_top_configurations_are_counted_once_and_only_whole_trainings_count_as_runs() -> None:
    trials = [record("0", "COMPLETED", 0.90, 12, 0.1),
              record("1", "PRUNED", 0.95, 2, 0.01),      # pruned: its score is no whole training's
              record("2", "COMPLETED", 0.93, 4, 0.1),    # Hyperband's shorter trial of configuration 0.1
              record("3", "COMPLETED", 0.80, 12, 1.0),
              record("4", "FAILED", 0.99, 1, 2.0)]
    top = top_configurations(trials, 3, epochs=12)
    assert [(trial.trial_id, counts) for trial, counts in top] == [("1", False), ("2", False), ("3", True)]


@pytest.mark.slow
def test_confirm_end_to_end_with_a_kill_in_a_confirmation(synthetic_data_dir: Path, tmp_path: Path) -> None:
    dataset = load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)
    kwargs = {"dataset": dataset, "project_dir": tmp_path / "runs", "name": "confirmed", "confirm": 2,
              "exports_dir": tmp_path / "exports"}
    with killed_when(resume.SaveTrainingState, "on_epoch_end",
                     lambda self, epoch, logs=None: epoch == 0 and "seed_2" in str(self.checkpoint.directory),
                     after=True), pytest.raises(Killed):
        pipeline.run(SPACE, "grid", **kwargs)
    confirm_dir = tmp_path / "runs" / "confirmed" / "confirm"
    ended_before = sorted(p.parent.name for p in confirm_dir.glob("*/ended.json"))
    assert len(ended_before) == 1  # the first configuration's first extra run had ended
    first_ended = (confirm_dir / ended_before[0] / "ended.json").read_text()
    outcome = pipeline.run(SPACE, "grid", **kwargs)
    assert (confirm_dir / ended_before[0] / "ended.json").read_text() == first_ended  # not trained again
    results = outcome.search.results.to_dict()
    confirmation = results["confirmation"]
    assert len(confirmation["configurations"]) == 2
    for entry in confirmation["configurations"]:
        assert len(entry["runs"]) == RUNS_PER_CONFIGURATION
        assert len({run["weights_seed"] for run in entry["runs"]}) == RUNS_PER_CONFIGURATION
    means = [entry["mean_val_accuracy"] for entry in confirmation["configurations"]]
    assert means == sorted(means, reverse=True)
    assert results["winner"]["trial_id"] == confirmation["winner_trial_id"]
    winner_entry = confirmation["configurations"][0]
    assert results["winner"]["val_accuracy"] == max(run["val_accuracy"] for run in winner_entry["runs"])
    assert not list(confirm_dir.glob("*/resume"))
    summary = pipeline.summarise(outcome.search)
    assert f"confirmed with {RUNS_PER_CONFIGURATION} runs per configuration" in summary
    assert f"{winner_entry['mean_val_accuracy'] * 100:.2f}% ±" in summary
    assert outcome.export is not None
    card = read_card(outcome.export.card_path)
    assert card["models"][0]["confirmation"]["mean_val_accuracy"] == pytest.approx(winner_entry["mean_val_accuracy"])
    assert json.loads((tmp_path / "runs" / "confirmed" / "results.json").read_text())["confirmation"] == confirmation
