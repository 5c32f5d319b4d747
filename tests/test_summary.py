"""Summaries: ranked table, effects arithmetic, every output format, figures and the report page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from kmnist_search.base.errors import RunError
from kmnist_search.data.record import Trial
from kmnist_search.report.rankings import format_trials_table, hyperparameter_effects, most_important
from kmnist_search.report.summarize import (
    build_summary,
    from_csv,
    load_run,
    render,
    summarise,
    to_csv,
    to_markdown,
    write_report,
)
from tests.cli import assert_one_line_error, run_cli
from tests.conftest import FinishedRun


def record(trial_id: str, lr: float, loss: str, accuracy: float | None, status: str = "COMPLETED",
           message: str | None = None) -> Trial:
    return Trial.model_validate(dict(
        trial_id=trial_id, hyperparameters={"learning_rate": lr, "loss": loss}, status=status,
        best_val_accuracy=accuracy, best_val_loss=None if accuracy is None else 1 - accuracy,
        best_epoch=3 if accuracy else None, epochs_run=3, wall_time_s=12.5, message=message))


TRIALS = [
    record("0", 1.0, "categorical_crossentropy", 0.90),
    record("1", 1.0, "mean_squared_error", 0.70),
    record("2", 0.1, "categorical_crossentropy", 0.80),
    record("3", 0.1, "mean_squared_error", 0.20),
    record("4", 10.0, "mean_squared_error", None, "FAILED", "loss became nan at epoch 1"),
]


def test_learning_curves_are_drawn_by_the_hyperparameters_the_trials_varied() -> None:
    from kmnist_search.report.figures import compared_hyperparameters

    same_batch = [Trial.model_validate({**t.model_dump(), "hyperparameters": {**t.hyperparameters, "batch_size": 64}})
                  for t in TRIALS]
    assert compared_hyperparameters(same_batch) == ["learning_rate", "loss"]
    assert compared_hyperparameters(same_batch[:1]) == ["batch_size"]  # nothing varied: the first, once
    assert compared_hyperparameters([]) == []


def test_effects_arithmetic() -> None:
    effects = hyperparameter_effects(TRIALS)
    by_lr = {e.value: (e.trials, e.best_val_accuracy, e.mean_val_accuracy) for e in effects["learning_rate"]}
    assert by_lr == {0.1: (2, 0.80, pytest.approx(0.50)), 1.0: (2, 0.90, pytest.approx(0.80))}
    by_loss = {e.value: e.mean_val_accuracy for e in effects["loss"]}
    assert by_loss == {"categorical_crossentropy": pytest.approx(0.85), "mean_squared_error": pytest.approx(0.45)}
    assert [e.value for e in effects["learning_rate"]] == [0.1, 1.0]  # failed lr 10.0 has no score
    name, spread = most_important(effects)  # type: ignore[misc]
    assert name == "loss" and spread == pytest.approx(0.40)


def test_table_is_ranked_and_shows_failures() -> None:
    lines = format_trials_table(TRIALS).splitlines()
    assert lines[0].split()[:2] == ["rank", "trial"]
    assert [line.split()[1] for line in lines[1:]] == ["1", "3", "2", "4", "5"]  # counted from 1
    assert lines[-1].endswith("failed: loss became nan at epoch 1")
    assert len(format_trials_table(TRIALS, top=2).splitlines()) == 3


def test_csv_round_trips_with_the_console_s_numbers_and_rounded_figures() -> None:
    ranked = sorted(TRIALS, key=lambda t: (t.best_val_accuracy is None, -(t.best_val_accuracy or 0)))
    text = to_csv(TRIALS)
    assert [row.split(",")[1] for row in text.splitlines()[1:]] == [str(int(t.trial_id) + 1) for t in ranked]
    assert all(len(cell.split(".")[1]) <= 4 for row in text.splitlines()[1:] for cell in row.split(",")[3:6]
               if "." in cell)
    read = from_csv(text)
    assert [t.trial_id for t in read] == [t.trial_id for t in ranked]
    for got, want in zip(read, ranked, strict=True):
        assert got.best_val_accuracy == (None if want.best_val_accuracy is None else round(want.best_val_accuracy, 4))
        assert got.best_val_loss == (None if want.best_val_loss is None else round(want.best_val_loss, 4))
        assert (got.status, got.hyperparameters, got.message) == (want.status, want.hyperparameters, want.message)


def test_json_and_markdown(tmp_path: Path) -> None:
    summary = build_summary(tmp_path, TRIALS, None)
    assert json.loads(render(summary, TRIALS, None, "json", None)) == json.loads(json.dumps(summary))
    assert summary["most_important"]["hyperparameter"] == "loss" and summary["winner"] is None
    assert [t["trial_id"] for t in summary["trials"]] == ["0", "2", "1", "3", "4"]
    markdown = to_markdown(summary, TRIALS)
    assert markdown.splitlines()[0].startswith("| rank | trial | learning_rate | loss |")
    assert "**Matters most: `loss`**" in markdown
    assert "no winner yet" in render(summary, TRIALS, None, "table", None)


@pytest.mark.slow
def test_report_figures_and_page(finished_run: FinishedRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    text = summarise(run_dir)
    assert "winner: trial" in text and "matters most" not in text  # one configuration: nothing to compare
    report = run_dir / "report"
    assert not report.exists()  # a summary only reads
    write_report(run_dir)
    expected = {"effects.png", "confusion_matrix.png", "prediction_grid.png", "README.md",
                "learning_curves_batch_size.png"}  # one configuration: the curves drawn once, by the first name
    assert {p.name for p in report.iterdir()} == expected | {"index.html"}
    for png in report.glob("*.png"):
        with Image.open(png) as image:
            assert image.size[0] > 400 and image.size[1] > 300
    page = (report / "README.md").read_text()
    for png in expected - {"README.md"}:
        assert f"({png})" in page
    assert "| 2 su | す | U+3059 |" in page and "test accuracy" in page


@pytest.mark.slow
def test_summary_of_an_interrupted_run(finished_run: FinishedRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    (run_dir / "results.json").unlink()
    trial_json = next(run_dir.glob("trial_*/trial.json"))
    state = json.loads(trial_json.read_text())
    state.update(status="RUNNING", score=None, metrics={"metrics": {}})
    trial_json.write_text(json.dumps(state))
    trials, results = load_run(run_dir)
    assert results is None and trials[0].status == "RUNNING" and trials[0].epochs_run == 2
    text = render(build_summary(run_dir, trials, None), trials, None, "table", None)
    assert "running" in text and "no winner yet" in text
    write_report(run_dir)
    assert (run_dir / "report" / "README.md").read_text().count("has not finished") == 1


def test_summary_cli_formats(finished_run: FinishedRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    as_json = run_cli("kmnist_search.summary", str(run_dir), "--format", "json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["winner"]["trial_id"] == json.loads(
        (run_dir / "results.json").read_text())["winner"]["trial_id"]
    as_csv = run_cli("kmnist_search.summary", str(run_dir), "--format", "csv", cwd=tmp_path)
    assert from_csv(as_csv.stdout)[0].trial_id == str(int(json.loads(as_json.stdout)["trials"][0]["trial_id"]))
    assert_one_line_error(run_cli("kmnist_search.summary", str(tmp_path / "none"), cwd=tmp_path),
                          "is not a run directory")
    with pytest.raises(RunError, match="is not a kmnist-search run folder"):
        load_run(tmp_path)  # a folder of other things
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="holds no trials"):
        load_run(tmp_path / "empty")


def test_figures_name_classes_in_kana_and_fall_back_to_romaji(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import warnings

    import numpy as np

    from kmnist_search.data.datasets import KMNIST
    from kmnist_search.report import figures

    assert figures.KANA_FONT and figures.class_label(KMNIST, 2) == "2 す"
    labels = np.arange(10, dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a kana missing from the font would warn "Glyph ... missing from font"
        figures.plot_prediction_grid(np.zeros((10, 28, 28), np.uint8), labels, labels, KMNIST, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    monkeypatch.setattr(figures, "KANA_FONT", False)
    assert figures.class_label(KMNIST, 2) == "2 su"
