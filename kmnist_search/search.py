"""Strategy name -> Keras Tuner tuner; run (or resume) a search, evaluate the winner once on the test set.

A run directory ``PROJECT_DIR/NAME`` is the Keras Tuner project (oracle and trial files) plus our own
files: ``space.json`` (what was searched, checked on resume), ``winner.keras`` and ``results.json``.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import platform
import shutil
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
from keras_tuner.src import utils as keras_tuner_utils
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score

from kmnist_search.datasets import Dataset, Split, one_hot, split_train_validation
from kmnist_search.distillation import Teacher, training_targets
from kmnist_search.distributed import PatientOracleClient, current_role, tuner_id
from kmnist_search.errors import RunError
from kmnist_search.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from kmnist_search.hypermodel import KmnistHyperModel, search_hyperparameters, to_model_input
from kmnist_search.plan import STRATEGIES, planned_trials
from kmnist_search.reports import (
    PRUNED_FILE,
    RETRAIN_LOG_FILE,
    SCORED_STATUSES,
    TEST_PREDICTIONS_FILE,
    TRIAL_LOG_FILE,
    collect_trials,
    message_gist,
)
from kmnist_search.spaces import Pruning, SearchSpace

RESULTS_SCHEMA_VERSION = 1


def _save_json_atomically(path: str, obj: Any) -> str:
    """Keras Tuner's ``utils.save_json`` (used for oracle.json, tuner0.json and every trial.json),
    made atomic: killed mid-write, it leaves the previous file intact, never a truncated one."""
    text = json.dumps(obj)
    atomic_write_text(Path(path), text)
    return text


# keras-tuner 1.4.x writes its state files in place; a SIGKILL mid-write would leave a truncated
# JSON file and the run could never be resumed. Every Stateful.save goes through this function.
keras_tuner_utils.save_json = _save_json_atomically


@dataclass(frozen=True)
class SearchOptions:
    """Everything a search needs besides the data and the space."""

    strategy: str
    project_dir: Path
    name: str
    seed: int = 42
    max_trials: int | None = None
    overwrite: bool = False
    verbose: int = 1
    tensorboard: bool = False
    teacher: Teacher | None = None
    init_seed: int | None = None

    @property
    def weights_seed(self) -> int:
        """Seeds initial weights, shuffling and augmentation: ``init_seed`` if given, else ``seed``
        (which always seeds the validation split and the trial order)."""
        return self.seed if self.init_seed is None else self.init_seed


def untried_configurations(oracle: kt.Oracle, trial_id: str) -> list[dict[str, Any]]:
    """Every configuration of the oracle's all-Choice space that no other trial has taken, in grid order."""
    taken = {_values_key(trial.hyperparameters.values) for tid, trial in oracle.trials.items() if tid != trial_id}
    space = oracle.get_space().space
    names = [hp.name for hp in space]
    configurations = (dict(zip(names, combination, strict=True))
                      for combination in itertools.product(*(hp.values for hp in space)))
    return [values for values in configurations if _values_key(values) not in taken]


def _values_key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


class ResumableGridSearchOracle(kt.oracles.GridSearchOracle):
    """Grid search that derives the next configuration from the stored trials alone.

    keras-tuner 1.4.8's GridSearchOracle keeps its position in state it never saves, so a
    resumed grid search crashes (upstream issue #1055). Here every call walks the full grid in
    order and returns the first configuration no trial has taken, which resumes correctly.
    """

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        untried = untried_configurations(self, trial_id)
        if untried:
            return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": untried[0]}
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
        untried = untried_configurations(self, trial_id)
        if _values_key(response["values"]) in {_values_key(values) for values in untried}:
            return response
        if not untried:
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        return {"status": kt.engine.trial.TrialStatus.RUNNING,
                "values": untried[self._random_state.randint(len(untried))]}


class EpochLogger(keras.callbacks.Callback):
    """Write every epoch's metrics and seconds to a trial's ``trial_log.json`` as it goes."""

    def __init__(self, log_path: Path) -> None:
        super().__init__()
        self.log_path = log_path
        self.started = time.monotonic()
        self.epoch_started = self.started
        self.epochs: list[dict[str, float]] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        entry = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
                 "seconds": round(time.monotonic() - self.epoch_started, 2)}
        self.epochs.append(entry)
        self.write()

    def write(self) -> None:
        atomic_write_json(self.log_path, {"epochs": self.epochs, "tuner_id": tuner_id(),
                                          "wall_time_s": round(time.monotonic() - self.started, 2)})


