"""The run directory: its layout, and reading and writing everything in it (no TensorFlow).

``PROJECT_DIR/NAME`` is a Keras Tuner project (``oracle.json``, ``trial_*/trial.json`` and checkpoints)
plus the files kmnist-search writes::

    space.json                   what is searched (checked when a run is resumed)
    trial_*/trial_log.json       every epoch's metrics and seconds, written as the trial trains
    trial_*/pruned.json          why median stopping ended the trial, if it did
    trial_*/resume/              the trial's training state after its last epoch, until it is recorded
    retrain_log.json             the winner's retraining epochs (spaces with retrain_epochs)
    retrain_best.weights.h5      the retraining's best epoch so far
    retrain_resume/              the retraining's state after its last epoch, until results.json
    winner.keras                 the winner, evaluated once on the test set
    winner_test_predictions.npz  that evaluation: labels, probabilities, the first 100 images
    results.json                 the trials, the winner, its effective settings and test figures
    report/                      the report pages (README.md, index.html) and figures

Older run directories stay readable: :meth:`RunDir.read_results` upgrades a results.json of schema
version 1 in memory.
"""

from __future__ import annotations

import builtins
import io
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kmnist_search.errors import RunError
from kmnist_search.files import (
    atomic_write_bytes,
    atomic_write_json,
    check_writable_directory,
    exclusive_lock,
    remove_leftovers,
)
from kmnist_search.spaces import BOOLEAN_HYPERPARAMETERS, SGD_MOMENTUM, SearchSpace, parse_space, used_by_network

RESULTS_SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"
RESULTS_KEYS = frozenset({"run_name", "strategy", "seed", "space", "dataset", "trials", "winner"})
SPACE_RECORD_FILE = "space.json"
TRIAL_LOG_FILE = "trial_log.json"
PRUNED_FILE = "pruned.json"
RETRAIN_LOG_FILE = "retrain_log.json"
RETRAIN_BEST_WEIGHTS_FILE = "retrain_best.weights.h5"
RESUME_DIR = "resume"  # inside a trial directory
RETRAIN_RESUME_DIR = "retrain_resume"
WINNER_MODEL_FILE = "winner.keras"
TEST_PREDICTIONS_FILE = "winner_test_predictions.npz"
REPORT_DIR = "report"
HTML_PAGE = "index.html"  # the report's self-contained HTML page, in REPORT_DIR
TENSORBOARD_DIR = "tensorboard"
HYPERBAND_BOOKKEEPING = "tuner/"  # Hyperband's own entries (bracket, round, epochs), not hyperparameters
LOCK_FILE = ".kmnist-search.lock"  # held while a process searches, exports or reports this run
TRIAL_DIR_PATTERN = re.compile(r"trial_\d+")  # Keras Tuner's trial folders: trial_0, trial_00, ...
SCORED_STATUSES = ("COMPLETED", "PRUNED")  # pruned trials count with the score they had reached


