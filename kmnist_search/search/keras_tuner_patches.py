"""Every change this package makes to Keras Tuner, and every use of its private names, in one place.

Each entry names the Keras Tuner version or upstream issue it works around; tests/test_keras_tuner_patches.py
fails loudly, naming the entry, when an upgrade of Keras Tuner moves what an entry relies on. Tested with
keras-tuner :data:`TESTED_VERSIONS`.

- Atomic state files (keras-tuner 1.4.x writes ``oracle.json``, ``tuner0.json`` and every ``trial.json`` in
  place: a kill mid-write leaves a truncated file): ``utils.save_json`` is replaced.
- A resumable best-epoch checkpoint (1.4.x's ``SaveBestEpoch`` starts every training from nothing, so a
  resumed trial could let a worse epoch overwrite its best one, and writes in place).
- An ended trial leaves the retry queue (1.4.x keeps a trial that a restarted chief queued for retry in the
  queue after a live worker ends it, and trains it again).
- A grid search that resumes (upstream issue #1055: 1.4.8's ``GridSearchOracle`` keeps its position in
  state it never saves, and a resumed grid search crashes).
- A Bayesian search that finds its acquisition's best among the untried configurations exactly (1.4.x
  optimises it in a continuous embedding, seconds per trial, and rounds to a configuration that on a small
  discrete space can be one already tried).
- An oracle that writes no state files, for the replay of recorded curves.
- The oracle's private state that reconciliation after a kill reads and repairs (:mod:`kmnist_search.search.reconcile`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras_tuner as kt
import numpy as np
from keras_tuner.src import config as keras_tuner_config
from keras_tuner.src import utils as keras_tuner_utils
from keras_tuner.src.engine import tuner_utils as kt_tuner_utils

from kmnist_search.base.files import atomic_write_text
from kmnist_search.data.rundir import RunDir
from kmnist_search.search.callbacks import kept_epochs
from kmnist_search.search.resume import TrainingCheckpoint, save_weights_atomically

TESTED_VERSIONS = ("1.4.7", "1.4.8")
BOUND_BATCH = 4096  # configurations scored at once by the Bayesian search's acquisition


_keras_tuner_save_json = keras_tuner_utils.save_json


def _save_json_atomically(path: str, obj: Any) -> str:
    """Keras Tuner's ``utils.save_json`` (used for oracle.json, tuner0.json and every trial.json),
    made atomic: killed mid-write, it leaves the previous file intact, never a truncated one. A path on
    one of TensorFlow's other file systems (``ram://``, where a replay keeps its state) is left to Keras
    Tuner's own."""
    if "://" in path:
        return str(_keras_tuner_save_json(path, obj))
    text = json.dumps(obj)
    atomic_write_text(Path(path), text)
    return text


class ResumableSaveBestEpoch(kt_tuner_utils.SaveBestEpoch):
    """Keras Tuner's best-epoch checkpoint, made resumable: a trial that continues from a saved epoch
    starts from the best value its earlier epochs reached (not from nothing, which would let a worse
    epoch overwrite the best one), and the weights file is replaced atomically."""

    best_value: float

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        trial_dir = Path(self.filepath).parent
        kept, _ = kept_epochs(RunDir.trial_log_path(trial_dir), TrainingCheckpoint(RunDir.trial_resume_dir(trial_dir)))
        for entry in kept:
            metrics = entry.metrics
            if self.objective.has_value(metrics) and self.objective.better_than(self.objective.get_value(metrics),
                                                                                 self.best_value):
                self.best_value = self.objective.get_value(metrics)

    def _save_model(self) -> None:
        save_weights_atomically(self.model, Path(self.filepath))


_keras_tuner_end_trial = kt.Oracle.end_trial


def _end_trial_once(self: kt.Oracle, trial: kt.engine.trial.Trial) -> None:
    """Keras Tuner's ``Oracle.end_trial``, which also takes the trial off the retry queue: a trial sent
    for retry when a restarted chief reloaded (still running on a live worker) is not trained again
    once that worker ends it. A trial that ends INVALID is queued again by Keras Tuner itself."""
    if trial.trial_id in self._retry_queue:
        self._retry_queue.remove(trial.trial_id)
    _keras_tuner_end_trial(self, trial)


def apply_keras_tuner_patches() -> None:
    """Make Keras Tuner's own files survive a kill at any instant. keras-tuner 1.4.x writes its state
    files in place (a SIGKILL mid-write would leave a truncated JSON file): after this, every
    ``Stateful.save`` writes atomically. Its best-epoch checkpoint resumes with the trial, and an ended
    trial leaves the retry queue."""
    keras_tuner_utils.save_json = _save_json_atomically
    kt_tuner_utils.SaveBestEpoch = ResumableSaveBestEpoch
    kt.Oracle.end_trial = _end_trial_once


def quiet_failed_trials() -> None:
    """Keras Tuner prints a failed trial's whole traceback (its ``config.DEBUG`` is on by default); the console
    prints one line per failed trial instead, and the trial's record keeps the traceback."""
    keras_tuner_config.DEBUG = False


