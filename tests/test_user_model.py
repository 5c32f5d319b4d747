"""A model of your own (docs/your-own-model.md) through search, pruning, resume, record, export, card and report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import pytest

from kmnist_search import pipeline
from kmnist_search.base.errors import SpaceError
from kmnist_search.data.record import read_results
from kmnist_search.data.rundir import RunDir
from kmnist_search.data.spaces import parse_space
from kmnist_search.search import resume
from kmnist_search.search.plan import describe_plan
from kmnist_search.search.user_model import declared_hyperparameters, user_build
from tests.kills import Killed, killed_when

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "your-own-model.md"


def guide_example() -> dict[str, Any]:
    """The guide's example, run up to its search: its build function and its space."""
    (code,) = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    namespace: dict[str, Any] = {}
    exec(code.split("outcome = pipeline.run")[0], namespace)  # the build function and the space, as documented
    return namespace


def small_space(space: dict[str, Any], epochs: int = 3) -> dict[str, Any]:
    return {**space, "training": {"epochs": epochs, "validation_images": 100, "train_images": 300}}


@pytest.mark.slow
def test_the_guides_model_is_searched_pruned_resumed_exported_and_reported(synthetic_data_dir: Path,
                                                                          tmp_path: Path) -> None:
    example = guide_example()
    build, space = example["small_mlp"], small_space(example["space"])
    common = {"data_dir": synthetic_data_dir, "verify_checksums": False, "project_dir": tmp_path / "runs",
              "name": "mlp-grid", "hypermodel": build}
    with killed_when(resume.SaveTrainingState, "on_epoch_end",  # killed in its third trial, after epoch 1
                     lambda self, epoch, logs=None: epoch == 0 and "trial_2" in str(self.checkpoint.directory),
                     after=True), pytest.raises(Killed):
        pipeline.run(space, "grid", exports_dir=tmp_path / "exports", **common)
    before = RunDir(tmp_path / "runs" / "mlp-grid").trials()
    assert {t.status for t in before[:2]} <= {"COMPLETED", "PRUNED"} and len(before[2].history) == 1

    outcome = pipeline.run(space, "grid", exports_dir=tmp_path / "exports", **common)
    trials = outcome.search.trials
    assert len(trials) == 4 and trials[:2] == before[:2]  # resumed, not redone
    assert trials[2].epochs_run >= 2 and trials[2].history[:1] == before[2].history  # continued after epoch 1
    assert {tuple(sorted(t.hyperparameters)) for t in trials} == {("batch_size", "learning_rate", "units")}
    assert {(t.hyperparameters["units"], t.hyperparameters["learning_rate"]) for t in trials} == {
        (16, 0.01), (16, 0.001), (64, 0.01), (64, 0.001)}

    winner = outcome.search.winner
    settings = winner.settings.hyperparameters
    assert settings["network"] == "small_mlp" and settings["units"] == winner.hyperparameters["units"]
    assert settings["optimizer"] == "adam" and settings["loss"] == "categorical_crossentropy"
    assert winner.settings.optimizer["learning_rate"] == pytest.approx(winner.hyperparameters["learning_rate"])
    assert "conv_layers" not in settings and "dropout_dense" not in settings

    assert outcome.export is not None and outcome.export.card["parity"]["images"] == 200  # verified on every one
    card = outcome.export.card["models"][0]["training"]
    assert card["hyperparameters"] == json.loads(json.dumps(settings))
    assert outcome.export.test_accuracy == pytest.approx(winner.test_accuracy, abs=1e-6)
    assert outcome.report_path is not None
    page = outcome.report_path.read_text(encoding="utf-8")
    assert re.search(r"<th[^>]*>units\b", page) and f"units={winner.hyperparameters['units']}" in page  # table, verdict

    record = read_results(outcome.search.run_dir.path / "results.json")  # the record reads back, typed
    assert record is not None and record.winner is not None and record.winner.settings == winner.settings
    assert pipeline.verify(outcome.export.onnx_path, data_dir=synthetic_data_dir, verify_checksums=False).passed


@pytest.mark.slow
def test_the_median_pruner_stops_a_model_of_your_own_that_cannot_learn(synthetic_data_dir: Path,
                                                                      tmp_path: Path) -> None:
    def frozen_or_not(hp: kt.HyperParameters) -> keras.Model:
        model = guide_example()["small_mlp"](hp)
        rate = hp.Choice("rate", [0.01, 1e-9])
        model.compile(optimizer=keras.optimizers.Adam(rate), loss="categorical_crossentropy")
        return model

    space = small_space({"name": "frozen", "hyperparameters": {"batch_size": [32]},
                         "pruning": {"strategy": "median", "warmup_epochs": 1, "min_trials": 1}}, epochs=4)
    result = pipeline.search(space, "grid", hypermodel=frozen_or_not, data_dir=synthetic_data_dir,
                             verify_checksums=False, project_dir=tmp_path, name="frozen",
                             hyperparameters={"units": [64], "learning_rate": [0.01], "rate": [0.01, 1e-9]})
    assert result is not None
    by_rate = {t.hyperparameters["rate"]: t for t in result.trials}
    assert by_rate[0.01].status == "COMPLETED" and by_rate[0.01].epochs_run == 4
    assert by_rate[1e-9].status == "PRUNED" and by_rate[1e-9].epochs_run < 4