class MedianStopping(keras.callbacks.Callback):
    """Stop a trial whose best validation score so far is below the median of the other trials' best
    scores at the same epoch (Optuna's MedianPruner), reading their ``trial_log.json`` files, so it
    works the same for every strategy and across processes. Records ``pruned.json`` when it stops."""

    def __init__(self, trial_dir: Path, monitor: str, pruning: Pruning) -> None:
        super().__init__()
        self.trial_dir = trial_dir
        self.monitor = monitor
        self.pruning = pruning
        self.best = float("-inf")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.best = max(self.best, float((logs or {}).get(self.monitor, float("-inf"))))
        reached = epoch + 1
        if reached <= self.pruning.warmup_epochs:
            return
        others = [best for best in self._others_best_at(reached) if math.isfinite(best)]
        if len(others) < self.pruning.min_trials:
            return
        median = float(np.median(others))
        if self.best < median:
            self.model.stop_training = True
            atomic_write_json(self.trial_dir / PRUNED_FILE, {
                "epoch": reached, "value": self.best, "median": median, "trials_compared": len(others)})

    def _others_best_at(self, epoch: int) -> list[float]:
        bests = []
        for log_path in self.trial_dir.parent.glob(f"trial_*/{TRIAL_LOG_FILE}"):
            if log_path.parent == self.trial_dir:
                continue
            try:
                epochs = json.loads(log_path.read_text())["epochs"]
            except (OSError, json.JSONDecodeError, KeyError):
                continue
            if len(epochs) >= epoch:
                bests.append(max(float(e.get(self.monitor, float("-inf"))) for e in epochs[:epoch]))
        return bests


class TrialRecorder:
    """Mixin for tuners: log each trial's epochs and wall time beside its trial.json, and apply the
    median-stopping rule when the space asks for it."""

    trial_seed_base = 0
    pruning: Pruning | None = None
    monitor = "val_accuracy"

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> Any:
        # Seed per trial, so a trial rerun after a crash starts from the same weights as it would have.
        keras.utils.set_random_seed(self.trial_seed_base + int(trial.trial_id))
        trial_dir = Path(self.get_trial_dir(trial.trial_id))  # type: ignore[attr-defined]
        log_path = trial_dir / TRIAL_LOG_FILE
        log_path.unlink(missing_ok=True)  # a trial rerun after a crash starts its log afresh
        (trial_dir / PRUNED_FILE).unlink(missing_ok=True)
        started = time.monotonic()
        # Keras Tuner deep-copies callbacks per execution, so the copies write the files.
        extra: list[keras.callbacks.Callback] = [EpochLogger(log_path)]
        if self.pruning and self.pruning.strategy == "median":
            extra.insert(0, MedianStopping(trial_dir, self.monitor, self.pruning))
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), *extra]
        try:
            return super().run_trial(trial, *args, **kwargs)  # type: ignore[misc]
        finally:
            log = json.loads(log_path.read_text()) if log_path.is_file() else {"epochs": []}
            log["wall_time_s"] = round(time.monotonic() - started, 2)
            atomic_write_json(log_path, log)


class KmnistTuner(TrialRecorder, kt.Tuner):
    """A plain Keras Tuner tuner (any oracle) that logs its trials."""


class KmnistHyperband(TrialRecorder, kt.Hyperband):
    """Keras Tuner's Hyperband that logs its trials."""


