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
:mod:`kmnist_search.data.record` (which reads the results.json of every older schema too).
"""

from __future__ import annotations

import builtins
import io
import json
import re
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kmnist_search.base.errors import RunError
from kmnist_search.base.files import (
    atomic_write_bytes,
    atomic_write_json,
    check_writable_directory,
    exclusive_lock,
    remove_leftovers,
)
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


@dataclass(frozen=True)
class TestPredictions:
    """The winner's single evaluation on the test set, as kept for the reports."""

    labels: np.ndarray
    probabilities: np.ndarray
    first_images: np.ndarray  # the first 100 test images, for the prediction grid


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

    # --- creating and resuming -------------------------------------------------------------------

    def prepare(self, record: dict[str, Any], overwrite: bool) -> None:
        """Create the directory (emptied first with ``overwrite``), or check that a resumed run searches
        what ``record`` says (the space's fingerprint, strategy, seeds, teacher)."""
        if overwrite and (self.path.exists() or self.path.is_symlink()):
            if not self.is_run():
                raise RunError(f"--overwrite refuses to delete {self.path}: it is not a kmnist-search run "
                               f"directory; choose another --name or remove it yourself")
            for child in self.path.iterdir():  # the lock stays: this process holds it
                if child.name != LOCK_FILE:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        if self.path.is_symlink() or (self.path.exists() and not self.is_run()):
            self.prepare_refusal()
        check_writable_directory(self.path, "--project-dir")
        self.check_state_files()
        record_path = self.path / SPACE_RECORD_FILE
        if not record_path.exists() or read_json(record_path) is None:
            atomic_write_json(record_path, record)
            return
        self.check_same_search(record)

    def check_same_search(self, record: dict[str, Any]) -> None:
        """Refuse, in one line naming what changed, a search other than the one this run records."""
        previous = read_json(self.path / SPACE_RECORD_FILE) or {}
        if previous != record:
            changed = sorted(k for k in record["space"] if previous.get("space", {}).get(k) != record["space"][k])
            changed += [k for k in ("strategy", "seed", "init_seed", "teacher") if previous.get(k) != record.get(k)]
            recorded_pruning = previous.get("space", {}).get("pruning", {}).get("strategy")
            if changed == ["pruning"] and recorded_pruning:
                raise RunError(f"{self.path} holds a run searched with {recorded_pruning} pruning: pass --prune "
                               f"{recorded_pruning} to resume it (and its warm-up and minimum trials if they were "
                               f"set), --overwrite to start afresh, or --name to start a new run")
            raise RunError(f"{self.path} holds a run with a different search ({', '.join(changed) or 'settings'} "
                           f"changed): pass --overwrite to start afresh or --name to start a new run")

    def search_record(self) -> dict[str, Any]:
        """What the run searches, as its space.json records it (empty before it is written)."""
        return read_json(self.path / SPACE_RECORD_FILE) or {}

    def prepare_refusal(self) -> None:
        """Refuse a folder that is not a run (or a link), naming a damaged state file if it is a damaged run."""
        if not self.path.is_symlink() and (self.path / SPACE_RECORD_FILE).is_file():
            self.check_state_files()  # a run whose record is damaged: name the damaged file
        raise RunError(f"{self.path} holds files that are not a kmnist-search run: choose another --name or "
                       f"--project-dir (nothing in it was changed)")

    def check_state_files(self) -> None:
        """Refuse, in one line naming the file, a run whose state files (space.json, oracle.json, the
        tuners' files, every trial.json) are not whole JSON objects (results.json: see read_results). They are written
        atomically, so only something outside this package truncates or edits them."""
        candidates = [self.path / SPACE_RECORD_FILE, self.path / "oracle.json",
                      *self.path.glob("trial_*/trial.json"), *self.path.glob("*.json")]
        for path in dict.fromkeys(candidates):
            if path != self.results_path and path.is_file() and read_json(path) is None:
                raise RunError(f"{path} is truncated or not a JSON object: restore it, or pass --overwrite to "
                               f"start the run afresh")

    def is_run(self) -> bool:
        """True for a real directory (not a link) holding this package's record of what it searches, or
        empty (a run killed before it wrote its record)."""
        if not self.path.is_dir() or self.path.is_symlink():
            return False
        record = read_json(self.path / SPACE_RECORD_FILE)
        return (record is not None and {"space", "strategy", "seed"} <= record.keys()) or not any(
            path.name != LOCK_FILE for path in self.path.iterdir())

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run for this process (searching, exporting, reporting): a second process that runs the
        same name at once is refused in one line naming the first. Created, if need be, only as a run."""
        if self.path.is_symlink() or (self.path.exists() and not self.is_run()):
            self.prepare_refusal()
        self.path.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path / LOCK_FILE, f"run {self.path}"):
            yield

    def remove_leftovers(self) -> list[Path]:
        """Delete what killed writers of this run left behind, and nothing else: this package's temporary
        files and folders (see :mod:`kmnist_search.base.files`) and Keras Tuner trial folders that never
        received their ``trial.json``. Only in a run directory, while no other process writes here."""
        if not self.is_run():
            raise RunError(f"{self.path} is not a kmnist-search run directory: nothing in it is removed")
        removed = remove_leftovers(self.path)
        for trial_dir in self.path.glob("trial_*"):
            if (TRIAL_DIR_PATTERN.fullmatch(trial_dir.name) and trial_dir.is_dir() and not trial_dir.is_symlink()
                    and not (trial_dir / "trial.json").exists()):
                shutil.rmtree(trial_dir, ignore_errors=True)
                removed.append(trial_dir)
        return removed

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

    # --- the winner's test evaluation ---------------------------------------------------------------

    def write_test_predictions(self, labels: np.ndarray, probabilities: np.ndarray, images: np.ndarray) -> None:
        """Keep the labels, probabilities and the first 100 images (plain arrays, no pickles)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, labels=labels, probabilities=probabilities, first_images=images[:100])
        atomic_write_bytes(self.test_predictions_path, buffer.getvalue())

    def read_test_predictions(self) -> TestPredictions | None:
        if not self.test_predictions_path.is_file():
            return None
        try:
            with np.load(self.test_predictions_path, allow_pickle=False) as data:
                return TestPredictions(data["labels"], data["probabilities"], data["first_images"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
            raise RunError(f"{self.test_predictions_path} is damaged ({str(error)[:120] or type(error).__name__}): "
                           f"delete it (the report then leaves out the winner's test results), or search again "
                           f"with --overwrite") from None
