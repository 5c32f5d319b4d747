"""Run (or resume) a search, retrain the winner if the space asks, and evaluate it once on the test set.

The run directory (see :mod:`kmnist_search.data.rundir`) is the Keras Tuner project plus this package's
files; :func:`run_search` writes ``results.json`` last, with the winner's effective training settings.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score

from kmnist_search.base.errors import RunError, SpaceError
from kmnist_search.base.files import staged_path
from kmnist_search.base.formatting import trial_number
from kmnist_search.base.names import check_name, check_seed
from kmnist_search.data import run_guard
from kmnist_search.data.contract import to_model_input
from kmnist_search.data.datasets import Dataset, DatasetSpec, Split, one_hot
from kmnist_search.data.record import (
    ENDED_FILE,
    SCORED_STATUSES,
    TRIAL_LOG_FILE,
    Budget,
    DatasetRecord,
    Epoch,
    RunRecord,
    SpaceRecord,
    TrainingEnded,
    TrainingRun,
    TrainingSettings,
    Trial,
    Winner,
    message_gist,
    read_training_ended,
    write,
)
from kmnist_search.data.rundir import RunDir
from kmnist_search.data.spaces import SearchSpace
from kmnist_search.data.test_predictions import write_test_predictions
from kmnist_search.export.distillation import Teacher, training_targets
from kmnist_search.report.rankings import within_budget
from kmnist_search.search.callbacks import (
    BestEpochWeights,
    EpochLogger,
    ProgressReporter,
    StopOnNonFiniteLoss,
    steps_in_an_epoch,
)
from kmnist_search.search.confirm import (
    CONFIRM_DIR,
    DEFAULT_CONFIRM,
    Confirmation,
    ConfirmationRun,
    ConfirmedConfiguration,
    extra_seeds,
    ranked,
    run_folder_name,
    top_configurations,
)
from kmnist_search.search.distributed import current_role
from kmnist_search.search.hypermodel import KmnistHyperModel, search_hyperparameters
from kmnist_search.search.journal import sync_journal
from kmnist_search.search.keras_tuner_patches import apply_keras_tuner_patches, checkpoint_file
from kmnist_search.search.progress import SearchClock, SearchProgress
from kmnist_search.search.reconcile import reconcile_oracle
from kmnist_search.search.resume import TrainingCheckpoint
from kmnist_search.search.tuners import DiskStop, Measurer, make_tuner
from kmnist_search.search.user_model import Build, UserHyperModel


@dataclass(frozen=True)
class SearchOptions:
    """Everything a search needs besides the data and the space."""

    strategy: str
    project_dir: Path
    name: str
    seed: int = 42
    max_trials: int | None = None
    overwrite: bool = False
    tensorboard: bool = False
    teacher: Teacher | None = None
    init_seed: int | None = None
    progress: SearchProgress | None = None  # told about trials and epochs as they run; None: silent
    deterministic: bool = False  # TensorFlow's op determinism: the same seed trains the same weights
    confirm: int = DEFAULT_CONFIRM  # train the best K configurations with more seeds (0: off)
    measurement: Callable[[Split], Measurer] | None = None  # the measurer of each completed trial (None: off)
    budget: Budget | None = None  # the winner is the most accurate measured trial within it
    model: Build | None = None  # a model of your own's build(hp), for a space made with SearchSpace.with_model

    def __post_init__(self) -> None:
        check_name(self.name, "run name")
        check_seed(self.seed, "seed")
        if self.confirm < 0:
            raise RunError(f"--confirm {self.confirm}: must be 0 (off) or more configurations to confirm")
        if self.init_seed is not None:
            check_seed(self.init_seed, "init seed")
        if self.budget is not None and self.measurement is None:
            raise RunError("a budget needs every trial measured: leave out --no-measure")

    @property
    def weights_seed(self) -> int:
        """Seeds initial weights, shuffling and augmentation: ``init_seed`` if given, else ``seed``
        (which always seeds the validation split and the trial order)."""
        return self.seed if self.init_seed is None else self.init_seed


def run_record(space: SearchSpace, options: SearchOptions) -> dict[str, Any]:
    """What must stay the same when a run is resumed (kept in space.json)."""
    record: dict[str, Any] = {"space": space.fingerprint(), "strategy": options.strategy, "seed": options.seed}
    if options.teacher:
        record["teacher"] = options.teacher.describe()
    if options.init_seed is not None:
        record["init_seed"] = options.init_seed
    return record


def search_callbacks(run_dir: RunDir, options: SearchOptions) -> list[keras.callbacks.Callback]:
    """Callbacks for every trial. With TensorBoard, Keras Tuner gives each trial its own log directory
    and records its hyperparameters for the HParams dashboard (``tensorboard --logdir RUN_DIR/tensorboard``)."""
    callbacks: list[keras.callbacks.Callback] = [StopOnNonFiniteLoss()]
    if options.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir.tensorboard_dir)))
    return callbacks


def run_search(dataset: Dataset, space: SearchSpace, options: SearchOptions) -> RunRecord | None:
    """Run or resume a search, evaluate the winner once on the test set and write results.json.

    In a distributed search (see :mod:`kmnist_search.search.distributed`) a worker only runs the trials the
    chief hands it and returns None; the chief waits for every trial, then does the rest.
    """
    role = current_role()
    if role == "worker" and options.overwrite:
        raise RunError("--overwrite is for the chief: a worker joins the chief's run as it is")
    apply_keras_tuner_patches()
    if options.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # for the rest of the process
    split = dataset.split(space.validation_images, options.seed, space.train_images)
    if max(space.batch_sizes) > len(split.train_labels):
        raise RunError(f"batch_size {max(space.batch_sizes)} is larger than the {len(split.train_labels)} training "
                       f"images: lower the batch size or raise train_images in {space.source}")
    hypermodel = make_hypermodel(space, dataset.spec, options)
    check_buildable(hypermodel, space)  # before the run directory records the space: a fixed space may rerun
    run_dir = RunDir(options.project_dir / options.name)
    run_guard.prepare(run_dir, run_record(space, options), options.overwrite)
    keras.utils.set_random_seed(options.weights_seed)
    started_at = datetime.now(timezone.utc)
    tuner = start_tuner(hypermodel, space, split, run_dir, options, len(dataset.train_labels), role)
    train_trials(tuner, hypermodel.num_classes, split, space, run_dir, options)
    if role == "worker":
        return None
    trials = settled_trials(tuner, run_dir)
    chosen = choose_winner(hypermodel, tuner, trials, split, space, run_dir, options)
    model, retraining = winner_model(hypermodel, tuner, chosen, dataset, space, run_dir, options)
    if options.progress is not None:
        options.progress.step("evaluating the winner once on the test set")
    winner = describe_winner(hypermodel, chosen, model, retraining, space, split, options, dataset.spec.objective,
                             evaluate_winner(model, dataset, run_dir))
    results = run_results(dataset, split, space, options, started_at, trials, chosen, winner)
    run_dir.write_results(results)
    sync_journal(run_dir)
    TrainingCheckpoint(run_dir.retrain_resume_dir).clear()  # the retraining is recorded: nothing to resume
    return results


def make_hypermodel(space: SearchSpace, spec: DatasetSpec, options: SearchOptions) -> KmnistHyperModel:
    """The study's networks, or a model of your own where the options bring its build(hp)."""
    if options.model:
        return UserHyperModel(options.model, space, spec.num_classes, spec.image_shape, spec.objective)
    return KmnistHyperModel(space, spec.num_classes, spec.image_shape, spec.objective)