def make_tuner(hypermodel: KmnistHyperModel, space: SearchSpace, options: SearchOptions) -> kt.Tuner:
    """Build the Keras Tuner tuner for a strategy name, maximising the dataset's validation metric."""
    hyperparameters = search_hyperparameters(space)
    common: dict[str, Any] = {
        "objective": kt.Objective(f"val_{hypermodel.objective}", direction="max"),
        "hyperparameters": hyperparameters,
        "tune_new_entries": False,
        "allow_new_entries": False,
        "seed": options.seed,
        "max_consecutive_failed_trials": 3,
    }
    project = {"directory": str(options.project_dir), "project_name": options.name, "overwrite": options.overwrite}
    trials = planned_trials(space, options.strategy, options.max_trials)
    tuner: kt.Tuner
    if options.strategy == "hyperband":
        tuner = KmnistHyperband(hypermodel, max_epochs=space.epochs, factor=3, **common, **project)
    else:
        if options.strategy == "grid":
            oracle: kt.Oracle = ResumableGridSearchOracle(max_trials=trials, **common)
        elif options.strategy == "random":
            oracle = kt.oracles.RandomSearchOracle(max_trials=trials, **common)
        elif options.strategy == "bayesian":
            oracle = NonRepeatingBayesianOracle(max_trials=trials, num_initial_points=min(3, trials), **common)
        else:
            raise RunError(f"unknown strategy {options.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        tuner = KmnistTuner(oracle=oracle, hypermodel=hypermodel, **project)
        tuner.pruning = space.pruning  # Hyperband prunes by its own rule instead
        tuner.monitor = f"val_{hypermodel.objective}"
    tuner.trial_seed_base = options.weights_seed
    if current_role() == "worker":
        tuner.oracle = PatientOracleClient(tuner.oracle)
    return tuner


def prepare_run_dir(run_dir: Path, space: SearchSpace, options: SearchOptions) -> None:
    """Create the run directory, or check that a resumed run searches the same thing."""
    record: dict[str, Any] = {"space": space.fingerprint(), "strategy": options.strategy, "seed": options.seed}
    if options.teacher:
        record["teacher"] = options.teacher.describe()
    if options.init_seed is not None:
        record["init_seed"] = options.init_seed
    record_path = run_dir / "space.json"
    if options.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise RunError(f"cannot write to {run_dir} ({error.strerror}): choose another --project-dir") from None
    if record_path.exists():
        previous = json.loads(record_path.read_text())
        if previous != record:
            changed = sorted(k for k in record["space"] if previous.get("space", {}).get(k) != record["space"][k])
            changed += [k for k in ("strategy", "seed", "init_seed", "teacher") if previous.get(k) != record.get(k)]
            raise RunError(f"{run_dir} holds a run with a different search ({', '.join(changed) or 'settings'} "
                           f"changed): pass --overwrite to start afresh or --name to start a new run")
    else:
        atomic_write_json(record_path, record)


def search_callbacks(run_dir: Path, options: SearchOptions) -> list[keras.callbacks.Callback]:
    """Callbacks for every trial. With TensorBoard, Keras Tuner gives each trial its own log directory
    and records its hyperparameters for the HParams dashboard (``tensorboard --logdir RUN_DIR/tensorboard``)."""
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    if options.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    return callbacks


def run_search(dataset: Dataset, space: SearchSpace, options: SearchOptions) -> dict[str, Any] | None:
    """Run or resume a search, evaluate the winner once on the test set and write results.json.

    In a distributed search (see :mod:`kmnist_search.distributed`) a worker only runs the trials the
    chief hands it and returns None; the chief waits for every trial, then does the rest.
    """
    role = current_role()
    if role == "worker" and options.overwrite:
        raise RunError("--overwrite is for the chief: a worker joins the chief's run as it is")
    run_dir = options.project_dir / options.name
    prepare_run_dir(run_dir, space, options)
    keras.utils.set_random_seed(options.weights_seed)
    started_at = datetime.now(timezone.utc)
    num_classes = dataset.spec.num_classes
    split = split_train_validation(dataset.train_images, dataset.train_labels, space.validation_images,
                                   options.seed, space.train_images)
    if max(space.batch_sizes) > len(split.train_labels):
        raise RunError(f"batch_size {max(space.batch_sizes)} is larger than the {len(split.train_labels)} training "
                       f"images: lower the batch size or raise train_images in {space.source}")
    hypermodel = KmnistHyperModel(space, num_classes, dataset.spec.image_shape, dataset.spec.objective)
    tuner = make_tuner(hypermodel, space, options)
    try:
        with warnings.catch_warnings():
            # Bayesian search's Gaussian process warns on tiny discrete spaces; the search is fine.
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            tuner.search(
                to_model_input(split.train_images),
                training_targets(split.train_images, split.train_labels, num_classes, options.teacher),
                validation_data=(to_model_input(split.validation_images),
                                 one_hot(split.validation_labels, num_classes)),
                epochs=space.epochs,
                callbacks=search_callbacks(run_dir, options),
                verbose=options.verbose,
            )
    except RuntimeError as error:
        if "consecutive failures" not in str(error):
            raise
        raise RunError(f"search stopped after 3 consecutive failed trials (last: {message_gist(str(error))}): "
                       f"see `python -m kmnist_search.summary {run_dir}`") from None
    if role == "worker":
        return None
    trials = collect_trials(run_dir)
    completed = [t for t in trials if t.status in SCORED_STATUSES and t.score is not None]
    if not completed:
        raise RunError(f"no trial completed in {run_dir}: see the trial messages with "
                       f"`python -m kmnist_search.summary {run_dir}`")
    best_trial = tuner.oracle.get_best_trials(1)[0]
    winner_record = next(t for t in trials if t.trial_id == best_trial.trial_id)
    if space.retrain_epochs:
        full = split_train_validation(dataset.train_images, dataset.train_labels, space.validation_images,
                                      options.seed)
        model, retrain_record = retrain(hypermodel, best_trial.hyperparameters, full, space, run_dir, options)
    else:
        with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed for evaluation
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = tuner.get_best_models(1)[0]
        retrain_record = None
    winner = {
        "trial_id": best_trial.trial_id,
        "hyperparameters": winner_record.hyperparameters,
        "objective": f"val_{dataset.spec.objective}",
        "val_accuracy": retrain_record["best_val_accuracy"] if retrain_record else winner_record.best_val_accuracy,
        "val_balanced_accuracy": (retrain_record or {}).get("best_val_balanced_accuracy",
                                                             winner_record.best_val_balanced_accuracy),
        "best_epoch": retrain_record["best_epoch"] if retrain_record else winner_record.best_epoch,
        "search_val_accuracy": winner_record.best_val_accuracy,
        "retrained": retrain_record,
        **evaluate_winner(model, dataset, run_dir),
    }
    results = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "run_name": options.name,
        "run_dir": str(run_dir),
        "strategy": options.strategy,
        "seed": options.seed,
        "init_seed": options.init_seed,
        "teacher": options.teacher.describe() if options.teacher else None,
        "space": {"name": space.name, "source": space.source, **space.fingerprint()},
        "dataset": {
            "name": dataset.spec.name,
            "checksums": dataset.checksums,
            "train_images": len(split.train_labels),
            "validation_images": len(split.validation_labels),
            "test_images": len(dataset.test_labels),
        },
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "trials": [t.to_dict() for t in trials],
        "winner": winner,
        "versions": library_versions(),
    }
    atomic_write_json(run_dir / "results.json", results)
    return results


