"""Replay a search on recorded learning curves, in seconds, without training.

As Syne Tune's simulator backend replays tabulated benchmarks through its real schedulers, this drives
Keras Tuner's own search loop with the oracle the live search builds (:func:`~kmnist_search.search.tuners.
make_oracle`) and the pruner it builds (:func:`~kmnist_search.search.pruners.make_pruner`); only training is
replaced by looking up the configuration's recorded curve. So a replayed search proposes the trials,
stops them and declares the winner that a live search would, given the same curves.

A trial's cost is the epochs it trained and their recorded CPU seconds. Hyperband continues a trial
from an earlier one's weights: it pays only for the epochs it adds. A replay is never resumed, so the
oracle and tuner write no state files, and the folders Keras Tuner creates are in TensorFlow's in-memory
file system (``ram://``), removed when the replay ends.
"""

from __future__ import annotations

import contextlib
import io
import json
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import keras_tuner as kt
import tensorflow as tf
from sklearn.exceptions import ConvergenceWarning

from kmnist_search.data.record import HYPERBAND_BOOKKEEPING, PruneRecord
from kmnist_search.data.spaces import SearchSpace
from kmnist_search.search.keras_tuner_patches import without_state_files
from kmnist_search.search.pruners import Curve, Pruner
from kmnist_search.search.tuners import make_oracle

OBJECTIVE = "val_accuracy"


def configuration_key(values: Mapping[str, Any]) -> str:
    """One configuration's identity: its hyperparameter values, without Hyperband's bookkeeping."""
    return json.dumps({k: v for k, v in values.items() if not k.startswith(HYPERBAND_BOOKKEEPING)}, sort_keys=True)


@dataclass(frozen=True)
class RecordedRun:
    """One configuration trained to the end: its curve and the CPU seconds of each epoch."""

    curve: Curve
    cpu_seconds: tuple[float, ...]


@dataclass(frozen=True)
class ReplayedTrial:
    """One trial of a replayed search: its configuration, the epochs it trained and its score."""

    configuration: str
    first_epoch: int  # 0 unless Hyperband continued it from an earlier trial
    epochs: int
    score: float
    stop: PruneRecord | None


@dataclass(frozen=True)
class Replay:
    """A replayed search: its trials in order, its declared winner and what it cost."""

    trials: tuple[ReplayedTrial, ...]
    winner: str
    epochs: int
    cpu_seconds: float


class _Unbuilt(kt.HyperModel):
    """Nothing is built in a replay: the space is declared up front by the oracle."""

    def build(self, hp: kt.HyperParameters) -> None:
        return None


class ReplayTuner(kt.Tuner):
    """Keras Tuner's search loop over recorded curves: each trial looks its curve up and trains it epoch
    by epoch on paper, asking the pruner after every epoch, as the live trial's callback does."""

    def __init__(self, oracle: kt.Oracle, recorded: Mapping[str, RecordedRun], pruner: Pruner | None,
                 directory: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            super().__init__(oracle=oracle, hypermodel=_Unbuilt(), directory=directory, project_name="replay",
                             overwrite=True)
        self.recorded = recorded
        self.pruner = pruner
        self.trained: list[ReplayedTrial] = []
        self.curves_so_far: list[Curve] = []  # every trial's curve as far as it trained (what pruning sees)

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict[str, float]:
        values = trial.hyperparameters.values
        key = configuration_key(values)
        if key not in self.recorded:
            raise kt.errors.FatalError(f"no recorded curve for {key}")
        full = self.recorded[key].curve
        stop = None
        if "tuner/epochs" in values:  # Hyperband: continue from tuner/initial_epoch to tuner/epochs
            first, last = int(values["tuner/initial_epoch"]), min(int(values["tuner/epochs"]), full.epochs)
        else:
            first, last = 0, full.epochs
            for epoch in range(1, full.epochs + 1):
                stop = self.pruner.decide(full.prefix(epoch), self.curves_so_far) if self.pruner else None
                if stop is not None:
                    last = epoch
                    break
        trained = Curve(full.values[first:last], full.steps_per_epoch)
        self.curves_so_far.append(full.prefix(last))
        self.trained.append(ReplayedTrial(key, first, last, trained.best(), stop))
        return {OBJECTIVE: trained.best()}

    def save(self) -> None:
        """A replay is never resumed: no ``tuner0.json``."""

    def save_model(self, trial_id: str, model: Any, step: int = 0) -> None:
        return None

    def load_model(self, trial: kt.engine.trial.Trial) -> None:
        return None


@contextlib.contextmanager
def in_memory_folder() -> Iterator[str]:
    """A folder in TensorFlow's in-memory file system, through which all of Keras Tuner's file calls go."""
    folder = f"ram://kmnist-replay-{uuid.uuid4().hex}"
    try:
        yield folder
    finally:
        if tf.io.gfile.exists(folder):
            tf.io.gfile.rmtree(folder)


def replay(space: SearchSpace, strategy: str, recorded: Mapping[str, RecordedRun], pruner: Pruner | None,
           seed: int, max_trials: int | None = None) -> Replay:
    """Replay one search of ``space`` with ``strategy`` over the recorded curves (``pruner`` None for
    Hyperband, which stops trials by its own brackets)."""
    with in_memory_folder() as directory, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)  # Bayesian's GP on a small grid
        oracle = make_oracle(strategy, space, OBJECTIVE, seed, max_trials)
        without_state_files(oracle)
        tuner = ReplayTuner(oracle, recorded, pruner, directory)
        tuner.search(verbose=0)
        best = oracle.get_best_trials(1)[0]
    winner = configuration_key(best.hyperparameters.values)
    epochs = sum(t.epochs - t.first_epoch for t in tuner.trained)
    cpu = sum(sum(recorded[t.configuration].cpu_seconds[t.first_epoch:t.epochs]) for t in tuner.trained)
    return Replay(tuple(tuner.trained), winner, epochs, cpu)