def run_results(dataset: Dataset, split: Split, space: SearchSpace, options: SearchOptions, started_at: datetime,
                trials: list[Trial], chosen: Chosen, winner: Winner) -> RunRecord:
    """The finished run's record: what was searched, on which data, every trial and the winner."""
    return RunRecord(
        run_name=options.name,
        strategy=options.strategy,
        seed=options.seed,
        init_seed=options.init_seed,
        teacher=options.teacher.describe() if options.teacher else None,
        space=SpaceRecord.model_validate({"name": space.name, "source": space.source, **space.fingerprint()}),
        dataset=DatasetRecord(name=dataset.spec.name, checksums=dataset.checksums,
                              train_images=len(split.train_labels), validation_images=len(split.validation_labels),
                              test_images=len(dataset.test_labels)),
        started_at=started_at.isoformat(timespec="seconds"),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        trials=trials,
        confirmation=chosen.confirmation.to_record() if chosen.confirmation else None,
        budget=options.budget,
        winner=winner,
        versions=library_versions(),
    )


def start_tuner(hypermodel: KmnistHyperModel, space: SearchSpace, split: Split, run_dir: RunDir,
                options: SearchOptions, all_train_images: int, role: str | None) -> kt.Tuner:
    """The run's tuner, with its measurer, budget and progress, after settling what a kill left behind."""
    tuner = make_tuner(hypermodel, space, options.strategy, run_dir, options.seed, options.weights_seed,
                       options.max_trials, keep_checkpoints=max(options.confirm, 1))
    tuner.measurer = options.measurement(split) if options.measurement else None
    tuner.budget = options.budget
    if role != "worker":  # the oracle lives in this process: settle what a kill may have left half-recorded
        reconcile_oracle(tuner.oracle, run_dir)
        sync_journal(run_dir)  # the journal says what the settled trial files say
    if role is None:  # no other process writes here now
        run_guard.remove_run_leftovers(run_dir)
    if options.progress is not None:
        tuner.progress = options.progress
        tuner.clock = search_clock(run_dir, space, tuner.total_trials, len(split.train_labels),
                                   all_train_images - space.validation_images)
        done = sum(1 for t in run_dir.trials() if t.status not in ("RUNNING", "IDLE"))
        options.progress.search_started(tuner.total_trials, done, tuner.clock.seconds_left(done))
    return tuner


