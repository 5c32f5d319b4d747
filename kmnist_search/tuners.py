"""Keras Tuner, fitted to this package: strategies as oracles, trial logging and median pruning.

One tuner per strategy name (``grid``, ``bayesian``, ``random``, ``hyperband``). Every trial writes its
epochs to ``trial_log.json`` as it trains and may be stopped early by the median rule; the Keras Tuner
patches this package needs are applied explicitly by :func:`apply_keras_tuner_patches`.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
from keras_tuner.src import utils as keras_tuner_utils
from keras_tuner.src.engine import tuner_utils as kt_tuner_utils

from kmnist_search.distributed import PatientOracleClient, current_role, tuner_id
from kmnist_search.errors import RunError
from kmnist_search.files import atomic_write_text
from kmnist_search.hypermodel import KmnistHyperModel, search_hyperparameters
from kmnist_search.journal import sync_journal
from kmnist_search.plan import STRATEGIES, planned_trials
from kmnist_search.progress import SearchClock, SearchProgress, TrialEnd, TrialStart
from kmnist_search.pruners import Curve, NoPruning, Pruner, make_pruner
from kmnist_search.record import SCORED_STATUSES, Epoch, PruneRecord, TrainingLog, read_training_log, write
from kmnist_search.resume import TrainingCheckpoint, save_weights_atomically
from kmnist_search.rundir import RunDir, failed_for_the_environment
from kmnist_search.spaces import BOOLEAN_HYPERPARAMETERS, Pruning, SearchSpace

HYPERBAND_FACTOR = 3


def _save_json_atomically(path: str, obj: Any) -> str:
    """Keras Tuner's ``utils.save_json`` (used for oracle.json, tuner0.json and every trial.json),
    made atomic: killed mid-write, it leaves the previous file intact, never a truncated one."""
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



def untried_configurations(oracle: kt.Oracle, trial_id: str) -> Iterator[dict[str, Any]]:
    """Every configuration of the oracle's all-Choice space that no other trial has taken, in grid order,
    one at a time (the grid is walked, never held whole)."""
    taken = {_values_key(trial.hyperparameters.values) for tid, trial in oracle.trials.items() if tid != trial_id}
    space = oracle.get_space().space
    names = [hp.name for hp in space]
    configurations = (dict(zip(names, combination, strict=True))
                      for combination in itertools.product(*(hp.values for hp in space)))
    return (values for values in configurations if _values_key(values) not in taken)


def _values_key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


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


class NonRepeatingBayesianOracle(kt.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation that never spends a trial on a configuration already tried.

    On a small discrete space Keras Tuner's Gaussian process can propose a configuration twice;
    here a repeat is replaced by a random untried one, and the search stops when none is left.
    """

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        response: dict[str, Any] = super().populate_space(trial_id)
        if response["status"] != kt.engine.trial.TrialStatus.RUNNING:
            return response
        untried = list(untried_configurations(self, trial_id))
        if _values_key(response["values"]) in {_values_key(values) for values in untried}:
            return response
        if not untried:
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        return {"status": kt.engine.trial.TrialStatus.RUNNING,
                "values": untried[self._random_state.randint(len(untried))]}


class EpochLogger(keras.callbacks.Callback):
    """Write every epoch's metrics, wall seconds and CPU seconds (this process's, all threads) to a trial's
    ``trial_log.json`` as it goes. A resumed run keeps the epochs its checkpoint holds and drops any it is
    about to train again."""

    def __init__(self, log_path: Path, checkpoint: TrainingCheckpoint | None = None, steps_per_epoch: int = 1) -> None:
        super().__init__()
        self.log_path = log_path
        self.checkpoint = checkpoint
        self.steps_per_epoch = steps_per_epoch
        self.started = time.monotonic()
        self.epoch_started = self.started
        self.epoch_cpu_started = time.process_time()
        self.epochs: list[Epoch] = []
        self.earlier_wall_time_s = 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.started = time.monotonic()
        self.epochs, self.earlier_wall_time_s = kept_epochs(self.log_path, self.checkpoint)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_started = time.monotonic()
        self.epoch_cpu_started = time.process_time()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs.append(Epoch.model_validate({
            "epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
            "seconds": round(time.monotonic() - self.epoch_started, 2),
            "cpu_seconds": round(time.process_time() - self.epoch_cpu_started, 2)}))
        write(self.log_path, TrainingLog(
            epochs=self.epochs, tuner_id=tuner_id(), steps_per_epoch=self.steps_per_epoch,
            wall_time_s=round(self.earlier_wall_time_s + time.monotonic() - self.started, 2)))


