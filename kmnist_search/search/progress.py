"""What a search reports while it runs: trials starting and ending, epochs, and when it will end.

The search calls a :class:`SearchProgress` (the command line passes one that prints to the console;
the Python API is silent unless given one). :class:`SearchClock` turns the trials measured so far
into an estimate of the time left, starting from the dry run's cost model before the first epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kmnist_search.data.record import Trial
from kmnist_search.data.spaces import SearchSpace
from kmnist_search.search.plan import estimate_epoch_seconds


@dataclass(frozen=True)
class TrialStart:
    index: int  # 1-based position in the search
    total: int  # trials planned (an upper bound for Hyperband)
    hyperparameters: dict[str, Any]
    epochs: int
    steps_per_epoch: int


@dataclass(frozen=True)
class TrialEnd:
    index: int
    total: int
    record: Trial
    best: Trial | None  # the best scored trial so far, this one included
    seconds_left: float | None  # the search's estimated remaining time


class SearchProgress(Protocol):
    """Receives a search's events; every method must return quickly."""

    def search_started(self, total: int, done: int, seconds_left: float) -> None: ...

    def trial_started(self, start: TrialStart) -> None: ...

    def steps_done(self, epoch: int, steps: int) -> None: ...

    def epoch_ended(self, epoch: int, logs: dict[str, float], seconds: float) -> None: ...

    def trial_ended(self, end: TrialEnd) -> None: ...

    def retraining_started(self, epochs: int, steps_per_epoch: int, label: str = "retraining") -> None: ...

    def step(self, text: str) -> None: ...


class SearchClock:
    """Estimated time left in a search: the dry-run cost model, scaled by how fast epochs really ran."""

    def __init__(self, space: SearchSpace, total_trials: int, train_images: int, retrain_images: int) -> None:
        self.space = space
        self.total_trials = total_trials
        self.train_images = train_images  # a search trial's
        self.retrain_images = retrain_images  # the winner's retraining: every training image
        self.measured_s = 0.0
        self.modelled_s = 0.0

    def epoch_cost(self, configuration: dict[str, Any], images: int | None = None) -> float:
        """The modelled seconds of one epoch on ``images`` (default: a search trial's)."""
        return estimate_epoch_seconds(self.space, configuration, images or self.train_images)

    def observe(self, configuration: dict[str, Any], seconds: float) -> None:
        """One epoch of a configuration measured."""
        self.measured_s += seconds
        self.modelled_s += self.epoch_cost(configuration)

    def seconds_left(self, trials_done: int) -> float:
        """Remaining trials at the mean modelled cost (and the winner's retraining), at the speed measured
        so far (the model's own speed before any epoch was measured)."""
        configurations = self.space.configurations()
        mean_trial = sum(self.epoch_cost(c) for c in configurations) / len(configurations) * self.space.epochs
        modelled = max(self.total_trials - trials_done, 0) * mean_trial
        if self.space.retrain_epochs:
            modelled += self.space.retrain_epochs * max(self.epoch_cost(c, self.retrain_images) for c in configurations)
        speed = self.measured_s / self.modelled_s if self.modelled_s > 0 else 1.0
        return modelled * speed