def train_trials(tuner: kt.Tuner, num_classes: int, split: Split, space: SearchSpace, run_dir: RunDir,
                 options: SearchOptions) -> None:
    """Keras Tuner's search: every trial this process is given, trained (or resumed) and recorded."""
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
                verbose=0,  # Keras's and Keras Tuner's own console output; options.progress replaces them
            )
    except DiskStop as stop:
        raise stop.error from None  # one line from the command: the disk, the trial's folder, the fix
    except RuntimeError as error:
        if "consecutive failures" not in str(error):
            raise
        raise RunError(f"search stopped after 3 consecutive failed trials (last: {message_gist(str(error))}): "
                       f"see `python -m kmnist_search.summary {run_dir.path}`") from None


def settled_trials(tuner: kt.Tuner, run_dir: RunDir) -> list[Trial]:
    """Every trial once the search is over: measured where a kill left one unmeasured, spare weights gone, the
    journal up to date; a one-line error when none completed."""
    trials: list[Trial] = tuner.measure_pending(run_dir)
    tuner.remove_spare_checkpoints(trials)
    sync_journal(run_dir, trials)
    if not any(t.status in SCORED_STATUSES and t.score is not None for t in trials):
        raise RunError(f"no trial completed in {run_dir.path}: see the trial messages with "
                       f"`python -m kmnist_search.summary {run_dir.path}`")
    return trials


@dataclass(frozen=True)
class Chosen:
    """The search's winner: its Keras Tuner trial and record, and its confirmation where one was run."""

    trial: kt.engine.trial.Trial
    record: Trial
    confirmation: Confirmation | None = None
    confirmed_model: keras.Model | None = None


def choose_winner(hypermodel: KmnistHyperModel, tuner: kt.Tuner, trials: list[Trial], split: Split,
                  space: SearchSpace, run_dir: RunDir, options: SearchOptions) -> Chosen:
    """The best trial (within the budget, where there is one), or the best mean of the confirmed top K."""
    candidates = within_budget(trials, options.budget) if options.budget else trials
    confirmation, confirmed_model = None, None
    if options.confirm:
        confirmation, confirmed_model = confirm_top(hypermodel, tuner, candidates, split, space, run_dir, options)
        best_trial = tuner.oracle.get_trial(confirmation.winner.trial_id)
    elif options.budget:
        best_trial = tuner.oracle.get_trial(candidates[0].trial_id)
    else:
        best_trial = tuner.oracle.get_best_trials(1)[0]
    record = next(t for t in trials if t.trial_id == best_trial.trial_id)
    return Chosen(best_trial, record, confirmation, confirmed_model)