def kept_epochs(log_path: Path, checkpoint: TrainingCheckpoint | None) -> tuple[list[Epoch], float]:
    """The logged epochs a resumed run keeps (those its checkpoint holds) and the wall time they took."""
    saved = checkpoint.saved_epoch() if checkpoint is not None else 0
    log = read_training_log(log_path) if saved else None
    if not log:
        return [], 0.0
    return [e for e in log.epochs if e.epoch <= saved], log.wall_time_s


class BestSoFar(keras.callbacks.Callback):
    """Tracks the best ``monitor`` value of a training run, starting (when resumed) from the best its
    kept epochs reached."""

    def __init__(self, log_path: Path, checkpoint: TrainingCheckpoint | None, monitor: str) -> None:
        super().__init__()
        self.log_path = log_path
        self.checkpoint = checkpoint
        self.monitor = monitor
        self.best = float("-inf")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        kept, _ = kept_epochs(self.log_path, self.checkpoint)
        self.best = max((e.value(self.monitor) for e in kept), default=float("-inf"))


class BestEpochWeights(BestSoFar):
    """Keep the weights of the epoch with the best ``monitor`` value (replaced atomically)."""

    def __init__(self, path: Path, monitor: str, log_path: Path, checkpoint: TrainingCheckpoint) -> None:
        super().__init__(log_path, checkpoint, monitor)
        self.path = path

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = float((logs or {}).get(self.monitor, float("-inf")))
        if value > self.best:
            self.best = value
            save_weights_atomically(self.model, self.path)


class PruningCallback(keras.callbacks.Callback):
    """Ask a :class:`~kmnist_search.pruners.Pruner` after every epoch whether the trial stops, given the
    other trials' curves so far (read from their ``trial_log.json``, so it works the same for every
    strategy and across processes). Records ``pruned.json`` when it stops the trial."""

    def __init__(self, trial_dir: Path, monitor: str, pruner: Pruner, checkpoint: TrainingCheckpoint | None = None,
                 steps_per_epoch: int = 1) -> None:
        super().__init__()
        self.log_path = RunDir.trial_log_path(trial_dir)
        self.checkpoint = checkpoint
        self.monitor = monitor
        self.trial_dir = trial_dir
        self.pruner = pruner
        self.steps_per_epoch = steps_per_epoch
        self.values: list[float] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        kept, _ = kept_epochs(self.log_path, self.checkpoint)
        self.values = list(TrainingLog(epochs=kept).curve(self.monitor))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.values = [*self.values[:epoch], float((logs or {}).get(self.monitor, float("-inf")))]
        others = [Curve(log.curve(self.monitor), log.steps_per_epoch)
                  for log in RunDir(self.trial_dir.parent).trial_logs(except_dir=self.trial_dir)]
        stop = self.pruner.decide(Curve(tuple(self.values), self.steps_per_epoch), others)
        if stop is not None:
            self.model.stop_training = True
            write(RunDir.pruned_path(self.trial_dir), PruneRecord(
                epoch=stop.epoch, value=stop.value, threshold=stop.threshold,
                trials_compared=stop.trials_compared, rule=stop.rule))


class JournalSync(keras.callbacks.Callback):
    """Bring the run's Optuna journal up to date when a trial starts and after each of its epochs."""

    def __init__(self, run_dir: RunDir) -> None:
        super().__init__()
        self.run_dir = run_dir

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        sync_journal(self.run_dir)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        sync_journal(self.run_dir)


class ProgressReporter(keras.callbacks.Callback):
    """Tell a :class:`~kmnist_search.progress.SearchProgress` about steps and epochs as a model trains.

    Keras calls ``on_train_batch_end`` once per execution of ``steps_per_execution`` steps, with the
    last step's index, which can pass the epoch's end: the count reported is clamped to the epoch."""

    def __init__(self, progress: SearchProgress, clock: SearchClock | None, configuration: dict[str, Any],
                 steps_per_epoch: int) -> None:
        super().__init__()
        self.progress = progress
        self.clock = clock
        self.configuration = configuration
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0
        self.epoch_started = time.monotonic()

    def __deepcopy__(self, memo: dict[int, Any]) -> ProgressReporter:
        return self  # Keras Tuner deep-copies callbacks; the console behind this one must stay shared

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch + 1
        self.epoch_started = time.monotonic()
        self.progress.steps_done(self.epoch, 0)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.progress.steps_done(self.epoch, min(batch + 1, self.steps_per_epoch))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.monotonic() - self.epoch_started
        if self.clock is not None:
            self.clock.observe(self.configuration, seconds)
        self.progress.epoch_ended(epoch + 1, {k: float(v) for k, v in (logs or {}).items()}, seconds)


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
        pruner = make_pruner(self.pruning) if self.pruning is not None else NoPruning()
        if not isinstance(pruner, NoPruning):  # no rule: no reading every other trial's log after each epoch
            extra.insert(0, PruningCallback(trial_dir, self.monitor, pruner, checkpoint, steps_per_epoch))
        extra.append(JournalSync(RunDir(self.project_dir)))  # type: ignore[attr-defined]
        if self.progress is not None:
            extra.append(self._report_trial_start(trial, int(kwargs.get("epochs", self.epochs)), steps_per_epoch))
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), *extra]
        kwargs.update(checkpoint=checkpoint, shuffle_seed=self.trial_seed_base + int(trial.trial_id))
        histories = super().run_trial(trial, *args, **kwargs)  # type: ignore[misc]
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
        sync_journal(run_dir)
        if self.progress is None:
            return
        records = run_dir.trials()
        record = next((r for r in records if r.trial_id == trial.trial_id), None)
        if record is None:
            return
        scored = [r for r in records if r.status in SCORED_STATUSES and r.score is not None]
        best = max(scored, key=lambda r: r.score or 0.0) if scored else None
        done = sum(1 for r in records if r.status not in ("RUNNING", "IDLE"))
        seconds_left = self.clock.seconds_left(done) if self.clock else None
        self.progress.trial_ended(TrialEnd(int(trial.trial_id) + 1, self.total_trials, record, best, seconds_left))


