"""Every completed trial measured as it will ship (ONNX size, onnxruntime latency, parity), and the winner
chosen within a deployment budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kmnist_search import pipeline
from kmnist_search.base.errors import RunError
from kmnist_search.data.datasets import Dataset, load_dataset
from kmnist_search.data.record import Budget, Deployment, Speed, Trial
from kmnist_search.data.rundir import RunDir
from kmnist_search.data.spaces import parse_space
from kmnist_search.export.deployment import TrialMeasurer
from kmnist_search.report.rankings import pareto_front, within_budget
from tests.cli import assert_one_line_error, run_cli
from tests.conftest import EXPORT_NETWORK, load_journal
from tests.kills import Killed

# Two widths of a CNN a quarter of the study's: dense 8 is about 0.2 MB in ONNX, dense 96 about 1.8 MB.
WIDTHS = {
    "name": "widths",
    "hyperparameters": {"learning_rate": [1.0], "batch_size": [64], "loss": ["categorical_crossentropy"],
                        "conv_layers": EXPORT_NETWORK["conv_layers"], "dense_units": [96, 8]},
    "training": {"epochs": 2, "validation_images": 100, "train_images": 300},
    "pruning": {"strategy": "none"},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    from tests.conftest import write_kmnist_files

    return load_dataset("kmnist", write_kmnist_files(tmp_path_factory.mktemp("data")), verify_checksums=False)


@pytest.mark.slow
def test_a_budget_picks_the_most_accurate_trial_that_fits_confirms_only_those_and_everything_carries_it(
        dataset: Dataset, tmp_path: Path) -> None:
    result = pipeline.search(parse_space(WIDTHS), "grid", dataset=dataset, project_dir=tmp_path, name="fits",
                             budget_mb=1.0, confirm=1)
    assert result is not None and result.results.budget == Budget(max_mb=1.0)
    trials = result.results.trials
    assert result.results.confirmation is not None
    confirmed = {c.trial_id for c in result.results.confirmation.configurations}
    assert confirmed == {t.trial_id for t in trials if t.hyperparameters["dense_units"] == 8}  # only what fits
    assert all(t.deployment is not None for t in trials)
    sizes = {t.hyperparameters["dense_units"]: t.deployment.onnx_bytes for t in trials}  # type: ignore[union-attr]
    assert sizes[8] < 1_000_000 < sizes[96]
    winner = result.results.trial(result.winner.trial_id)
    assert winner is not None and winner.hyperparameters["dense_units"] == 8  # the only one within 1 MB
    for trial in trials:
        deployment = trial.deployment
        assert deployment is not None and deployment.parity_passed and deployment.measure_seconds > 0
        assert deployment.speed.single_image_ms > 0 and deployment.speed.reference_single_image_ms > 0
    summary = pipeline.summarise(result)
    assert "budget: 1 MB: the most accurate trial within it" in summary and "as shipped:" in summary
    assert "no other beats on accuracy, latency and size" in summary
    page = pipeline.write_report(result).read_text(encoding="utf-8")
    assert "id=deployment" in page and "Chosen within the budget of 1 MB" in page
    assert "MB (shipped)</th>" in page and f"{sizes[8] / 1_000_000:.3f}</td>" in page
    exported = pipeline.export(result, dataset=dataset, exports_dir=tmp_path / "exports")
    shipped = exported.card["models"][0]["deployment"]
    assert shipped["budget"] == {"max_ms": None, "max_mb": 1.0} and shipped["onnx_bytes"] == sizes[8]
    assert "within the budget of 1 MB" in exported.onnx_path.with_suffix(".md").read_text(encoding="utf-8")
    journal = {t.user_attrs["trial_id"]: t.user_attrs for t in load_journal(result.run_dir.path).trials}
    assert {k: v["onnx_bytes"] for k, v in journal.items()} == {t.trial_id: t.deployment.onnx_bytes  # type: ignore[union-attr]
                                                               for t in trials}


@pytest.mark.slow
def test_when_nothing_fits_the_search_says_so_in_one_line_and_names_the_closest_trial(
        dataset: Dataset, tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"no trial fits the budget of 0.01 MB: the closest is trial \d"):
        pipeline.search(parse_space(WIDTHS), "grid", dataset=dataset, project_dir=tmp_path, name="tight",
                        budget_mb=0.01)


def test_a_budget_is_checked_before_anything_loads(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("kmnist_search.run", "--space", "quick", "--budget-ms", "-1", cwd=tmp_path),
                          "--budget-ms -1.0: must be a finite number above 0")
    assert_one_line_error(run_cli("kmnist_search.run", "--space", "quick", "--budget-mb", "1e400", cwd=tmp_path),
                          "--budget-mb inf: must be a finite number above 0")
    assert_one_line_error(run_cli("kmnist_search.run", "--space", "quick", "--budget-mb", "1", "--no-measure",
                                  cwd=tmp_path), "a budget needs every trial measured")


@pytest.mark.slow
def test_a_kill_before_a_trial_is_measured_is_measured_by_the_rerun_and_nothing_is_measured_twice(
        dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space = parse_space(WIDTHS)
    measure = TrialMeasurer.measure
    calls: list[int] = []

    def killed_after_the_second(self: TrialMeasurer, trained: Any) -> Deployment:
        measured = measure(self, trained)
        calls.append(1)
        if len(calls) == 2:
            raise Killed  # the second trial measured, its measurement not yet written
        return measured

    monkeypatch.setattr(TrialMeasurer, "measure", killed_after_the_second)
    with pytest.raises(Killed):
        pipeline.search(space, "grid", dataset=dataset, project_dir=tmp_path, name="killed", measure=True)
    run_dir = RunDir(tmp_path / "killed")
    first = next(t for t in run_dir.trials() if t.deployment is not None)
    recorded = RunDir.deployment_path(run_dir.path / f"trial_{first.trial_id}").read_bytes()
    assert [t.status for t in run_dir.trials()] == ["COMPLETED", "COMPLETED"]  # the second ended, then the kill
    calls[:] = [1, 1, 1]  # no more kills: count the rerun's measurements
    result = pipeline.search(space, "grid", dataset=dataset, project_dir=tmp_path, name="killed", measure=True)
    assert result is not None and len(calls) == 4  # only the trial the kill left unmeasured
    assert all(t.deployment is not None for t in result.results.trials)
    assert RunDir.deployment_path(run_dir.path / f"trial_{first.trial_id}").read_bytes() == recorded


def measured(trial_id: str, accuracy: float, ms: float, size: int) -> Trial:
    speed = Speed(single_image_ms=ms, single_image_p90_ms=ms, images_per_second=1000 / ms,
                  reference_single_image_ms=0.3, reference_images_per_second=3000.0, ratio_to_reference=ms / 0.3,
                  protocol="test", machine="test")
    return Trial(trial_id=trial_id, hyperparameters={}, status="COMPLETED", best_val_accuracy=accuracy,
                 best_val_loss=0.1, best_epoch=1, epochs_run=1, wall_time_s=1.0, message=None,
                 deployment=Deployment(onnx_bytes=size, parity_label_agreement=1.0, parity_passed=True, speed=speed,
                                       measure_seconds=1.0))


def test_the_front_keeps_the_trials_no_other_beats_with_latency_noise_counted_as_a_tie() -> None:
    trials = [measured("0", 0.93, 0.37, 4_800_000), measured("1", 0.78, 0.34, 4_800_000),  # same size, 9% apart
              measured("2", 0.83, 0.06, 50_000), measured("3", 0.80, 0.06, 60_000),  # 3: worse and larger than 2
              measured("4", 0.95, 0.12, 1_200_000)]
    assert [t.trial_id for t in pareto_front(trials)] == ["2", "4"]
    budget = Budget(max_ms=0.1, max_mb=0.055)
    assert [t.trial_id for t in within_budget(trials, budget)] == ["2"]
    with pytest.raises(RunError, match=r"no trial fits the budget of 0\.01 ms per image: the closest is trial 3 "):
        within_budget(trials, Budget(max_ms=0.01))
