"""What each entry of kmnist_search.search.keras_tuner_patches relies on in Keras Tuner is still there.

When an upgrade of Keras Tuner moves one of these, the test names the entry to check (its upstream fix may
make the entry unnecessary), instead of a search failing far from the cause."""

from __future__ import annotations

import inspect
from pathlib import Path

import keras_tuner as kt
import pytest
from keras_tuner.src import utils as keras_tuner_utils
from keras_tuner.src.engine import oracle as kt_oracle
from keras_tuner.src.engine import stateful, tuner_utils
from keras_tuner.src.engine import tuner as kt_tuner

from kmnist_search.data.spaces import load_space
from kmnist_search.search import keras_tuner_patches as patches
from kmnist_search.search import plan, strategies


def test_keras_tuner_is_a_version_the_patches_were_checked_against() -> None:
    assert kt.__version__ in patches.TESTED_VERSIONS, (
        f"keras-tuner {kt.__version__} is untested: check every entry of kmnist_search/search/keras_tuner_patches.py "
        f"(and whether upstream issue #1055 is fixed), then add the version to TESTED_VERSIONS")


def test_state_files_are_written_through_the_function_the_patch_replaces() -> None:
    assert "utils.save_json" in inspect.getsource(stateful.Stateful.save), \
        "Stateful.save no longer calls utils.save_json: the atomic state-file patch no longer applies"
    patches.apply_keras_tuner_patches()
    assert keras_tuner_utils.save_json is patches._save_json_atomically


def test_the_tuner_builds_the_best_epoch_checkpoint_the_patch_replaces(tmp_path: Path) -> None:
    assert "tuner_utils.SaveBestEpoch(" in inspect.getsource(kt_tuner), \
        "Tuner no longer builds tuner_utils.SaveBestEpoch: the resumable best-epoch patch no longer applies"
    assert list(inspect.signature(tuner_utils.SaveBestEpoch.__init__).parameters) == ["self", "objective", "filepath"]
    patches.apply_keras_tuner_patches()
    checkpoint = tuner_utils.SaveBestEpoch(kt.Objective("val_accuracy", "max"), str(tmp_path / "w.weights.h5"))
    assert isinstance(checkpoint, patches.ResumableSaveBestEpoch)
    assert callable(checkpoint._save_model) and checkpoint.best_value == float("-inf")


def test_the_oracle_state_that_reconciliation_and_the_retry_patch_use_is_there(tmp_path: Path) -> None:
    patches.apply_keras_tuner_patches()
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=2, seed=1)
    oracle._set_project_dir(str(tmp_path), "run")
    assert patches.retry_queue(oracle) == [] and patches.retry_queue(oracle) is oracle._retry_queue
    assert patches.oracle_file(oracle) == tmp_path / "run" / "oracle.json"
    assert patches.trial_folder(oracle, "3").name == "trial_3"
    assert kt.Oracle.end_trial is patches._end_trial_once
    assert "trial = self.trials[self._retry_queue.pop()]" in inspect.getsource(kt_oracle), \
        "the oracle no longer hands out retried trials from _retry_queue: check _end_trial_once and reconcile"
    assert hasattr(kt.Oracle, "_save_trial")


def test_a_failed_trial_s_traceback_is_printed_under_the_switch_the_quiet_patch_turns_off() -> None:
    from keras_tuner.src import config
    from keras_tuner.src.engine import base_tuner

    assert "config_module.DEBUG" in inspect.getsource(base_tuner.BaseTuner._try_run_and_update_trial), \
        "quiet_failed_trials: Keras Tuner no longer prints a failed trial's traceback under config.DEBUG"
    saved = config.DEBUG
    try:
        patches.quiet_failed_trials()
        assert config.DEBUG is False
    finally:
        config.DEBUG = saved


def test_the_bayesian_oracle_still_has_the_model_and_bound_the_grid_search_scores() -> None:
    space = load_space("quick")
    oracle = strategies.REGISTRY["bayesian"].oracle(space, 4, strategies.oracle_settings(space, "val_accuracy", 1))
    assert isinstance(oracle, patches.GridBayesianOracle)
    for name in ("_vectorize_trials", "_nonfixed_space", "gpr", "beta", "num_initial_points"):
        assert hasattr(oracle, name), f"GridBayesianOracle: Keras Tuner's Bayesian oracle no longer has {name}"
    assert all(hasattr(hp, "value_to_prob") for hp in oracle.get_space().space)


@pytest.mark.parametrize("name", plan.STRATEGIES)
def test_every_strategy_the_commands_offer_is_registered(name: str) -> None:
    space = load_space("quick")
    oracle = strategies.REGISTRY[name].oracle(space, 4, strategies.oracle_settings(space, "val_accuracy", 1))
    assert isinstance(oracle, kt.Oracle)
    assert set(strategies.REGISTRY) == set(plan.STRATEGIES)


def test_the_bayesian_oracle_proposes_the_untried_configuration_whose_bound_is_best(tmp_path: Path) -> None:
    import numpy as np

    space = load_space("report")
    oracle = strategies.REGISTRY["bayesian"].oracle(space, 10, strategies.oracle_settings(space, "val_accuracy", 3))
    oracle._set_project_dir(str(tmp_path), "bayesian")
    for score in (0.5, 0.9, 0.1, 0.7, 0.8):
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"val_accuracy": score})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    tried = [trial.hyperparameters.values for trial in oracle.trials.values()]
    proposed = oracle.populate_space("next")["values"]
    untried = list(patches.untried_configurations(oracle, "next"))
    embedded = np.array([[hp.value_to_prob(values[hp.name]) for hp in oracle._nonfixed_space()] for values in untried])
    mean, sd = oracle.gpr.predict(embedded, return_std=True)
    assert len(untried) == 35 and proposed not in tried and proposed == untried[int(np.argmin(mean - oracle.beta * sd))]


def test_an_oracle_without_state_files_still_saves_through_the_two_methods_it_replaces(tmp_path: Path) -> None:
    space = load_space("quick")
    oracle = strategies.REGISTRY["grid"].oracle(space, 4, strategies.oracle_settings(space, "val_accuracy", 1))
    oracle._set_project_dir(str(tmp_path), "unsaved")
    patches.without_state_files(oracle)
    trial = oracle.create_trial("tuner0")
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    assert not list(tmp_path.rglob("*.json")), \
        "without_state_files: Keras Tuner's Oracle no longer saves only through save and _save_trial"