def steps_in_an_epoch(train_images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``train_images`` (the last batch may be short)."""
    return max(math.ceil(train_images / batch_size), 1)


def whole_history(history: Any, log_path: Path) -> Any:
    """A trial's history with the epochs trained before a resume put back (from its log), so Keras
    Tuner scores the trial on all its epochs."""
    log = read_training_log(log_path)
    if isinstance(history, keras.callbacks.History) and log and log.epochs:
        names = list(log.epochs[-1].metrics)
        history.history = {name: [e.value(name, math.nan) for e in log.epochs if name in e.metrics]
                           for name in names}
    return history


class KmnistTuner(TrialRecorder, kt.Tuner):
    """A plain Keras Tuner tuner (any oracle) that logs its trials."""


class KmnistHyperband(TrialRecorder, kt.Hyperband):
    """Keras Tuner's Hyperband that logs its trials, over an oracle made by :func:`make_oracle`."""

    def __init__(self, oracle: kt.Oracle, hypermodel: KmnistHyperModel, **project: Any) -> None:
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **project)  # kt.Hyperband builds its own


def make_oracle(strategy: str, space: SearchSpace, objective: str, seed: int, max_trials: int | None) -> kt.Oracle:
    """The Keras Tuner oracle for a strategy name over a space's configurations, maximising ``objective``
    (the live search and the replay of recorded curves build theirs here)."""
    common: dict[str, Any] = {
        "objective": kt.Objective(objective, direction="max"),
        "hyperparameters": search_hyperparameters(space),
        "tune_new_entries": False,
        "allow_new_entries": False,
        "seed": seed,
        "max_consecutive_failed_trials": 3,
    }
    trials = planned_trials(space, strategy, max_trials)
    if strategy == "hyperband":
        return kt.oracles.HyperbandOracle(max_epochs=space.epochs, factor=HYPERBAND_FACTOR, **common)
    if strategy == "grid":
        return ResumableGridSearchOracle(max_trials=trials, **common)
    if strategy == "random":
        return kt.oracles.RandomSearchOracle(max_trials=trials, **common)
    if strategy == "bayesian":
        return NonRepeatingBayesianOracle(max_trials=trials, num_initial_points=min(3, trials), **common)
    raise RunError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")


def make_tuner(hypermodel: KmnistHyperModel, space: SearchSpace, strategy: str, run_dir: RunDir, seed: int,
               weights_seed: int, max_trials: int | None) -> kt.Tuner:
    """Build the Keras Tuner tuner for a strategy name, maximising the dataset's validation metric."""
    oracle = make_oracle(strategy, space, f"val_{hypermodel.objective}", seed, max_trials)
    # RunDir.prepare has emptied the folder for an overwrite and recorded the search in it: Keras Tuner's own
    # overwrite would delete that record too, and a later run of another search would not be refused.
    project = {"directory": str(run_dir.path.parent), "project_name": run_dir.name, "overwrite": False}
    tuner: kt.Tuner
    with contextlib.redirect_stdout(io.StringIO()):  # Keras Tuner prints "Reloading Tuner from ..."
        tuner = (KmnistHyperband if strategy == "hyperband" else KmnistTuner)(
            oracle=oracle, hypermodel=hypermodel, **project)
    if strategy != "hyperband":  # Hyperband prunes by its own rule instead
        tuner.pruning = space.pruning
    tuner.monitor = f"val_{hypermodel.objective}"
    tuner.trial_seed_base = weights_seed
    tuner.total_trials = planned_trials(space, strategy, max_trials)
    tuner.epochs = space.epochs
    if current_role() == "worker":
        tuner.oracle = PatientOracleClient(tuner.oracle)
    return tuner