def test_a_model_that_breaks_the_contract_is_refused_in_one_line(synthetic_data_dir: Path, tmp_path: Path) -> None:
    def wrong_input(hp: kt.HyperParameters) -> keras.Model:
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        return model

    def uncompiled(hp: kt.HyperParameters) -> keras.Model:
        return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])

    space = small_space({"name": "bad", "hyperparameters": {"batch_size": [32]}}, epochs=1)
    common = {"data_dir": synthetic_data_dir, "verify_checksums": False, "project_dir": tmp_path}
    with pytest.raises(SpaceError, match=r"must take one input of shape \(None, 28, 28, 1\)"):
        pipeline.search(space, hypermodel=wrong_input, **common)
    with pytest.raises(SpaceError, match="must compile the model"):
        pipeline.search(space, hypermodel=uncompiled, **common)
    assert not list((tmp_path / "bad-grid").glob("*.json"))  # refused before the run records anything


def test_hyperparameters_are_found_as_keras_tuner_finds_them_and_must_be_finite() -> None:
    def build(hp: kt.HyperParameters) -> None:
        hp.Choice("units", [16, 64])
        hp.Int("layers", 1, 3)
        hp.Float("dropout", 0.0, 0.5, step=0.25)
        hp.Boolean("batch_norm")

    assert declared_hyperparameters(build, None) == {
        "units": (16, 64), "layers": (1, 2, 3), "dropout": (0.0, 0.25, 0.5), "batch_norm": (False, True)}
    assert declared_hyperparameters(build, {"units": [8]}) == {"units": (8,)}
    with pytest.raises(SpaceError, match=r"hp\.Choice, or give a step"):
        declared_hyperparameters(lambda hp: hp.Float("rate", 1e-4, 1e-1, sampling="log"), None)


def test_a_hypermodel_that_trains_itself_is_refused() -> None:
    class OwnFit(kt.HyperModel):
        def build(self, hp: kt.HyperParameters) -> keras.Model:
            raise AssertionError("not built")

        def fit(self, hp: kt.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
            return model.fit(*args, batch_size=hp.Choice("batch_size", [16, 32]), **kwargs)

    with pytest.raises(SpaceError, match="overrides fit"):
        user_build(OwnFit())
    assert user_build(guide_example()["small_mlp"])[0] == "small_mlp"


def test_a_space_keeps_for_your_model_only_what_the_training_loop_applies() -> None:
    report = parse_space({"name": "r", "hyperparameters": {"learning_rate": [0.1, 0.01], "batch_size": [32, 64],
                                                           "loss": ["categorical_crossentropy"]},
                          "training": {"epochs": 2}})
    with pytest.raises(SpaceError, match="searches learning_rate, which a model of your own sets"):
        report.with_model("mine", {"units": (16,)})
    own = report.with_model("mine", {"units": (16, 32), "learning_rate": (0.1,)})
    assert "4 of 4 configurations" in describe_plan(own, "grid", None, 1000)  # costed, roughly, as the study's CNN
    assert own.values() == {"batch_size": (32, 64), "units": (16, 32), "learning_rate": (0.1,)}
    assert own.num_configurations == 4
    assert own.effective_hyperparameters({"units": 32, "batch_size": 64}) == {
        "network": "mine", "batch_size": 64, "units": 32, "learning_rate": 0.1}
    one_rate = parse_space({"name": "r", "hyperparameters": {"learning_rate": [0.1], "batch_size": [32, 64],
                                                             "loss": ["categorical_crossentropy"]},
                            "training": {"epochs": 2}})
    assert one_rate.with_model("mine", {"batch_size": [128]}).values() == {"batch_size": (128,)}
    with pytest.raises(SpaceError, match="batch_size"):
        one_rate.with_model("mine", {"batch_size": [0]})

    # what a resumed run must match: another model, or other values of its own, is another search
    assert own.fingerprint()["model"] == {"name": "mine",
                                          "hyperparameters": {"units": [16, 32], "learning_rate": [0.1]}}
    assert own.fingerprint() != report.with_model("theirs", {"units": (16, 32), "learning_rate": (0.1,)}).fingerprint()
    assert "model" not in report.fingerprint()  # a run made before models of your own resumes as it was
