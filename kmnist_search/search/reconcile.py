"""Make a resumed search's Keras Tuner state agree with its trial files, whatever instant a kill landed.

Keras Tuner records a trial in two files, one after the other: the trial's ``trial.json``, then the
oracle's ``oracle.json``. It does so when a trial is created (RUNNING), and again when it ends
(COMPLETED or FAILED); the tuner saves ``oracle.json`` once more after dropping the ended trial from
the ongoing ones. A kill between two of these writes leaves them disagreeing, and Keras Tuner's own
reload then either never trains a configuration (a trial created in ``trial.json`` that the oracle
never heard of is counted as taken) or trains a finished one again (a trial the oracle still lists
as ongoing is sent for retry). :func:`reconcile_oracle` settles each case by the file written first:

- a trial the oracle never recorded starting is forgotten, so the oracle proposes it again;
- a trial whose ``trial.json`` says it ended is recorded as ended, never retried;
- a trial left RUNNING by a dead process is retried, continuing from its last saved epoch;
- a trial that failed for a reason outside its configuration (an ``OSError``: a full disk, a file
  size limit, a damaged checkpoint) is retried on the rerun, from its last good epoch; a trial that
  failed for its own reasons (diverged to NaN, out of memory at its size) stays failed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

import keras_tuner as kt

from kmnist_search.data.rundir import RunDir, failed_for_the_environment
from kmnist_search.search.keras_tuner_patches import oracle_file, retry_queue, save_trial, trial_folder
from kmnist_search.search.resume import TrainingCheckpoint

ENDED = (kt.engine.trial.TrialStatus.COMPLETED, kt.engine.trial.TrialStatus.FAILED)
FAILED = (kt.engine.trial.TrialStatus.FAILED, kt.engine.trial.TrialStatus.INVALID)
RUNNING = kt.engine.trial.TrialStatus.RUNNING


@dataclass
class Reconciliation:
    """What :func:`reconcile_oracle` changed, by trial id."""

    forgotten: list[str] = field(default_factory=list)  # created in trial.json only: proposed again
    ended: list[str] = field(default_factory=list)  # ended in trial.json, not yet in oracle.json
    retried: list[str] = field(default_factory=list)  # left running by a dead process
    environment: list[str] = field(default_factory=list)  # failed for a reason outside its configuration

    @property
    def changed(self) -> bool:
        return bool(self.forgotten or self.ended or self.retried or self.environment)


def reconcile_oracle(oracle: kt.Oracle, run_dir: RunDir) -> Reconciliation:
    """Settle a reloaded oracle with the trial files it reloaded, then save it (see the module's text).
    Call it on the process that owns the oracle (a search on its own, or a distributed search's chief),
    after the tuner is built and before it searches."""
    outcome = Reconciliation()
    if oracle_file(oracle).is_file():
        if not oracle.trials:  # Keras Tuner reloads only once the tuner's own file exists (after a trial ended)
            oracle.reload()
    else:  # the oracle never saved: any trial directory holds a trial it never recorded starting
        for trial_dir in run_dir.trial_dirs():
            shutil.rmtree(trial_dir, ignore_errors=True)
            outcome.forgotten.append(trial_dir.name.removeprefix("trial_"))
    started = set(oracle.start_order)
    for trial_id in [tid for tid in oracle.trials if tid not in started]:
        del oracle.trials[trial_id]
        shutil.rmtree(trial_folder(oracle, trial_id), ignore_errors=True)
        outcome.forgotten.append(trial_id)
    for trial_id, trial in oracle.trials.items():
        retrying = trial_id in retry_queue(oracle)
        if trial.status in FAILED and failed_for_the_environment(trial.message):
            trial.status, trial.message = RUNNING, None
            if trial_id in oracle.end_order:
                oracle.end_order.remove(trial_id)
            if not retrying:
                retry_queue(oracle).append(trial_id)
            save_trial(oracle, trial)
            outcome.environment.append(trial_id)
        elif trial.status in ENDED:
            unrecorded = trial_id not in oracle.end_order
            if retrying:
                retry_queue(oracle).remove(trial_id)
            if unrecorded:
                oracle.end_order.append(trial_id)
            if retrying or unrecorded:
                outcome.ended.append(trial_id)
            TrainingCheckpoint(RunDir.trial_resume_dir(trial_folder(oracle, trial_id))).clear()
        elif trial.status == RUNNING and not retrying:
            retry_queue(oracle).append(trial_id)
            outcome.retried.append(trial_id)
    if outcome.changed:
        oracle.save()
    return outcome
