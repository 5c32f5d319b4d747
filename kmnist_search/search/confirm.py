"""Confirm a search's winner against seed noise: train its best configurations again with more seeds.

One training of a configuration is one draw: the same configuration trained again with another seed
for its weights and batch order lands a little higher or lower. ``--confirm K`` takes the K best
configurations of the search and trains each until it has :data:`RUNS_PER_CONFIGURATION` complete
trainings (the search's own trial counts when it trained every epoch), on the same split. The winner
is the configuration with the best mean validation accuracy; each is reported as mean ± sd, and a
configuration whose mean ± sd interval overlaps the winner's is flagged as tied with it.

Each extra training lives in ``RUN_DIR/confirm/trial_ID-seed_J/`` and resumes from its last epoch
after a kill, like a trial.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

from kmnist_search.data.record import (
    SCORED_STATUSES,
    ConfirmationRecord,
    ConfirmationRunRecord,
    ConfirmedRecord,
    Trial,
    WinnerConfirmation,
)

RUNS_PER_CONFIGURATION = 3
DEFAULT_CONFIRM = 0  # off unless asked: see the README for what it costs
CONFIRM_DIR = "confirm"
SEED_STRIDE = 1000  # extra training j of trial t uses weights seed base + SEED_STRIDE * j + t


@dataclass(frozen=True)
class ConfirmationRun:
    """One complete training of a configuration: where it came from and its best validation accuracy."""

    source: str  # "trial" (the search's own) or the folder name under RUN_DIR/confirm
    weights_seed: int
    val_accuracy: float
    best_epoch: int

    def to_record(self) -> ConfirmationRunRecord:
        return ConfirmationRunRecord(source=self.source, weights_seed=self.weights_seed,
                                     val_accuracy=self.val_accuracy, best_epoch=self.best_epoch)


@dataclass(frozen=True)
class ConfirmedConfiguration:
    """A configuration with every complete training it got."""

    trial_id: str
    hyperparameters: dict[str, Any]
    runs: tuple[ConfirmationRun, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(run.val_accuracy for run in self.runs)

    @property
    def sd(self) -> float:
        """Sample standard deviation over the runs (0 for a single run)."""
        return statistics.stdev(run.val_accuracy for run in self.runs) if len(self.runs) > 1 else 0.0

    def overlaps(self, other: ConfirmedConfiguration) -> bool:
        """True when the mean ± sd intervals of the two overlap."""
        return abs(self.mean - other.mean) <= self.sd + other.sd

    def best_run(self) -> ConfirmationRun:
        return max(self.runs, key=lambda run: run.val_accuracy)

    def to_record(self) -> ConfirmedRecord:
        return ConfirmedRecord(trial_id=self.trial_id, hyperparameters=self.hyperparameters,
                               mean_val_accuracy=self.mean, sd_val_accuracy=self.sd,
                               runs=[run.to_record() for run in self.runs])


@dataclass(frozen=True)
class Confirmation:
    """The confirmed configurations, best mean first."""

    configurations: tuple[ConfirmedConfiguration, ...]

    @property
    def winner(self) -> ConfirmedConfiguration:
        return self.configurations[0]

    @property
    def tied(self) -> tuple[ConfirmedConfiguration, ...]:
        """The other configurations whose interval overlaps the winner's."""
        return tuple(c for c in self.configurations[1:] if c.overlaps(self.winner))

    def winner_summary(self) -> WinnerConfirmation:
        """What results.json's winner records of its confirmation."""
        return WinnerConfirmation(mean_val_accuracy=self.winner.mean, sd_val_accuracy=self.winner.sd,
                                  runs=len(self.winner.runs), tied_trial_ids=[c.trial_id for c in self.tied],
                                  shipped_run=self.winner.best_run().to_record())

    def to_record(self) -> ConfirmationRecord:
        return ConfirmationRecord(runs_per_configuration=RUNS_PER_CONFIGURATION,
                                  configurations=[c.to_record() for c in self.configurations],
                                  winner_trial_id=self.winner.trial_id, tied_trial_ids=[c.trial_id for c in self.tied])


def ranked(configurations: list[ConfirmedConfiguration]) -> Confirmation:
    """The confirmation of these configurations: best mean first (ties in mean keep the search's order)."""
    return Confirmation(tuple(sorted(configurations, key=lambda c: -c.mean)))


def top_configurations(trials: list[Trial], k: int, epochs: int) -> list[tuple[Trial, bool]]:
    """The ``k`` best configurations, each by its best-scoring trial (Hyperband trains one configuration in
    several trials), and whether that trial is a whole training that counts as one run: it completed
    every planned epoch itself (not pruned, not continued from another trial's weights)."""
    best: dict[str, Trial] = {}
    for trial in trials:
        if trial.status not in SCORED_STATUSES or trial.score is None:
            continue
        key = json.dumps(trial.hyperparameters, sort_keys=True)
        if key not in best or (trial.score or 0.0) > (best[key].score or 0.0):
            best[key] = trial
    ranked_trials = sorted(best.values(), key=lambda t: -(t.score or 0.0))[:k]
    return [(trial, trial.status == "COMPLETED" and trial.epochs_run == epochs) for trial in ranked_trials]


def extra_seeds(weights_seed: int, trial_id: str, search_trial_counts: bool) -> list[tuple[int, int]]:
    """(j, seed) of the extra trainings a configuration needs: enough for RUNS_PER_CONFIGURATION in all."""
    needed = RUNS_PER_CONFIGURATION - (1 if search_trial_counts else 0)
    return [(j, weights_seed + SEED_STRIDE * j + int(trial_id)) for j in range(1, needed + 1)]


def run_folder_name(trial_id: str, j: int) -> str:
    return f"trial_{trial_id}-seed_{j}"
