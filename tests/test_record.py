"""The run record: one owner for results.json and the per-trial files, every schema read, strict JSON out."""

from __future__ import annotations

import ast
import json
import math
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kmnist_search.base.errors import RunError
from kmnist_search.data import record
from kmnist_search.data.record import (
    RECORD_SCHEMA_VERSION,
    SCHEMA_PATH,
    Epoch,
    RunRecord,
    TrainingLog,
    read_results,
    read_training_log,
    write,
)
from kmnist_search.data.rundir import RunDir

FIXTURES = Path(__file__).parent / "fixtures" / "run_records"
PACKAGE = Path(record.__file__).parent
RECORD_FILES = {record.RESULTS_FILE, record.TRIAL_LOG_FILE, record.PRUNED_FILE, record.ENDED_FILE}
RECORD_KEYS = {"winner", "confirmation", "export", "settings", "search_trial", "retraining", "history",
               "best_val_accuracy", "search_val_accuracy", "epochs_run", "steps_per_epoch", "nonfinite"}


def strict(text: str) -> Any:
    """JSON as the standard defines it: NaN and Infinity refused."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} in strict JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("version", [1, 2])
def test_every_schema_this_package_wrote_is_read_as_today_s(version: int, tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    shutil.copy(FIXTURES / f"results-v{version}.json", path)
    old = json.loads(path.read_text())
    results = read_results(path)
    assert results is not None and results.schema_version == RECORD_SCHEMA_VERSION
    assert results.winner.trial_id == old["winner"]["trial_id"] and len(results.trials) == len(old["trials"])
    settings = results.winner.settings
    assert settings.hyperparameters["learning_rate"] == old["winner"]["hyperparameters"]["learning_rate"]
    assert settings.search_trial.epochs_trained == 3 and settings.seeds.split == old["seed"]
    assert settings.optimizer["name"] == "adadelta" and settings.retraining is None
    text = results.to_json()
    assert "/home/someone" not in text  # the absolute paths of schema 2 are gone: the folder says where files are
    diverged = results.trials[1].history[1]
    assert diverged.metric("loss") is None and diverged.nonfinite == ["loss", "val_loss"]
    assert results.trials[1].best_val_loss is None
    strict(text)  # NaN became null
    jsonschema.validate(json.loads(text), json.loads(SCHEMA_PATH.read_text()))


def test_the_shipped_schema_is_the_one_the_models_generate() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == record.json_schema(), (
        "the run record changed: regenerate the schema with "
        "`python -c 'from kmnist_search.data.record import write_json_schema; write_json_schema()'`")


def test_a_diverging_epoch_is_written_as_null_with_its_reason(tmp_path: Path) -> None:
    epoch = Epoch.model_validate({"epoch": 1, "loss": math.nan, "accuracy": 0.1, "val_loss": math.inf,
                                  "seconds": 1.5})
    write(tmp_path / "trial_log.json", TrainingLog(epochs=[epoch]))
    written = strict((tmp_path / "trial_log.json").read_text())
    assert written["epochs"][0] == {"epoch": 1, "seconds": 1.5, "nonfinite": ["loss", "val_loss"], "loss": None,
                                    "accuracy": 0.1, "val_loss": None}
    log = read_training_log(tmp_path / "trial_log.json")
    assert log is not None and log.epochs[0].nonfinite == ["loss", "val_loss"] and log.curve("loss") == (-math.inf,)


def _results() -> dict[str, Any]:
    return json.loads((FIXTURES / "results-v2.json").read_text())


@pytest.mark.parametrize(("damage", "named"), [
    (lambda r: r["trials"][0].update(epochs_run="3"), "trials.0.epochs_run"),
    (lambda r: r["winner"].update(test_accuracy=None), "winner.test_accuracy"),
    (lambda r: r["trials"][0]["history"][0].update(loss="high"), "trials.0.history.0.loss"),
    (lambda r: r["trials"][0].update(status="GREAT"), "trials.0.status"),
    (lambda r: r.update(trials={}), "trials"),
    (lambda r: r.update(surprise=1), "surprise"),
    (lambda r: r.pop("winner"), "winner"),
    (lambda r: r.update(schema_version="2"), "schema version 2"),
])
def test_a_results_file_of_the_wrong_shape_is_one_line_naming_the_field(damage: Any, named: str,
                                                                        tmp_path: Path) -> None:
    results = _results()
    damage(results)
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(RunError) as error:
        read_results(tmp_path / "results.json")
    message = str(error.value)
    assert "\n" not in message and named in message and str(tmp_path / "results.json") in message


@pytest.mark.parametrize(("text", "problem"), [
    ("[" * 100_000 + "]" * 100_000, "is truncated or not a JSON object|nested too deeply"),
    ('{"schema_version": 3, ', "is truncated or not a JSON object"),
    ("[1, 2]", "is truncated or not a JSON object"),
    ('{"schema_version": 99}', "schema version 99, which this kmnist-search does not read"),
])
def test_damaged_record_files_are_one_line_errors(text: str, problem: str, tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(RunError, match=problem):
        read_results(tmp_path / "results.json")


def test_a_record_file_larger_than_any_record_is_refused_before_it_is_read(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record, "MAX_RECORD_BYTES", 1000)
    (tmp_path / "trial_log.json").write_text(json.dumps({"epochs": [{"epoch": 1, "pad": 0.0}] * 100}))
    with pytest.raises(RunError, match="more than a kmnist-search record can"):
        read_training_log(tmp_path / "trial_log.json")


def test_a_trial_log_of_the_wrong_types_stops_the_summary_with_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "trial_0").mkdir(parents=True)
    (run / "trial_0" / "trial.json").write_text(json.dumps({"trial_id": "0", "status": "COMPLETED",
                                                             "hyperparameters": {"values": {"learning_rate": 0.1}}}))
    (run / "trial_0" / "trial_log.json").write_text(json.dumps({"epochs": [{"epoch": "one"}]}))
    with pytest.raises(RunError, match=r"trial_log.json: epochs.0.epoch: input should be a valid integer"):
        RunDir(run).trials()
    (run / "trial_0" / "trial_log.json").unlink()
    (run / "trial_0" / "trial.json").write_text(json.dumps({"trial_id": "0", "status": "COMPLETED",
                                                             "hyperparameters": {"values": 5}}))
    with pytest.raises(RunError, match=r"trial.json is not a Keras Tuner trial state"):
        RunDir(run).trials()


def test_an_export_is_recorded_through_the_typed_record(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "results-v2.json", tmp_path / "results.json")
    run = RunDir(tmp_path)
    run.record_export(record.ExportRecord(onnx="exports/x.onnx", model_card="exports/x.json", onnx_sha256="ab"))
    results = run.require_results()
    assert results.export is not None and results.export.onnx == "exports/x.onnx"
    assert strict((tmp_path / "results.json").read_text())["schema_version"] == RECORD_SCHEMA_VERSION


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(PACKAGE.rglob("*.py"))
            if path.name != "record.py"]


def test_no_module_but_the_record_names_or_indexes_the_record_files() -> None:
    """The record owns its formats: no other module spells a record file's name, or reads a record's
    fields by string key (a card or a summary row may share a key name, so only record-only keys count)."""
    offences = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in RECORD_FILES:
                offences.append(f"{path.name}:{node.lineno} names {node.value}")
            if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                    and node.slice.value in RECORD_KEYS):
                offences.append(f"{path.name}:{node.lineno} indexes [{node.slice.value!r}]")
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(".get") and node.args and \
                    isinstance(node.args[0], ast.Constant) and node.args[0].value in RECORD_KEYS:
                offences.append(f"{path.name}:{node.lineno} gets {node.args[0].value!r}")
    assert not offences, offences


def test_the_record_round_trips_through_json() -> None:
    results = read_results(FIXTURES / "results-v2.json")
    assert results is not None
    assert RunRecord.model_validate_json(results.to_json(), strict=True) == results


def test_every_record_of_a_trial_carries_the_number_the_console_shows() -> None:
    from kmnist_search.data.record import TrainingRun

    run = TrainingRun(trial_id="4", epochs_planned=3, epochs_trained=3, best_epoch=2, train_images=10,
                      validation_accuracy=0.5)
    assert run.to_dict()["trial"] == 5 and TrainingRun.model_validate(run.to_dict()) == run
    retraining = TrainingRun(epochs_planned=3, epochs_trained=3, best_epoch=3, train_images=10,
                             validation_accuracy=0.5)
    assert "trial" not in retraining.to_dict() and "trial_id" not in retraining.to_dict()
    results = read_results(FIXTURES / "results-v2.json")
    assert results is not None
    written = json.loads(results.to_json())
    assert [t["trial"] for t in written["trials"]] == [int(t["trial_id"]) + 1 for t in written["trials"]]
    assert written["winner"]["trial"] == int(written["winner"]["trial_id"]) + 1
