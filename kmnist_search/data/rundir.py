"""The run directory: its layout, creating, resuming and locking it (no TensorFlow).

``PROJECT_DIR/NAME`` is a Keras Tuner project (``oracle.json``, ``trial_*/trial.json`` and checkpoints)
plus the files kmnist-search writes::

    space.json                   what is searched (checked when a run is resumed)
    trial_*/trial_log.json       every epoch's metrics and seconds, written as the trial trains
    trial_*/pruned.json          why a pruning rule stopped the trial, if one did
    trial_*/resume/              the trial's training state after its last epoch, until it is recorded
    retrain_log.json             the winner's retraining epochs (spaces with retrain_epochs)
    retrain_best.weights.h5      the retraining's best epoch so far
    retrain_resume/              the retraining's state after its last epoch, until results.json
    winner.keras                 the winner, evaluated once on the test set
    winner_test_predictions.npz  that evaluation: labels, probabilities, the first 100 images
    results.json                 the trials, the winner, its effective settings and test figures
    report/                      the report pages (README.md, index.html) and figures

results.json and the per-trial files are the run record: their formats, reading and writing belong to
:mod:`kmnist_search.data.record` (which reads the results.json of every older schema too). Which folders a
search may create, resume, empty or clean, and holding them: :mod:`kmnist_search.data.run_guard`. The test
evaluation's file: :mod:`kmnist_search.data.test_predictions`.
"""

from __future__ import annotations

import builtins
import json
import re
from pathlib import Path
from typing import Any

from kmnist_search.base.errors import RunError
from kmnist_search.data.record import (
    DEPLOYMENT_FILE,
    PRUNED_FILE,
    RESULTS_FILE,
    TRIAL_LOG_FILE,
    ExportRecord,
    RunRecord,
    TrainingLog,
    Trial,
    read_deployment,
    read_prune_record,
    read_results,
    read_training_log,
    write,
)

SPACE_RECORD_FILE = "space.json"
RETRAIN_LOG_FILE = "retrain_log.json"
RETRAIN_BEST_WEIGHTS_FILE = "retrain_best.weights.h5"
RESUME_DIR = "resume"  # inside a trial directory
RETRAIN_RESUME_DIR = "retrain_resume"
WINNER_MODEL_FILE = "winner.keras"
TEST_PREDICTIONS_FILE = "winner_test_predictions.npz"
REPORT_DIR = "report"
HTML_PAGE = "index.html"  # the report's self-contained HTML page, in REPORT_DIR
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".kmnist-search.lock"  # held while a process searches, exports or reports this run
TRIAL_DIR_PATTERN = re.compile(r"trial_\d+")  # Keras Tuner's trial folders: trial_0, trial_00, ...


def failed_for_the_environment(message: str | None) -> bool:
    """True when a failed trial's recorded traceback ends in an OSError (of any kind, h5py's included):
    a full disk, a file size limit, a damaged file; not the configuration's own failure."""
    for line in reversed((message or "").strip().splitlines()):  # an error's text may span lines (h5py's do)
        match = re.match(r"^(?:[\w.]*\.)?(\w+)(?::|$)", line)
        error = getattr(builtins, match.group(1), None) if match else None
        if isinstance(error, type) and issubclass(error, BaseException):
            return issubclass(error, OSError)
    return False


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or being written right now."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


class RunDir:
    """One run directory: where each file lives, and reading and writing them."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.results_path = self.path / RESULTS_FILE
        self.winner_model_path = self.path / WINNER_MODEL_FILE
        self.test_predictions_path = self.path / TEST_PREDICTIONS_FILE
        self.retrain_log_path = self.path / RETRAIN_LOG_FILE
        self.retrain_best_weights_path = self.path / RETRAIN_BEST_WEIGHTS_FILE
        self.retrain_resume_dir = self.path / RETRAIN_RESUME_DIR
        self.report_dir = self.path / REPORT_DIR
        self.tensorboard_dir = self.path / TENSORBOARD_DIR

    @classmethod
    def existing(cls, path: Path | str) -> RunDir:
        """A run directory that must exist (one-line error otherwise)."""
        run_dir = cls(path)
        if not run_dir.path.is_dir():
            raise RunError(f"{run_dir.path} is not a run directory: pass e.g. runs/quick-grid")
        return run_dir

    @staticmethod
    def trial_log_path(trial_dir: Path) -> Path:
        return trial_dir / TRIAL_LOG_FILE

    @staticmethod
    def pruned_path(trial_dir: Path) -> Path:
        return trial_dir / PRUNED_FILE

    @staticmethod
    def deployment_path(trial_dir: Path) -> Path:
        return trial_dir / DEPLOYMENT_FILE

    @staticmethod
    def trial_resume_dir(trial_dir: Path) -> Path:
        """Where a trial's training state is saved after every epoch, until the trial is recorded."""
        return trial_dir / RESUME_DIR

    def search_record(self) -> dict[str, Any]:
        """What the run searches, as its space.json records it (empty before it is written)."""
        return read_json(self.path / SPACE_RECORD_FILE) or {}

    def is_finished(self) -> bool:
        """True once the search has written its results (winner evaluated)."""
        return self.results_path.is_file()

    # --- trials ------------------------------------------------------------------------------------

    def trial_dirs(self) -> list[Path]:
        return sorted(path.parent for path in self.path.glob("trial_*/trial.json"))

    def trials(self) -> list[Trial]:
        """All trials so far, in trial order (works on running and interrupted runs too)."""
        records = []
        for trial_dir in self.trial_dirs():
            state = read_json(trial_dir / "trial.json")
            if state is None:
                continue  # Keras Tuner writes trial.json in place: a file being written; the next look sees it
            records.append(Trial.from_keras_tuner(state, read_training_log(self.trial_log_path(trial_dir)),
                                                  read_prune_record(self.pruned_path(trial_dir)),
                                                  trial_dir / "trial.json",
                                                  read_deployment(self.deployment_path(trial_dir))))
        return records

    def trial_logs(self, except_dir: Path | None = None) -> list[TrainingLog]:
        """Every other trial's epoch log so far (what pruning compares with)."""
        logs = []
        for trial_dir in sorted(path.parent for path in self.path.glob(f"trial_*/{TRIAL_LOG_FILE}")):
            log = read_training_log(self.trial_log_path(trial_dir)) if trial_dir != except_dir else None
            if log is not None:
                logs.append(log)
        return logs

    # --- results -------------------------------------------------------------------------------------

    def write_results(self, results: RunRecord) -> None:
        write(self.results_path, results)

    def read_results(self) -> RunRecord | None:
        """results.json (upgraded to the current schema), or None while the search has not finished."""
        return read_results(self.results_path)

    def require_results(self) -> RunRecord:
        """results.json of a finished run, with a one-line error naming the fix when it is missing."""
        results = self.read_results()
        if results is None:
            raise RunError(f"{self.results_path} is missing: finish the search first "
                           f"(`python -m kmnist_search.run ...` with the same --name)")
        return results

    def record_export(self, export: ExportRecord) -> None:
        """Note in results.json where the run's winner was exported."""
        self.write_results(self.require_results().model_copy(update={"export": export}))
