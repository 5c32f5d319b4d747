"""The Python API: the whole job from a notebook, with typed results, and the run directory's owner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kmnist_search import pipeline as ks
from kmnist_search.base.errors import RunError
from kmnist_search.data.record import RECORD_SCHEMA_VERSION
from kmnist_search.data.rundir import RunDir
from tests.cli import TINY_SPACE
from tests.conftest import FinishedRun


@pytest.mark.slow
def test_the_whole_job_from_python(synthetic_data_dir: Path, tmp_path: Path) -> None:
    space_file = tmp_path / "api.toml"
    # two epochs, as the export tests train: a one-epoch model's near-even probabilities leave int8 no margin
    space_file.write_text(TINY_SPACE.replace('"tiny"', '"api"').replace("epochs = 1", "epochs = 2"))
    common = {"data_dir": synthetic_data_dir, "verify_checksums": False}
    outcome = ks.run(space_file, "grid", project_dir=tmp_path / "runs", exports_dir=tmp_path / "exports",
                     quantize_export=True, **common)
    assert isinstance(outcome, ks.RunOutcome) and isinstance(outcome.search, ks.SearchResult)
    winner = outcome.search.winner
    assert isinstance(winner, ks.Winner) and winner.hyperparameters["learning_rate"] in (1.0, 0.1)
    assert winner.settings.hyperparameters["learning_rate"] == winner.hyperparameters["learning_rate"]
    assert len(outcome.search.trials) == 2 and winner.model_path.is_file()
    assert outcome.export is not None and outcome.export.onnx_path == tmp_path / "exports" / "api-grid.onnx"
    assert outcome.export.test_accuracy == pytest.approx(winner.test_accuracy, abs=1e-6)
    assert outcome.quantized is not None and outcome.quantized.card["precision"] == "int8"
    assert outcome.report_path is not None and outcome.report_path.is_file()

    verification = ks.verify(outcome.export.onnx_path, **common)
    assert verification.passed and verification.report.images == 200
    evaluation = ks.evaluate(outcome.export, **common)
    assert evaluation.test_accuracy == pytest.approx(outcome.export.test_accuracy, abs=1e-6)
    assert len(evaluation.per_class_accuracy) == 10
    assert "winner: trial" in ks.summarise(outcome.search)
    assert json.loads(ks.summarise(outcome.search, "json"))["winner"]["trial_id"] == winner.trial_id

    # Run again: the finished search is reported as it is and its export is left untouched.
    written = outcome.export.onnx_path.stat().st_mtime_ns
    again = ks.run(space_file, "grid", project_dir=tmp_path / "runs", exports_dir=tmp_path / "exports", **common)
    assert again.search.resumed_finished and again.export is not None  # the export it made before, as it is
    assert again.export.onnx_path == outcome.export.onnx_path and again.export.card == outcome.export.card
    assert again.search.winner.trial_id == winner.trial_id
    assert outcome.export.onnx_path.stat().st_mtime_ns == written


@pytest.mark.slow
def test_an_in_memory_space_and_a_loaded_dataset(synthetic_data_dir: Path, tmp_path: Path) -> None:
    from kmnist_search.data.datasets import load_dataset

    dataset = load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)
    space = {"name": "memory", "hyperparameters": {"learning_rate": [1.0], "batch_size": [64],
                                                   "loss": ["categorical_crossentropy"]},
             "training": {"epochs": 1, "validation_images": 100, "train_images": 300}}
    result = ks.search(space, "random", dataset=dataset, project_dir=tmp_path, max_trials=1)
    assert result is not None and result.run_dir.path == tmp_path / "memory-random"
    assert [t.trial_id for t in result.trials] == [result.winner.trial_id]


def test_api_errors_are_the_packages_one_line_errors(synthetic_data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="must be at least 1"):
        ks.search("quick", max_trials=0, data_dir=synthetic_data_dir, project_dir=tmp_path)
    with pytest.raises(RunError, match="is not a run directory"):
        ks.open_run(tmp_path / "nothing")


@pytest.mark.slow
def test_results_of_the_first_schema_are_read_with_their_settings_resolved(finished_run: FinishedRun,
                                                                          tmp_path: Path) -> None:
    run_dir = tmp_path / "old-run"
    shutil.copytree(finished_run[0], run_dir)
    current = json.loads((run_dir / "results.json").read_text())
    old = json.loads(json.dumps(current))
    old["schema_version"] = 1
    del old["winner"]["settings"]
    old["winner"]["retrained"] = None
    (run_dir / "results.json").write_text(json.dumps(old))
    upgraded = RunDir(run_dir).read_results()
    assert upgraded is not None and upgraded.schema_version == RECORD_SCHEMA_VERSION
    settings, expected = upgraded.winner.settings.to_dict(), current["winner"]["settings"]
    assert settings["hyperparameters"] == expected["hyperparameters"]
    assert settings["optimizer"]["learning_rate"] == expected["optimizer"]["learning_rate"]
    assert settings["search_trial"]["epochs_trained"] == expected["search_trial"]["epochs_trained"]
    assert ks.open_run(run_dir).winner.settings.to_dict() == settings