def winner_model(hypermodel: KmnistHyperModel, tuner: kt.Tuner, chosen: Chosen, dataset: Dataset,
                 space: SearchSpace, run_dir: RunDir, options: SearchOptions) -> tuple[keras.Model, TrainingRun | None]:
    """The model that ships: the winner retrained on every training image where the space asks, else its
    confirmation's best run or its trial's best epoch."""
    if space.retrain_epochs:
        if options.progress is not None:
            options.progress.step(f"retraining the winner (trial {trial_number(chosen.record.trial_id)}) on every "
                                  f"training image for {space.retrain_epochs} epochs")
        full = dataset.split(space.validation_images, options.seed)
        return retrain(hypermodel, chosen.trial.hyperparameters, full, space, run_dir, options)
    if chosen.confirmed_model is not None:
        return chosen.confirmed_model, None
    with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed for evaluation
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        return tuner.load_model(chosen.trial), None


def describe_winner(hypermodel: KmnistHyperModel, chosen: Chosen, model: keras.Model, retraining: TrainingRun | None,
                    space: SearchSpace, split: Split, options: SearchOptions, objective: str,
                    evaluation: dict[str, Any]) -> Winner:
    """The winner's record: its effective settings, its validation figures and its test evaluation."""
    record, confirmation = chosen.record, chosen.confirmation
    settings = TrainingSettings.resolve(
        space, record.hyperparameters, hypermodel.built_hyperparameters(model),
        optimizer=hypermodel.optimizer_settings(chosen.trial.hyperparameters, model),
        search_trial=TrainingRun(trial_id=record.trial_id, epochs_planned=space.epochs,
                                 epochs_trained=record.epochs_run, best_epoch=record.best_epoch,
                                 train_images=len(split.train_labels), validation_accuracy=record.best_val_accuracy,
                                 wall_time_s=record.wall_time_s),
        retraining=retraining, seed=options.seed, init_seed=options.init_seed,
        teacher=options.teacher.describe() if options.teacher else None)
    return Winner(
        trial_id=record.trial_id,
        hyperparameters=record.hyperparameters,
        settings=settings,
        objective=f"val_{objective}",
        val_accuracy=(retraining.validation_accuracy if retraining
                      else confirmation.winner.best_run().val_accuracy if confirmation
                      else record.best_val_accuracy),
        val_balanced_accuracy=(retraining.validation_balanced_accuracy if retraining
                               else record.best_val_balanced_accuracy),
        best_epoch=retraining.best_epoch if retraining else record.best_epoch,
        search_val_accuracy=record.best_val_accuracy,
        confirmed=confirmation.winner_summary() if confirmation else None,
        **evaluation,
    )


def check_buildable(hypermodel: KmnistHyperModel, space: SearchSpace) -> None:
    """Build the first configuration (which Keras Tuner builds while it sets up) and refuse the space in one
    line, naming that configuration, if it cannot be built. A later configuration that cannot be built
    fails its own trial, with the reason in the summary."""
    hyperparameters = search_hyperparameters(space)
    try:
        hypermodel.build(hyperparameters)
    except SpaceError:
        raise
    except Exception as error:  # Keras raises many types for impossible layer shapes and sizes
        values = ", ".join(f"{name}={value}" for name, value in hyperparameters.values.items())
        raise SpaceError(f"{space.source}: the first configuration ({values}) cannot be built "
                         f"({message_gist(str(error)) or type(error).__name__}): change those values") from None
    undeclared = sorted(set(hyperparameters.values) - set(space.values()))
    if undeclared:
        raise SpaceError(f"model {space.model}: build(hp) declares {', '.join(undeclared)}, not among the "
                         f"hyperparameters given: add their values, or leave hyperparameters out to search "
                         f"those build declares")