def untried_configurations(oracle: kt.Oracle, trial_id: str) -> Iterator[dict[str, Any]]:
    """Every configuration of the oracle's all-Choice space that no other trial has taken, in grid order,
    one at a time (the grid is walked, never held whole). The space is read, not copied: Keras Tuner's
    ``get_space`` copies it through Keras deserialisation, dearer than the walk itself."""
    taken = {_values_key(trial.hyperparameters.values) for tid, trial in oracle.trials.items() if tid != trial_id}
    space = oracle.hyperparameters.space
    names = [hp.name for hp in space]
    configurations = (dict(zip(names, combination, strict=True))
                      for combination in itertools.product(*(hp.values for hp in space)))
    return (values for values in configurations if _values_key(values) not in taken)


def _values_key(values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A configuration's identity (its values are scalars: the space is all Choice)."""
    return tuple(sorted(values.items()))


class ResumableGridSearchOracle(kt.oracles.GridSearchOracle):
    """Grid search that derives the next configuration from the stored trials alone.

    keras-tuner 1.4.8's GridSearchOracle keeps its position in state it never saves, so a
    resumed grid search crashes (upstream issue #1055). Here every call walks the full grid in
    order and returns the first configuration no trial has taken, which resumes correctly.
    """

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        first_untried = next(untried_configurations(self, trial_id), None)
        if first_untried is not None:
            return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": first_untried}
        if self.ongoing_trials:
            return {"status": kt.engine.trial.TrialStatus.IDLE, "values": None}
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}


class GridBayesianOracle(kt.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation over a grid: Keras Tuner's Gaussian process and upper confidence bound, with the
    bound's best found exactly among the configurations no trial has taken.

    keras-tuner 1.4.x looks for the bound's best with 50 L-BFGS-B restarts (numeric gradients) in the
    continuous embedding of the space, then rounds the point to a configuration: seconds of CPU per trial,
    and on a small discrete space the rounded point can be one already tried. Here the bound is scored at
    every untried configuration, in batches of :data:`BOUND_BATCH`: the same model and acquisition, the
    exact maximum over the finite set, never a repeat, in milliseconds. The first trials are Keras Tuner's
    random ones, as before.
    """

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        completed = [trial for trial in self.trials.values() if trial.status == kt.engine.trial.TrialStatus.COMPLETED]
        if len(completed) < (self.num_initial_points or max(3 * len(self.hyperparameters.space), 3)):  # as 1.4.x
            response: dict[str, Any] = super().populate_space(trial_id)
            return response
        vectors, scores = self._vectorize_trials()
        self.gpr.fit(np.nan_to_num(vectors, posinf=0, neginf=0), np.nan_to_num(scores, posinf=0, neginf=0))
        best_values, best_bound = None, float("inf")
        untried, scored = untried_configurations(self, trial_id), self._nonfixed_space()
        while batch := list(itertools.islice(untried, BOUND_BATCH)):
            embedded = np.array([[hp.value_to_prob(values[hp.name]) for hp in scored] for values in batch])
            mean, sd = self.gpr.predict(embedded, return_std=True)
            bound = mean - self.beta * sd  # scores are negated when maximising: lower is better
            index = int(np.argmin(bound))
            if bound[index] < best_bound:
                best_values, best_bound = batch[index], float(bound[index])
        if best_values is None:
            status = kt.engine.trial.TrialStatus.IDLE if self.ongoing_trials else kt.engine.trial.TrialStatus.STOPPED
            return {"status": status, "values": None}
        return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": best_values}


# --- the oracle's private state, for reconciliation ----------------------------------------------------


def oracle_file(oracle: kt.Oracle) -> Path:
    """Where the oracle saves its state (``oracle.json``)."""
    return Path(oracle._get_oracle_fname())


def trial_folder(oracle: kt.Oracle, trial_id: str) -> Path:
    return Path(oracle._get_trial_dir(trial_id))


def retry_queue(oracle: kt.Oracle) -> list[str]:
    """The trials the oracle will hand out again (the list itself: changes to it change the oracle)."""
    queue: list[str] = oracle._retry_queue
    return queue


def checkpoint_file(tuner: kt.Tuner, trial_id: str) -> Path:
    """Where Keras Tuner keeps a trial's best-epoch weights (what ``get_best_models`` loads)."""
    return Path(tuner._get_checkpoint_fname(trial_id))


def without_state_files(oracle: kt.Oracle) -> None:
    """Stop an oracle writing its state (``oracle.json``, every ``trial.json``): for a replay, whose searches
    are never resumed. No decision of the oracle reads those files back."""
    setattr(oracle, "save", lambda: None)  # noqa: B010 (an instance's own methods are replaced)
    setattr(oracle, "_save_trial", lambda trial: None)  # noqa: B010


def save_trial(oracle: kt.Oracle, trial: kt.engine.trial.Trial) -> None:
    """Write a trial's state (its ``trial.json``) as the oracle does."""
    oracle._save_trial(trial)
