"""Keras Tuner, fitted to this package: a tuner per strategy that logs, prunes and reports its trials.

The strategies (``grid``, ``bayesian``, ``random``, ``hyperband``) are oracles from
:mod:`kmnist_search.search.strategies`; each trial's callbacks are :mod:`kmnist_search.search.callbacks`'; the changes
made to Keras Tuner itself are :mod:`kmnist_search.search.keras_tuner_patches`' (applied by
:func:`~kmnist_search.search.keras_tuner_patches.apply_keras_tuner_patches`).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any, Protocol

import keras
import keras_tuner as kt

from kmnist_search.base.errors import DISK_ERRORS, RunError, TrialDiskError
from kmnist_search.data.record import SCORED_STATUSES, Budget, Deployment, Trial, write
from kmnist_search.data.rundir import RunDir, failed_for_the_environment
from kmnist_search.data.spaces import BOOLEAN_HYPERPARAMETERS, Pruning, SearchSpace
from kmnist_search.search.callbacks import (
    EpochLogger,
    JournalSync,
    ProgressReporter,
    PruningCallback,
    steps_in_an_epoch,
    whole_history,
)
from kmnist_search.search.distributed import PatientOracleClient, current_role
from kmnist_search.search.hypermodel import KmnistHyperModel
from kmnist_search.search.journal import sync_journal
from kmnist_search.search.keras_tuner_patches import checkpoint_file
from kmnist_search.search.plan import STRATEGIES, planned_trials
from kmnist_search.search.progress import SearchClock, SearchProgress, TrialEnd, TrialStart
from kmnist_search.search.pruners import NoPruning, make_pruner
from kmnist_search.search.resume import TrainingCheckpoint
from kmnist_search.search.strategies import REGISTRY, oracle_settings


class DiskStop(kt.errors.FatalError):
    """The disk failed a trial's write (full, over quota, a size limit, read-only): the search stops at once,
    and the trial, still running on record, is continued by the rerun from its last good epoch."""

    def __init__(self, number: int, trial_dir: Path) -> None:
        super().__init__(os.strerror(number))
        self.error = TrialDiskError(number, os.strerror(number), str(trial_dir))


class TrialRecorder:
    """Mixin for tuners: log each trial's epochs and wall time beside its trial.json, apply the
    median-stopping rule when the space asks for it, and report progress when given a reporter."""

    trial_seed_base = 0
    pruning: Pruning | None = None
    monitor = "val_accuracy"
    progress: SearchProgress | None = None
    clock: SearchClock | None = None
    total_trials = 0
    epochs = 1
    keep_checkpoints: int | None = None  # best-epoch weights kept for the N best trials; None: every trial's
    measurer: Measurer | None = None  # measures each completed trial as it would ship
    budget: Budget | None = None  # the winner must fit it: only fitting trials' weights are worth keeping

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> Any:
        # Seed per trial, so a trial rerun after a crash starts from the same weights as it would have.
        keras.utils.set_random_seed(self.trial_seed_base + int(trial.trial_id))
        trial_dir = Path(self.get_trial_dir(trial.trial_id))  # type: ignore[attr-defined]
        log_path = RunDir.trial_log_path(trial_dir)
        checkpoint = TrainingCheckpoint(RunDir.trial_resume_dir(trial_dir))
        if not checkpoint.saved_epoch():
            log_path.unlink(missing_ok=True)  # a trial started afresh starts its log afresh
        if not checkpoint.stopped():  # a trial whose stop was saved keeps the record of why it stopped
            RunDir.pruned_path(trial_dir).unlink(missing_ok=True)
        # Keras Tuner deep-copies callbacks per execution, so the copies write the files.
        steps_per_epoch = steps_in_an_epoch(len(args[0]), int(trial.hyperparameters.get("batch_size")))
        extra: list[keras.callbacks.Callback] = [EpochLogger(log_path, checkpoint, steps_per_epoch)]
        epochs = int(kwargs.get("epochs", self.epochs))
        pruner = make_pruner(self.pruning, epochs) if self.pruning is not None else NoPruning()
        if not isinstance(pruner, NoPruning):  # no rule: no reading every other trial's log after each epoch
            extra.insert(0, PruningCallback(trial_dir, self.monitor, pruner, checkpoint, steps_per_epoch))
        extra.append(JournalSync(RunDir(self.project_dir)))  # type: ignore[attr-defined]
        if self.progress is not None:
            extra.append(self._report_trial_start(trial, epochs, steps_per_epoch))
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), *extra]
        kwargs.update(checkpoint=checkpoint, shuffle_seed=self.trial_seed_base + int(trial.trial_id))
        try:
            histories = super().run_trial(trial, *args, **kwargs)  # type: ignore[misc]
        except OSError as error:
            if error.errno in DISK_ERRORS:  # every later trial would fail alike: stop, the rerun continues this one
                raise DiskStop(error.errno, trial_dir) from error
            raise
        return [whole_history(history, log_path) for history in histories]

    def _report_trial_start(self, trial: kt.engine.trial.Trial, epochs: int, steps: int) -> ProgressReporter:
        assert self.progress is not None
        values = {k: bool(v) if k in BOOLEAN_HYPERPARAMETERS else v
                  for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        self.progress.trial_started(TrialStart(int(trial.trial_id) + 1, self.total_trials, values, epochs, steps))
        return ProgressReporter(self.progress, self.clock, values, steps)

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_end(trial)  # type: ignore[misc]
        trial_dir = Path(self.get_trial_dir(trial.trial_id))  # type: ignore[attr-defined]
        if not failed_for_the_environment(trial.message):  # such a trial is retried by the rerun, from here
            TrainingCheckpoint(RunDir.trial_resume_dir(trial_dir)).clear()  # recorded: nothing to resume
        run_dir = RunDir(self.project_dir)  # type: ignore[attr-defined]
        records = self.measure_pending(run_dir, only=trial.trial_id)
        sync_journal(run_dir, records)
        self.remove_spare_checkpoints(records)
        if self.progress is None:
            return
        record = next((r for r in records if r.trial_id == trial.trial_id), None)
        if record is None:
            return
        scored = [r for r in records if r.status in SCORED_STATUSES and r.score is not None]
        best = max(scored, key=lambda r: r.score or 0.0) if scored else None
        done = sum(1 for r in records if r.status not in ("RUNNING", "IDLE"))
        seconds_left = self.clock.seconds_left(done) if self.clock else None
        self.progress.trial_ended(TrialEnd(int(trial.trial_id) + 1, self.total_trials, record, best, seconds_left))


    def measure_pending(self, run_dir: RunDir, only: str | None = None) -> list[Trial]:
        """Measure the completed trials (``only`` the one, where given) that have no measurement yet and
        still have their best-epoch weights; return every trial's record as it now stands."""
        records = run_dir.trials()
        if self.measurer is None:
            return records
        pending = [r for r in records if r.status == "COMPLETED" and r.deployment is None
                   and (only is None or r.trial_id == only)
                   and checkpoint_file(self, r.trial_id).is_file()]  # type: ignore[arg-type]
        for record in pending:
            with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed for inference
                warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
                model = self.load_model(self.oracle.get_trial(record.trial_id))  # type: ignore[attr-defined]
            write(RunDir.deployment_path(Path(self.get_trial_dir(record.trial_id))),  # type: ignore[attr-defined]
                  self.measurer.measure(model))
        return run_dir.trials() if pending else records

    def remove_spare_checkpoints(self, records: list[Trial]) -> None:
        """Delete the best-epoch weights nothing will load (see :func:`spare_checkpoints`); a completed trial
        still to be measured keeps them."""
        if self.keep_checkpoints is None:
            return
        unmeasured = {r.trial_id for r in records if self.measurer is not None and r.status == "COMPLETED"
                      and r.deployment is None}
        for spare in spare_checkpoints(records, self.keep_checkpoints, self.budget):
            if spare not in unmeasured:
                checkpoint_file(self, spare).unlink(missing_ok=True)  # type: ignore[arg-type]


