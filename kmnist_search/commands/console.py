"""The search as a person watches it: a line when each trial starts and ends, a progress bar for the
epochs inside a trial (in a terminal), and the time left.

In a terminal, rich draws the bar below the lines; elsewhere (CI, a log file) every line is plain text
and each epoch gets a line of its own. ``quiet`` keeps the trial lines and drops the epochs.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from kmnist_search.base.formatting import counted, duration, percent, settings_text, trial_number
from kmnist_search.pipeline import STATUS_NAMES, TrialEnd, TrialStart

RETRAINING = "retraining"


class ConsoleProgress:
    """A :class:`~kmnist_search.search.progress.SearchProgress` that prints to the console."""

    def __init__(self, quiet: bool = False, file: TextIO | None = None) -> None:
        self.quiet = quiet
        self.console = Console(file=file or sys.stdout, highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal and not quiet
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.label = ""
        self.one_long_training = False  # a retraining or confirmation: its epochs tell their own time left
        self.epochs = 0
        self.steps_per_epoch = 1
        self.epoch_seconds: list[float] = []  # this process's epochs of the current training

    def line(self, text: str) -> None:
        """One line of text, above the bar when there is one."""
        if self.bar is not None:
            self.bar.console.print(text, markup=False)
        else:
            self.console.print(text, markup=False)

    # --- SearchProgress ------------------------------------------------------------------------

    def search_started(self, total: int, done: int, seconds_left: float) -> None:
        resumed = f", {done} done before this start" if done else ""
        self.line(f"search: {counted(total, 'trial')} planned{resumed}; estimated time left {duration(seconds_left)} "
                  f"(from the cost model until epochs are measured)")

    def trial_started(self, start: TrialStart) -> None:
        self.line(f"trial {start.index}/{start.total} started: {settings_text(start.hyperparameters)}")
        self._start_bar(f"trial {start.index}/{start.total}", start.epochs, start.steps_per_epoch)
        self.one_long_training = False

    def retraining_started(self, epochs: int, steps_per_epoch: int, label: str = RETRAINING) -> None:
        self._start_bar(label, epochs, steps_per_epoch)
        self.one_long_training = True

    def steps_done(self, epoch: int, steps: int) -> None:
        if self.bar is not None and self.task is not None:
            completed = min((epoch - 1) * self.steps_per_epoch + steps, self.epochs * self.steps_per_epoch)
            self.bar.update(self.task, completed=completed, description=f"{self.label} epoch {epoch}/{self.epochs}")

    def epoch_ended(self, epoch: int, logs: dict[str, float], seconds: float) -> None:
        if self.quiet:
            return
        metrics = ", ".join(f"{name} {percent(value) if 'accuracy' in name else f'{value:.4f}'}"
                            for name, value in logs.items() if name.startswith("val_") or name == "accuracy")
        self.epoch_seconds.append(seconds)
        left = ""
        if self.one_long_training and epoch < self.epochs:  # one long training: its own time left
            left = f"; about {duration(statistics.median(self.epoch_seconds) * (self.epochs - epoch))} left"
        text = f"  {self.label} epoch {epoch}/{self.epochs}: {metrics} ({duration(seconds)}{left})"
        if self.bar is not None:
            self.bar.console.print(text, markup=False)
        else:
            self.console.print(text, markup=False)

    def trial_ended(self, end: TrialEnd) -> None:
        self._stop_bar()
        record = end.record
        status = STATUS_NAMES.get(record.status, record.status.lower())
        if record.status == "FAILED":
            outcome = f"failed: {record.message or 'no reason recorded'}"
        elif record.status == "PRUNED" and record.message:
            outcome = f"pruned {record.message}"
        else:
            outcome = (f"{status}: val_accuracy {percent(record.best_val_accuracy)} (best epoch {record.best_epoch} "
                       f"of {record.epochs_run})")
        best = (f"; best so far {percent(end.best.score)} (trial {trial_number(end.best.trial_id)})"
                if end.best is not None else "")
        left = f"; about {duration(end.seconds_left)} left" if end.seconds_left is not None else ""
        self.line(f"trial {end.index}/{end.total} {outcome} in {duration(record.wall_time_s)}{best}{left}")

    def step(self, text: str) -> None:
        self._stop_bar()
        self.line(text)

    # --- the bar -------------------------------------------------------------------------------

    def _start_bar(self, label: str, epochs: int, steps_per_epoch: int) -> None:
        self._stop_bar()
        self.label, self.epochs, self.steps_per_epoch = label, epochs, steps_per_epoch
        self.epoch_seconds = []
        if not self.live:
            return
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("steps"), TimeElapsedColumn(), console=self.console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task(f"{label} epoch 1/{epochs}", total=epochs * steps_per_epoch)

    def _stop_bar(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        self.bar, self.task = None, None

    def close(self) -> None:
        self._stop_bar()

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