def search_clock(run_dir: RunDir, space: SearchSpace, total_trials: int, train_images: int,
                 retrain_images: int) -> SearchClock:
    """The search's clock, calibrated on every epoch already measured in the run directory."""
    clock = SearchClock(space, total_trials, train_images, retrain_images)
    for record in run_dir.trials():
        for epoch in record.history:
            if epoch.seconds is not None:
                clock.observe(record.hyperparameters, epoch.seconds)
    return clock


@dataclass(frozen=True)
class TrainingFiles:
    """Where one training to the end keeps its epoch log, its best epoch's weights and its resume state."""

    log: Path
    best_weights: Path
    resume: Path

    @classmethod
    def in_folder(cls, folder: Path) -> TrainingFiles:
        return cls(folder / TRIAL_LOG_FILE, folder / "best.weights.h5", folder / "resume")


def train_fully(hypermodel: KmnistHyperModel, hyperparameters: kt.HyperParameters, split: Split, epochs: int,
                files: TrainingFiles, seed: int, options: SearchOptions,
                label: str = "retraining") -> tuple[keras.Model, list[Epoch]]:
    """Train a configuration afresh for ``epochs`` with weights and batch-order ``seed``, keeping the epoch
    with the best validation score; a training killed part-way continues from its last completed epoch
    when called again. Returns the model at its best epoch and every epoch's log line."""
    keras.utils.set_random_seed(seed)
    num_classes = hypermodel.num_classes
    monitor = f"val_{hypermodel.objective}"
    model = hypermodel.build(hyperparameters)
    checkpoint = TrainingCheckpoint(files.resume)
    steps = steps_in_an_epoch(len(split.train_labels), int(hyperparameters.get("batch_size")))
    logger = EpochLogger(files.log, checkpoint, steps)
    callbacks: list[keras.callbacks.Callback] = [
        StopOnNonFiniteLoss(), logger, BestEpochWeights(files.best_weights, monitor, files.log, checkpoint)]
    if options.progress is not None:
        options.progress.retraining_started(epochs, steps, label)
        callbacks.append(ProgressReporter(options.progress, None, dict(hyperparameters.values), steps))
    hypermodel.fit(
        hyperparameters, model, to_model_input(split.train_images),
        training_targets(split.train_images, split.train_labels, num_classes, options.teacher),
        validation_data=(to_model_input(split.validation_images), one_hot(split.validation_labels, num_classes)),
        epochs=epochs, verbose=0, callbacks=callbacks, checkpoint=checkpoint, shuffle_seed=seed,
    )
    model.load_weights(files.best_weights)
    return model, logger.epochs


def best_epoch(epochs: list[Epoch], monitor: str) -> Epoch:
    """The logged epoch with the best ``monitor`` value."""
    return max(epochs, key=lambda entry: entry.value(monitor))


def retrain(hypermodel: KmnistHyperModel, hyperparameters: kt.HyperParameters, split: Split, space: SearchSpace,
            run_dir: RunDir, options: SearchOptions) -> tuple[keras.Model, TrainingRun]:
    """Train the winning configuration afresh on every training image (the search may have used a
    subset) for ``retrain_epochs``, keeping the epoch with the best validation accuracy. A retraining
    killed part-way continues from its last completed epoch when the search is run again."""
    monitor = f"val_{hypermodel.objective}"
    files = TrainingFiles(run_dir.retrain_log_path, run_dir.retrain_best_weights_path, run_dir.retrain_resume_dir)
    model, epochs = train_fully(hypermodel, hyperparameters, split, space.retrain_epochs, files,
                                options.weights_seed, options)
    best = best_epoch(epochs, monitor)
    return model, TrainingRun(
        epochs_planned=space.retrain_epochs, epochs_trained=len(epochs), best_epoch=best.epoch,
        train_images=len(split.train_labels), validation_accuracy=best.metric("val_accuracy"),
        validation_balanced_accuracy=best.metric(monitor) if monitor != "val_accuracy" else None,
        wall_time_s=round(sum(e.seconds or 0.0 for e in epochs), 2))