class Measurer(Protocol):
    """Measures a trained model as it would ship (see :class:`kmnist_search.export.deployment.TrialMeasurer`)."""

    def measure(self, trained: keras.Model) -> Deployment:
        ...


def spare_checkpoints(records: list[Trial], keep: int, budget: Budget | None = None) -> list[str]:
    """The scored trials whose best-epoch weights nothing will load: all but the ``keep`` best (and any tied
    with the last of those, so that the oracle's own pick of the best is always kept); with a budget, all but
    the ``keep`` best of those measured within it. A failed trial keeps its files: one failed by its
    environment is retried from them."""
    scored = [r for r in records if r.status in SCORED_STATUSES and r.score is not None]
    eligible = [r for r in scored if budget is None or (r.deployment is not None and budget.fits(r.deployment))]
    scores = sorted((r.score for r in eligible if r.score is not None), reverse=True)
    bar = scores[keep - 1] if len(scores) >= keep else float("-inf")
    kept = {r.trial_id for r in eligible if r.score is not None and r.score >= bar}
    return [r.trial_id for r in scored if r.trial_id not in kept]


class KmnistTuner(TrialRecorder, kt.Tuner):
    """A plain Keras Tuner tuner (any oracle) that logs its trials."""


class KmnistHyperband(TrialRecorder, kt.Hyperband):
    """Keras Tuner's Hyperband that logs its trials, over an oracle made by :func:`make_oracle`."""

    def __init__(self, oracle: kt.Oracle, hypermodel: KmnistHyperModel, **project: Any) -> None:
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **project)  # kt.Hyperband builds its own


