"""The Keras callbacks of every training the search runs: the epoch log, the best epoch's weights, the
pruning rule, the Optuna journal and the console's progress. Each is deep-copied by Keras Tuner per
execution, so each keeps its state in files (the run record), not in memory."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import keras

from kmnist_search.data.record import Epoch, TrainingLog, read_training_log, write
from kmnist_search.data.rundir import RunDir
from kmnist_search.search.distributed import tuner_id
from kmnist_search.search.journal import sync_journal
from kmnist_search.search.progress import SearchClock, SearchProgress
from kmnist_search.search.pruners import Curve, Pruner
from kmnist_search.search.resume import TrainingCheckpoint, save_weights_atomically


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training at the first batch whose loss is NaN or infinite, without a word: the trial then fails
    with one line saying so (:func:`kmnist_search.search.hypermodel.fail_on_non_finite_loss`). Keras's own
    ``TerminateOnNaN`` prints a line of its own to the console."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


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
    """Ask a :class:`~kmnist_search.search.pruners.Pruner` after every epoch whether the trial stops, given the
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
            write(RunDir.pruned_path(self.trial_dir), stop)


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
    """Tell a :class:`~kmnist_search.search.progress.SearchProgress` about steps and epochs as a model trains.

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