def confirm_top(hypermodel: KmnistHyperModel, tuner: kt.Tuner, trials: list[Trial], split: Split,
                space: SearchSpace, run_dir: RunDir, options: SearchOptions) -> tuple[Confirmation, keras.Model]:
    """Train the ``options.confirm`` best configurations with extra seeds (see :mod:`kmnist_search.search.confirm`);
    the confirmation and the winner's model (its run with the best validation score)."""
    top = top_configurations(trials, options.confirm, space.epochs)
    confirmed = []
    for rank, (trial, whole) in enumerate(top, start=1):
        counts = whole and checkpoint_file(tuner, trial.trial_id).is_file()  # weights kept (a rerun may ask more)
        runs = [ConfirmationRun("trial", options.weights_seed + int(trial.trial_id), float(trial.score or 0.0),
                                int(trial.best_epoch or 0))] if counts else []
        for j, seed in extra_seeds(options.weights_seed, trial.trial_id, counts):
            folder = run_dir.path / CONFIRM_DIR / run_folder_name(trial.trial_id, j)
            hyperparameters = tuner.oracle.get_trial(trial.trial_id).hyperparameters
            runs.append(confirmation_run(hypermodel, hyperparameters, split, space, folder, seed, options,
                                         f"confirming trial {trial_number(trial.trial_id)} ({rank} of {len(top)}) "
                                         f"with seed {seed}"))
        confirmed.append(ConfirmedConfiguration(trial.trial_id, trial.hyperparameters, tuple(runs)))
    confirmation = ranked(confirmed)
    best_run = confirmation.winner.best_run()
    trial = tuner.oracle.get_trial(confirmation.winner.trial_id)
    if best_run.source == "trial":
        with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed for evaluation
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = tuner.load_model(trial)
    else:
        model = hypermodel.build(trial.hyperparameters)
        model.load_weights(TrainingFiles.in_folder(run_dir.path / CONFIRM_DIR / best_run.source).best_weights)
    return confirmation, model


def confirmation_run(hypermodel: KmnistHyperModel, hyperparameters: kt.HyperParameters, split: Split,
                     space: SearchSpace, folder: Path, seed: int, options: SearchOptions,
                     announcement: str) -> ConfirmationRun:
    """One extra training of a configuration, read from its folder if it has ended before."""
    ended = folder / ENDED_FILE
    record = read_training_ended(ended)
    files = TrainingFiles.in_folder(folder)
    if record is None:
        if options.progress is not None:
            options.progress.step(announcement)
        _, epochs = train_fully(hypermodel, hyperparameters, split, space.epochs, files, seed, options, "confirming")
        monitor = f"val_{hypermodel.objective}"
        best = best_epoch(epochs, monitor)
        record = TrainingEnded(weights_seed=seed, val_accuracy=best.value(monitor), best_epoch=best.epoch)
        write(ended, record)
    TrainingCheckpoint(files.resume).clear()  # the training is recorded: nothing to resume
    return ConfirmationRun(folder.name, record.weights_seed, record.val_accuracy, record.best_epoch)


def evaluate_winner(model: keras.Model, dataset: Dataset, run_dir: RunDir) -> dict[str, Any]:
    """Evaluate the winner once on the test set; save it and its test predictions."""
    test_x = to_model_input(dataset.test_images)
    test_y = one_hot(dataset.test_labels, dataset.spec.num_classes)
    metrics = model.evaluate(test_x, test_y, batch_size=1000, verbose=0, return_dict=True)
    probabilities = model.predict(test_x, batch_size=1000, verbose=0).astype(np.float32)
    write_test_predictions(run_dir.test_predictions_path, dataset.test_labels, probabilities, dataset.test_images)
    with staged_path(run_dir.winner_model_path) as staged:
        model.save(staged)
    return {
        "test_accuracy": float(metrics["accuracy"]),
        "test_balanced_accuracy": float(balanced_accuracy_score(dataset.test_labels, probabilities.argmax(axis=1))),
        "test_loss": float(metrics["loss"]),
    }


def library_versions() -> dict[str, str]:
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_tuner": kt.__version__,
        "numpy": np.__version__,
    }