@dataclass
class TrialRecord:
    """One trial as the run directory records it."""

    trial_id: str
    hyperparameters: dict[str, Any]
    status: str
    best_val_accuracy: float | None
    best_val_loss: float | None
    best_epoch: int | None
    epochs_run: int
    wall_time_s: float | None
    message: str | None
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_balanced_accuracy: float | None = None  # tracked when it is the objective (K49)

    @property
    def score(self) -> float | None:
        """What the search maximised: balanced accuracy where tracked, else accuracy."""
        return self.best_val_balanced_accuracy if self.best_val_balanced_accuracy is not None \
            else self.best_val_accuracy

    @classmethod
    def from_trial_json(cls, state: dict[str, Any], log: dict[str, Any] | None,
                        pruned: dict[str, Any] | None = None) -> TrialRecord:
        """Combine Keras Tuner's trial state with our per-epoch log (either may be partial) and the
        median-stopping record, if the trial was pruned."""
        metrics = state.get("metrics", {}).get("metrics", {})
        history = list((log or {}).get("epochs", []))
        val_accuracy = _best(metrics, "val_accuracy", max)
        val_loss = _best(metrics, "val_loss", min)
        best_epoch = None
        if history:
            accuracies = [e.get("val_accuracy", float("-inf")) for e in history]
            best_index = max(range(len(history)), key=accuracies.__getitem__)
            best_epoch = int(history[best_index]["epoch"])
            if val_accuracy is None and state.get("status") != "FAILED":
                val_accuracy = history[best_index].get("val_accuracy")
                val_loss = history[best_index].get("val_loss")
        status = str(state.get("status", "UNKNOWN"))
        message = message_gist(state.get("message"))
        if pruned and status == "COMPLETED":
            status = "PRUNED"
            threshold = pruned.get("threshold", pruned.get("median", float("nan")))  # "median": before other rules
            message = (f"at epoch {pruned['epoch']}: best {pruned['value'] * 100:.2f}% below the "
                       f"{pruned.get('rule', 'median')} {threshold * 100:.2f}% of {pruned['trials_compared']} trials")
        return cls(
            trial_id=str(state.get("trial_id")),
            hyperparameters={name: bool(value) if name in BOOLEAN_HYPERPARAMETERS else value
                             for name, value in state.get("hyperparameters", {}).get("values", {}).items()
                             if not name.startswith(HYPERBAND_BOOKKEEPING)},
            status=status,
            best_val_accuracy=val_accuracy,
            best_val_loss=val_loss,
            best_epoch=best_epoch,
            epochs_run=len(history),
            wall_time_s=(log or {}).get("wall_time_s"),
            message=message,
            history=history,
            best_val_balanced_accuracy=_best(metrics, "val_balanced_accuracy", max),
        )

    def to_dict(self, with_history: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_history:
            data.pop("history")
        return data


def failed_for_the_environment(message: str | None) -> bool:
    """True when a failed trial's recorded traceback ends in an OSError (of any kind, h5py's included):
    a full disk, a file size limit, a damaged file; not the configuration's own failure."""
    if not message or not message.strip():
        return False
    last = message.strip().splitlines()[-1]
    match = re.match(r"^(?:[\w.]*\.)?(\w+)(?::|$)", last)
    error = getattr(builtins, match.group(1), None) if match else None
    return isinstance(error, type) and issubclass(error, OSError)


def message_gist(message: str | None) -> str | None:
    """The last line of a failed trial's traceback, without the exception's module path."""
    if not message or not message.strip():
        return None
    last = message.strip().splitlines()[-1]
    return re.sub(r"^[\w.]*(Error|Exception): ", "", last)


def _best(metrics: dict[str, Any], name: str, pick: Any) -> float | None:
    observations = metrics.get(name, {}).get("observations", [])
    values = [value for obs in observations for value in obs.get("value", [])]
    return float(pick(values)) if values else None


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
            raise RunError(f"{self.path} holds a run with a different search ({', '.join(changed) or 'settings'} "
                           f"changed): pass --overwrite to start afresh or --name to start a new run")

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
        files and folders (see :mod:`kmnist_search.files`) and Keras Tuner trial folders that never
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

    def trials(self) -> list[TrialRecord]:
        """All trials so far, in trial order (works on running and interrupted runs too)."""
        records = []
        for trial_dir in self.trial_dirs():
            state = read_json(trial_dir / "trial.json")
            if state is None:
                continue  # a trial file being written right now; the next look will see it
            records.append(TrialRecord.from_trial_json(state, read_json(self.trial_log_path(trial_dir)),
                                                       read_json(self.pruned_path(trial_dir))))
        return records

    def trial_logs(self, except_dir: Path | None = None) -> list[dict[str, Any]]:
        """Every other trial's epoch log so far (what pruning compares with)."""
        logs = []
        for log_path in self.path.glob(f"trial_*/{TRIAL_LOG_FILE}"):
            if except_dir is not None and log_path.parent == except_dir:
                continue
            log = read_json(log_path)
            if log is not None and isinstance(log.get("epochs"), list):
                logs.append(log)
        return logs

    # --- results -------------------------------------------------------------------------------------

    def write_results(self, results: dict[str, Any]) -> None:
        atomic_write_json(self.results_path, results)

    def read_results(self) -> dict[str, Any] | None:
        """results.json (upgraded to the current schema), or None while the search has not finished."""
        if not self.results_path.is_file():
            return None
        results = read_json(self.results_path)
        missing = sorted(RESULTS_KEYS - results.keys()) if results is not None else []
        if results is None or missing:
            problem = "is truncated or not a JSON object" if results is None else f"lacks {', '.join(missing)}"
            raise RunError(f"{self.results_path} {problem}: delete it and rerun the search's command to write it "
                           f"again (finished trials are kept)")
        return upgrade_results(results)

    def require_results(self) -> dict[str, Any]:
        """results.json of a finished run, with a one-line error naming the fix when it is missing."""
        results = self.read_results()
        if results is None:
            raise RunError(f"{self.results_path} is missing: finish the search first "
                           f"(`python -m kmnist_search.run ...` with the same --name)")
        return results

    def record_export(self, export: dict[str, Any]) -> None:
        """Note in results.json where the run's winner was exported."""
        results = self.require_results()
        results["export"] = export
        self.write_results(results)

    # --- the winner's test evaluation ---------------------------------------------------------------

    def write_test_predictions(self, labels: np.ndarray, probabilities: np.ndarray, images: np.ndarray) -> None:
        """Keep the labels, probabilities and the first 100 images (plain arrays, no pickles)."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, labels=labels, probabilities=probabilities, first_images=images[:100])
        atomic_write_bytes(self.test_predictions_path, buffer.getvalue())

    def read_test_predictions(self) -> TestPredictions | None:
        if not self.test_predictions_path.is_file():
            return None
        with np.load(self.test_predictions_path, allow_pickle=False) as data:
            return TestPredictions(data["labels"], data["probabilities"], data["first_images"])


def upgrade_results(results: dict[str, Any]) -> dict[str, Any]:
    """A results.json of an older schema in today's shape: version 1 had no effective settings for the
    winner; they are resolved from its recorded space, as the search resolved them."""
    version = results.get("schema_version", 1)
    if version == RESULTS_SCHEMA_VERSION:
        return results
    if version != 1:
        raise RunError(f"results.json has schema version {version}, newer than this kmnist-search reads "
                       f"({RESULTS_SCHEMA_VERSION}): upgrade kmnist-search")
    space_record = dict(results["space"])
    space = parse_space(_space_file_from_fingerprint(space_record), source=space_record.get("source", "<results>"))
    winner = results["winner"]
    trial = next((t for t in results["trials"] if t["trial_id"] == winner["trial_id"]), None)
    retrained = winner.get("retrained")
    settings = training_settings(
        space, winner["hyperparameters"], optimizer=None,
        search_trial={"trial_id": winner["trial_id"], "epochs_planned": space.epochs,
                      "epochs_trained": trial["epochs_run"] if trial else None,
                      "best_epoch": trial["best_epoch"] if trial else None,
                      "train_images": results["dataset"]["train_images"],
                      "validation_accuracy": winner.get("search_val_accuracy", winner["val_accuracy"])},
        retraining=None if not retrained else {
            "epochs_planned": space.retrain_epochs, "epochs_trained": retrained["epochs_run"],
            "best_epoch": retrained["best_epoch"], "train_images": retrained["train_images"],
            "validation_accuracy": retrained["best_val_accuracy"], "wall_time_s": retrained.get("wall_time_s")},
        seed=results["seed"], init_seed=results.get("init_seed"), teacher=results.get("teacher"),
    )
    upgraded = {**results, "schema_version": RESULTS_SCHEMA_VERSION}
    upgraded["winner"] = {**winner, "settings": settings}
    return upgraded


def _space_file_from_fingerprint(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A space fingerprint (as space.json and results.json keep it) as the TOML tables it came from."""
    keys = ("optimizer", "epochs", "validation_images", "early_stopping_patience", "lr_schedule", "retrain_epochs")
    training: dict[str, Any] = {key: fingerprint[key] for key in keys if key in fingerprint}
    if fingerprint.get("train_images") is not None:
        training["train_images"] = fingerprint["train_images"]
    file: dict[str, Any] = {"name": fingerprint["name"], "hyperparameters": fingerprint["hyperparameters"],
                            "training": training}
    if "pruning" in fingerprint:
        file["pruning"] = fingerprint["pruning"]
    return file


def optimizer_settings(name: str, learning_rate: float) -> dict[str, Any]:
    """What is known of an optimizer without building it: its name and learning rate (SGD's momentum)."""
    return {"name": name, "learning_rate": learning_rate, **({"momentum": SGD_MOMENTUM} if name == "sgd" else {})}


def learning_rate_schedule(name: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """How the learning rate moved during training, as the card records it."""
    rate = hyperparameters["learning_rate"]
    shape = ({"name": "cosine", "initial_learning_rate": rate, "final_learning_rate": 0.0,
              "over": "each training's planned epochs after the warm-up, per epoch"}
             if name == "cosine" else {"name": "constant", "learning_rate": rate})
    return {**shape, "warmup_epochs": hyperparameters.get("warmup_epochs", 0)}


def training_settings(space: SearchSpace, values: dict[str, Any], optimizer: dict[str, Any] | None,
                      search_trial: dict[str, Any], retraining: dict[str, Any] | None, seed: int,
                      init_seed: int | None, teacher: dict[str, Any] | None) -> dict[str, Any]:
    """How a model was trained, every default resolved: the record results.json keeps for the winner
    and every model card copies (one member's ``training`` section)."""
    hyperparameters = space.effective_hyperparameters(values)
    return {
        "search_space": space.name,
        "hyperparameters": used_by_network(hyperparameters),
        "optimizer": optimizer or optimizer_settings(hyperparameters["optimizer"], hyperparameters["learning_rate"]),
        "learning_rate_schedule": learning_rate_schedule(space.lr_schedule, hyperparameters),
        "early_stopping_patience": space.early_stopping_patience or None,
        "validation_images": space.validation_images,
        "seeds": {"split": seed, "weights": seed if init_seed is None else init_seed},
        "search_trial": search_trial,
        "retraining": retraining,
        "teacher": teacher,
    }