def retrain(hypermodel: KmnistHyperModel, hyperparameters: kt.HyperParameters, split: Split, space: SearchSpace,
            run_dir: Path, options: SearchOptions) -> tuple[keras.Model, dict[str, Any]]:
    """Train the winning configuration afresh on every training image (the search may have used a
    subset) for ``retrain_epochs``, keeping the epoch with the best validation accuracy."""
    keras.utils.set_random_seed(options.weights_seed)
    num_classes = hypermodel.num_classes
    monitor = f"val_{hypermodel.objective}"
    model = hypermodel.build(hyperparameters)
    best_weights = run_dir / "retrain_best.weights.h5"
    logger = EpochLogger(run_dir / RETRAIN_LOG_FILE)
    hypermodel.fit(
        hyperparameters, model, to_model_input(split.train_images),
        training_targets(split.train_images, split.train_labels, num_classes, options.teacher),
        validation_data=(to_model_input(split.validation_images), one_hot(split.validation_labels, num_classes)),
        epochs=space.retrain_epochs, verbose=options.verbose,
        callbacks=[keras.callbacks.TerminateOnNaN(), logger, keras.callbacks.ModelCheckpoint(
            str(best_weights), monitor=monitor, mode="max", save_best_only=True, save_weights_only=True)],
    )
    model.load_weights(best_weights)
    best = max(logger.epochs, key=lambda entry: entry.get(monitor, float("-inf")))
    return model, {"epochs_run": len(logger.epochs), "train_images": len(split.train_labels),
                   "best_epoch": int(best["epoch"]), "best_val_accuracy": float(best["val_accuracy"]),
                   **({"best_val_balanced_accuracy": float(best[monitor])} if monitor != "val_accuracy" else {}),
                   "wall_time_s": round(sum(e["seconds"] for e in logger.epochs), 2)}


def evaluate_winner(model: keras.Model, dataset: Dataset, run_dir: Path) -> dict[str, Any]:
    """Evaluate the winner once on the test set; save it and its test predictions."""
    test_x = to_model_input(dataset.test_images)
    test_y = one_hot(dataset.test_labels, dataset.spec.num_classes)
    metrics = model.evaluate(test_x, test_y, batch_size=1000, verbose=0, return_dict=True)
    probabilities = model.predict(test_x, batch_size=1000, verbose=0).astype(np.float32)
    save_test_predictions(run_dir / TEST_PREDICTIONS_FILE, dataset, probabilities)
    model_path = run_dir / "winner.keras"
    partial = run_dir / "winner.partial.keras"
    model.save(partial)
    partial.replace(model_path)
    return {
        "test_accuracy": float(metrics["accuracy"]),
        "test_balanced_accuracy": float(balanced_accuracy_score(dataset.test_labels, probabilities.argmax(axis=1))),
        "test_loss": float(metrics["loss"]),
        "model_path": str(model_path),
    }


def save_test_predictions(path: Path, dataset: Dataset, probabilities: np.ndarray) -> None:
    """Keep what the reports need from the single test evaluation: labels, probabilities, the first
    100 images (for the prediction grid). Plain arrays, no pickles."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=dataset.test_labels, probabilities=probabilities,
                        first_images=dataset.test_images[:100])
    atomic_write_bytes(path, buffer.getvalue())


def library_versions() -> dict[str, str]:
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_tuner": kt.__version__,
        "numpy": np.__version__,
    }