def make_oracle(strategy: str, space: SearchSpace, objective: str, seed: int, max_trials: int | None) -> kt.Oracle:
    """The Keras Tuner oracle for a strategy name over a space's configurations, maximising ``objective``
    (the live search and the replay of recorded curves build theirs here)."""
    if strategy not in REGISTRY:
        raise RunError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    return REGISTRY[strategy].oracle(space, planned_trials(space, strategy, max_trials),
                                     oracle_settings(space, objective, seed))


def make_tuner(hypermodel: KmnistHyperModel, space: SearchSpace, strategy: str, run_dir: RunDir, seed: int,
               weights_seed: int, max_trials: int | None, keep_checkpoints: int = 1) -> kt.Tuner:
    """Build the Keras Tuner tuner for a strategy name, maximising the dataset's validation metric."""
    oracle = make_oracle(strategy, space, f"val_{hypermodel.objective}", seed, max_trials)
    # RunDir.prepare has emptied the folder for an overwrite and recorded the search in it: Keras Tuner's own
    # overwrite would delete that record too, and a later run of another search would not be refused.
    project = {"directory": str(run_dir.path.parent), "project_name": run_dir.name, "overwrite": False}
    tuner: kt.Tuner
    with contextlib.redirect_stdout(io.StringIO()):  # Keras Tuner prints "Reloading Tuner from ..."
        tuner = (KmnistHyperband if strategy == "hyperband" else KmnistTuner)(
            oracle=oracle, hypermodel=hypermodel, **project)
    if not REGISTRY[strategy].stops_trials_itself:  # Hyperband stops trials by its own rule instead
        tuner.pruning = space.pruning
        tuner.keep_checkpoints = keep_checkpoints  # Hyperband's later rounds start from earlier trials' weights
    tuner.monitor = f"val_{hypermodel.objective}"
    tuner.trial_seed_base = weights_seed
    tuner.total_trials = planned_trials(space, strategy, max_trials)
    tuner.epochs = space.epochs
    if current_role() == "worker":
        tuner.oracle = PatientOracleClient(tuner.oracle)
    return tuner
