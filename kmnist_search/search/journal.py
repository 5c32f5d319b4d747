"""The run's trials as an Optuna journal, live: ``optuna-dashboard RUN_DIR/optuna.log`` watches the search,
and ``optuna.load_study`` opens it with all of Optuna's plots and ``trials_dataframe()``.

The journal is derived from the run record, never the other way round. :func:`sync_journal` makes it say
what the trial files say, and the search calls it when a trial starts, after each epoch and when a trial
ends, from every process of the run (a file lock makes the calls take turns). Each call appends only what
is new, so a dashboard that is reading it follows along. A call interrupted mid-write leaves at most one
partial line, which the next call cuts off before it appends. If the record ever contradicts what the
journal already says (a trial failed by its environment and retried, or a trial reset after a kill), the
journal is written afresh from the record and swapped in whole.

Each Optuna trial is one Keras Tuner trial: its searched values as categorical parameters (the grid's
values), every epoch's validation score as an intermediate value at step = epoch, its state (complete,
pruned, failed, running) and its attributes: ``trial`` (the number the console and the report show),
``trial_id`` (Keras Tuner's), ``epochs``, ``seconds``, ``cpu_seconds``, ``best_epoch`` and ``message``.
Optuna numbers trials from 0 in the order they started, so the ``trial`` attribute is the one to quote.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kmnist_search.base.files import PARTIAL_PREFIX, waiting_lock
from kmnist_search.data.record import Trial
from kmnist_search.data.rundir import RunDir

JOURNAL_FILE = "optuna.log"
LOCK_FILE = ".optuna.log.lock"
STATES = {"COMPLETED": "COMPLETE", "PRUNED": "PRUNED", "FAILED": "FAIL", "INVALID": "FAIL", "STOPPED": "FAIL",
          "RUNNING": "RUNNING"}  # Keras Tuner's trial status -> Optuna's TrialState name (IDLE: not yet started)


class Contradiction(Exception):
    """The journal says something the run record no longer does."""


def journal_path(run_dir: RunDir) -> Path:
    return run_dir.path / JOURNAL_FILE


def sync_journal(run_dir: RunDir, trials: list[Trial] | None = None) -> None:
    """Make the run's Optuna journal say what its trial files say (see the module's text); ``trials``: the
    run's trials when the caller has just read them."""
    path = journal_path(run_dir)
    record = run_dir.search_record()
    searched = {name: list(values) for name, values in record.get("space", {}).get("hyperparameters", {}).items()
                if isinstance(values, list)}
    about = {"strategy": record.get("strategy"), "seed": record.get("seed"),
             "space": record.get("space", {}).get("name")}
    trials = [t for t in (run_dir.trials() if trials is None else trials) if t.status in STATES]
    with waiting_lock(run_dir.path / LOCK_FILE), _quiet_optuna():
        _cut_partial_line(path)
        try:
            _append_what_is_new(path, run_dir.name, about, searched, trials)
        except Contradiction:
            fresh = path.with_name(f"{PARTIAL_PREFIX}{JOURNAL_FILE}-{os.getpid()}")
            fresh.unlink(missing_ok=True)
            try:
                _append_what_is_new(fresh, run_dir.name, about, searched, trials)
                os.replace(fresh, path)
            finally:
                fresh.unlink(missing_ok=True)


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's info lines ("A new study created in Journal ...") are not the search's console output."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def _cut_partial_line(path: Path) -> None:
    """Drop a last line that a killed write left without its newline (Optuna would stop reading there). A link
    in the journal's place is removed, never followed: the journal is written afresh from the record."""
    if path.is_symlink():
        path.unlink()
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def _storage(path: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def _append_what_is_new(path: Path, study_name: str, about: dict[str, Any], searched: dict[str, list[Any]],
                        trials: list[Trial]) -> None:
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution
    from optuna.trial import TrialState

    storage = _storage(path)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], study_name)
        for key, value in about.items():
            storage.set_study_user_attr(study_id, key, value)
    journal = {t.user_attrs.get("trial_id"): t for t in storage.get_all_trials(study_id, deepcopy=False)}
    if set(journal) - {t.trial_id for t in trials}:
        raise Contradiction("a journal trial is no longer in the record")
    for trial in sorted(trials, key=lambda t: int(t.trial_id)):
        distributions: dict[str, BaseDistribution] = {name: CategoricalDistribution(_choices(searched.get(name), value))
                         for name, value in trial.hyperparameters.items()}
        attributes = _attributes(trial)
        steps = dict(_intermediate_values(trial))
        state = TrialState[STATES[trial.status]]
        existing = journal.get(trial.trial_id)
        if existing is None:
            template = optuna.trial.create_trial(
                state=TrialState.RUNNING, params=trial.hyperparameters, distributions=distributions,
                user_attrs=attributes, intermediate_values=steps)
            number = storage.create_new_trial(study_id, template_trial=template)
        elif existing.state.is_finished():
            if (existing.state, existing.intermediate_values, existing.user_attrs, existing.value) != (
                    state, steps, attributes, _value(trial, state)):
                raise Contradiction(f"trial {trial.trial_id} changed after it ended")
            continue
        else:
            number = storage.get_trial_id_from_study_id_trial_number(study_id, existing.number)
            if existing.params != trial.hyperparameters:
                raise Contradiction(f"trial {trial.trial_id} has other values")
            for step, value in steps.items():
                if existing.intermediate_values.get(step) != value:
                    storage.set_trial_intermediate_value(number, step, value)
            for key, value in attributes.items():
                if existing.user_attrs.get(key, ...) != value:
                    storage.set_trial_user_attr(number, key, value)
        if state.is_finished():
            final = _value(trial, state)
            storage.set_trial_state_values(number, state, None if final is None else [final])


def _choices(values: list[Any] | None, value: Any) -> tuple[Any, ...]:
    """The grid's values of a hyperparameter (the trial's own value alone if the space does not list it)."""
    return tuple(values) if values and value in values else (value,)


def _intermediate_values(trial: Trial) -> Iterable[tuple[int, float]]:
    for epoch in trial.history:
        value = epoch.metric("val_balanced_accuracy")
        value = epoch.metric("val_accuracy") if value is None else value
        if value is not None:
            yield epoch.epoch, value


def _attributes(trial: Trial) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "trial": int(trial.trial_id) + 1, "trial_id": trial.trial_id, "epochs": trial.epochs_run,
        "seconds": trial.wall_time_s, "cpu_seconds": round(sum(e.cpu_seconds or 0.0 for e in trial.history), 2),
        "best_epoch": trial.best_epoch}
    if trial.message:
        attributes["message"] = trial.message
    if trial.deployment is not None:  # measured as it would ship
        shipped = trial.deployment.shipped()
        attributes.update({"onnx_bytes": shipped.onnx_bytes, "latency_ms": shipped.speed.single_image_ms,
                           "latency_ratio_to_reference": shipped.speed.ratio_to_reference,
                           "images_per_second": shipped.speed.images_per_second,
                           "parity_passed": trial.deployment.parity_passed,
                           "precision": "int8" if trial.deployment.int8 else "float32",
                           "measure_seconds": trial.deployment.measure_seconds})
    return attributes


def _value(trial: Trial, state: Any) -> float | None:
    """What Optuna records as the trial's value: its score when complete or pruned (the best it reached)."""
    return trial.score if state.name in ("COMPLETE", "PRUNED") else None
