"""Each strategy on a tiny budget, grid resume (keras-tuner #1055), and the run directory contract."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kmnist_search.base.errors import RunError
from kmnist_search.data.datasets import Dataset, load_dataset
from kmnist_search.data.spaces import SearchSpace, load_space, parse_space
from kmnist_search.search.plan import describe_plan, planned_trials
from kmnist_search.search.runner import SearchOptions, run_search
from tests.conftest import SMALL_NETWORK

TINY = {
    "name": "tiny",
    "hyperparameters": {"learning_rate": [1.0, 0.1], "batch_size": [64], "loss": ["categorical_crossentropy"],
                        **SMALL_NETWORK},
    "training": {"epochs": 2, "validation_images": 100, "train_images": 400},
    "pruning": {"strategy": "none"},  # every trial completes: what these tests check is not pruning
}


@pytest.fixture
def tiny_space() -> SearchSpace:
    return parse_space(TINY)


@pytest.fixture
def dataset(synthetic_data_dir: Path) -> Dataset:
    return load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)


def options(tmp_path: Path, strategy: str, **kwargs: object) -> SearchOptions:
    return SearchOptions(strategy=strategy, project_dir=tmp_path / "runs", name=f"tiny-{strategy}", **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["grid", "random", "bayesian", "hyperband"])
def test_every_strategy_runs_and_reports(strategy: str, tiny_space: SearchSpace, dataset: Dataset,
                                         tmp_path: Path) -> None:
    results = run_search(dataset, tiny_space, options(tmp_path, strategy, max_trials=2))
    assert results is not None
    run_dir = tmp_path / "runs" / f"tiny-{strategy}"
    assert json.loads((run_dir / "results.json").read_text()) == results.to_dict()
    trials = results.trials
    assert trials and all(t.status == "COMPLETED" for t in trials)
    assert all(t.epochs_run >= 1 and (t.wall_time_s or 0) > 0 for t in trials)
    assert all(len(t.history) == t.epochs_run for t in trials)
    winner = results.winner
    assert winner.val_accuracy == max(t.best_val_accuracy or 0 for t in trials)
    assert 0.0 <= winner.test_accuracy <= 1.0 and (run_dir / "winner.keras").is_file()
    assert results.dataset.to_dict() | {"checksums": None} == {
        "name": "kmnist", "checksums": None, "train_images": 400, "validation_images": 100, "test_images": 200}
    assert all(set(t.hyperparameters) == set(TINY["hyperparameters"]) for t in trials)
    if strategy != "hyperband":
        configurations = {json.dumps(t.hyperparameters, sort_keys=True) for t in trials}
        assert len(configurations) == len(trials) == 2


@pytest.mark.slow
def test_a_finished_search_keeps_the_weights_only_of_its_winner(dataset: Dataset, tmp_path: Path) -> None:
    space = parse_space({**TINY, "hyperparameters": {**TINY["hyperparameters"], "learning_rate": [1.0, 0.1, 1e-4]},
                         "training": {**TINY["training"], "epochs": 1}})
    results = run_search(dataset, space, options(tmp_path, "grid"))
    assert results is not None and len(results.trials) == 3
    kept = sorted(p.parent.name for p in (tmp_path / "runs" / "tiny-grid").glob("trial_*/checkpoint.weights.h5"))
    best = max(t.score or 0.0 for t in results.trials)
    assert kept == sorted(f"trial_{t.trial_id}" for t in results.trials if t.score == best)  # the winner (and ties)
    assert f"trial_{results.winner.trial_id}" in kept


@pytest.mark.slow
def test_synthetic_classes_are_learnable(tiny_space: SearchSpace, dataset: Dataset, tmp_path: Path) -> None:
    """The pipeline really trains: lr 1.0 learns the synthetic bars well above chance."""
    results = run_search(dataset, tiny_space.with_epochs(3), options(tmp_path, "grid", max_trials=1))
    assert results is not None and results.winner.test_accuracy > 0.5


@pytest.mark.slow
def test_grid_search_resumes_without_rerunning_trials(tiny_space: SearchSpace, dataset: Dataset,
                                                      tmp_path: Path) -> None:
    first = run_search(dataset, tiny_space, options(tmp_path, "grid", max_trials=1))
    assert first is not None and len(first.trials) == 1
    (first_log_path,) = (tmp_path / "runs" / "tiny-grid").glob("trial_*/trial_log.json")
    first_log = first_log_path.read_text()
    # A new process reloading the grid (keras-tuner 1.4.8 crashes here, upstream #1055).
    resumed = run_search(dataset, tiny_space, options(tmp_path, "grid"))
    assert resumed is not None
    values = [t.hyperparameters["learning_rate"] for t in resumed.trials]
    assert sorted(values) == [0.1, 1.0]
    assert first_log_path.read_text() == first_log
    again = run_search(dataset, tiny_space, options(tmp_path, "grid"))
    assert again is not None and [t.trial_id for t in again.trials] == [t.trial_id for t in resumed.trials]


@pytest.mark.slow
def test_resume_with_a_changed_space_is_refused(tiny_space: SearchSpace, dataset: Dataset, tmp_path: Path) -> None:
    run_search(dataset, tiny_space.with_epochs(1), options(tmp_path, "grid", max_trials=1))
    with pytest.raises(RunError, match=r"different search \(epochs changed\).*--overwrite"):
        run_search(dataset, tiny_space, options(tmp_path, "grid", max_trials=1))
    results = run_search(dataset, tiny_space, options(tmp_path, "grid", max_trials=1, overwrite=True))
    assert results is not None and results.trials[0].epochs_run == 2
    with pytest.raises(RunError, match=r"different search \(epochs changed\)"):  # the overwrite kept its record
        run_search(dataset, tiny_space.with_epochs(1), options(tmp_path, "grid", max_trials=1))


def test_unwritable_project_dir(tiny_space: SearchSpace, dataset: Dataset, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    bad = SearchOptions(strategy="grid", project_dir=blocker, name="x")
    with pytest.raises(RunError, match="choose another --project-dir"):
        run_search(dataset, tiny_space, bad)


def test_dry_run_plans_the_study_grid() -> None:
    space = load_space("report")
    plan = describe_plan(space, "grid", None, train_pool=54000)
    assert "40 of 40 configurations" in plan
    assert sum(1 for line in plan.splitlines() if "_error" in line or "_crossentropy" in line) == 40
    hours = float(plan.rsplit("estimated total: ", 1)[1].split(" h")[0])
    assert 3 < hours < 20  # the study's grid: 14.5 h with plain Keras here, about 5 h as trials
    assert planned_trials(space, "bayesian", None) == 10 and planned_trials(space, "grid", 5) == 5


def test_dry_run_counts_the_winners_retraining() -> None:
    space = load_space("extended-refine")  # one small search epoch, then a long retrain on every image
    plan = describe_plan(space, "grid", None, train_pool=54000)
    retrain_line = next(line for line in plan.splitlines() if line.startswith("then the winner is retrained"))
    assert f"all 54000 training images for {space.retrain_epochs} epochs" in retrain_line
    total_minutes = float(plan.rsplit("estimated total: ", 1)[1].split(" min")[0])
    search_only = describe_plan(replace(space, retrain_epochs=0), "grid", None, train_pool=54000)
    assert total_minutes > 5 * float(search_only.rsplit("estimated total: ", 1)[1].split(" min")[0])


def test_a_plan_of_one_reads_in_the_singular() -> None:
    plan = describe_plan(load_space("resnet14"), "grid", None, train_pool=54000)
    assert "1 of 1 configuration, 1 epoch each," in plan and plan.endswith("(rough; 1 trial)")


@pytest.mark.slow
def test_tensorboard_logs_carry_hparams(tiny_space: SearchSpace, dataset: Dataset, tmp_path: Path) -> None:
    run_search(dataset, tiny_space.with_epochs(1), options(tmp_path, "grid", max_trials=2, tensorboard=True))
    logs = tmp_path / "runs" / "tiny-grid" / "tensorboard"
    events = list(logs.rglob("events.out.tfevents.*"))
    trial_dirs = {p.relative_to(logs).parts[0] for p in events}
    assert len(trial_dirs) == 2
    hparams = [p for p in events if b"_hparams_/session_start_info" in p.read_bytes()]
    assert {p.relative_to(logs).parts[0] for p in hparams} == trial_dirs
    assert any(b"learning_rate" in p.read_bytes() for p in hparams)


@pytest.mark.slow
def test_winner_is_retrained_on_all_training_images(dataset: Dataset, tmp_path: Path) -> None:
    data = {**TINY, "training": {**TINY["training"], "retrain_epochs": 2, "lr_schedule": "cosine",
                                 "early_stopping_patience": 1}}
    results = run_search(dataset, parse_space(data), options(tmp_path, "grid", max_trials=1))
    assert results is not None
    retrained = results.winner.settings.retraining
    assert retrained is not None and retrained.train_images == 500 and results.dataset.train_images == 400
    assert 1 <= (retrained.epochs_trained or 0) <= 2 and (retrained.best_epoch or 0) <= (retrained.epochs_trained or 0)
    assert retrained.epochs_planned == 2
    log = json.loads((tmp_path / "runs" / "tiny-grid" / "retrain_log.json").read_text())
    assert results.winner.val_accuracy == max(e["val_accuracy"] for e in log["epochs"])
    assert log["epochs"][0]["learning_rate"] == pytest.approx(1.0)  # cosine starts at the full rate
