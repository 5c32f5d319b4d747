"""The Optuna journal: every run's trials, live, for optuna-dashboard and optuna.load_study."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kmnist_search.data.datasets import Dataset, load_dataset
from kmnist_search.data.rundir import RunDir
from kmnist_search.data.spaces import parse_space
from kmnist_search.search import callbacks
from kmnist_search.search.journal import JOURNAL_FILE, journal_path, sync_journal
from kmnist_search.search.runner import SearchOptions, run_search
from tests.conftest import assert_journal_is_the_record, load_journal
from tests.kills import Killed, killed_when

CHROMIUM = Path("/usr/bin/chromium")
SPACE = {"name": "journal", "hyperparameters": {"learning_rate": [1.0, 0.1], "batch_size": [64],
                                                "loss": ["categorical_crossentropy"], "conv_layers": "4-p-8",
                                                "dense_units": 16},
         "training": {"epochs": 3, "validation_images": 100, "train_images": 400},
         "pruning": {"strategy": "none"}}


def write_trial(run: Path, trial_id: int, status: str, epochs: int, learning_rate: float) -> None:
    """A trial's files as Keras Tuner and the search write them."""
    folder = run / f"trial_{trial_id}"
    folder.mkdir(parents=True, exist_ok=True)
    score = {"val_accuracy": {"observations": [{"value": [0.5 + 0.1 * epochs], "step": epochs}]}}
    (folder / "trial.json").write_text(json.dumps({
        "trial_id": str(trial_id), "status": status, "metrics": {"metrics": score if status == "COMPLETED" else {}},
        "hyperparameters": {"values": {"learning_rate": learning_rate, "batch_size": 64}}}))
    (folder / "trial_log.json").write_text(json.dumps({
        "epochs": [{"epoch": e, "val_accuracy": 0.5 + 0.1 * e, "seconds": 1.0, "cpu_seconds": 1.5}
                   for e in range(1, epochs + 1)], "wall_time_s": float(epochs)}))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    folder = tmp_path / "live"
    folder.mkdir()
    (folder / "space.json").write_text(json.dumps({"space": {"name": "s", "hyperparameters": {
        "learning_rate": [1.0, 0.1], "batch_size": [64]}}, "strategy": "grid", "seed": 42}))
    return folder


def test_the_journal_follows_the_trial_files_appending_only_what_is_new(run: Path) -> None:
    write_trial(run, 0, "COMPLETED", 3, 1.0)
    write_trial(run, 1, "RUNNING", 1, 0.1)
    sync_journal(RunDir(run))
    first = journal_path(RunDir(run)).read_bytes()
    sync_journal(RunDir(run))
    assert journal_path(RunDir(run)).read_bytes() == first  # nothing new, nothing written
    write_trial(run, 1, "RUNNING", 2, 0.1)
    sync_journal(RunDir(run))
    assert journal_path(RunDir(run)).read_bytes().startswith(first)  # a reader that has read `first` follows on
    study = load_journal(run)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "RUNNING"]
    done, running = study.trials
    assert done.params == {"learning_rate": 1.0, "batch_size": 64} and done.value == pytest.approx(0.8)
    assert done.intermediate_values == {1: 0.6, 2: 0.7, 3: pytest.approx(0.8)}
    assert done.user_attrs == {"trial": 1, "trial_id": "0", "epochs": 3, "seconds": 3.0, "cpu_seconds": 4.5,
                               "best_epoch": 3}
    assert done.distributions["learning_rate"].choices == (1.0, 0.1)  # the grid's values
    assert running.intermediate_values == {1: 0.6, 2: 0.7} and running.user_attrs["epochs"] == 2
    assert study.user_attrs == {"strategy": "grid", "seed": 42, "space": "s"}


def test_a_line_cut_by_a_kill_is_dropped_and_a_contradicted_journal_is_rewritten(run: Path) -> None:
    write_trial(run, 0, "COMPLETED", 2, 1.0)
    sync_journal(RunDir(run))
    with journal_path(RunDir(run)).open("ab") as journal:
        journal.write(b'{"op_code": 6, "worker_id": "x", "trial_id": 0, "ste')  # a write killed mid-line
    write_trial(run, 1, "COMPLETED", 3, 0.1)
    sync_journal(RunDir(run))
    assert [t.user_attrs["trial_id"] for t in load_journal(run).trials] == ["0", "1"]
    write_trial(run, 0, "RUNNING", 1, 1.0)  # a trial failed by its environment, retried by the rerun
    sync_journal(RunDir(run))
    study = load_journal(run)
    assert [(t.user_attrs["trial_id"], t.state.name) for t in study.trials] == [("0", "RUNNING"), ("1", "COMPLETE")]
    assert not [p for p in run.iterdir() if p.name.startswith(".kmnist-search-partial")]


def test_a_link_in_the_journal_s_place_is_replaced_never_followed(run: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious, no newline at the end")
    journal_path(RunDir(run)).symlink_to(victim)
    write_trial(run, 0, "COMPLETED", 2, 1.0)
    sync_journal(RunDir(run))
    assert victim.read_bytes() == b"precious, no newline at the end"  # neither cut nor appended to
    assert not journal_path(RunDir(run)).is_symlink()
    assert [t.user_attrs["trial_id"] for t in load_journal(run).trials] == ["0"]


@pytest.fixture
def dataset(synthetic_data_dir: Path) -> Dataset:
    return load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)


@pytest.mark.slow
def test_a_search_killed_between_an_epoch_and_the_journal_ends_with_the_journal_equal_to_the_record(
        dataset: Dataset, tmp_path: Path) -> None:
    space = parse_space(SPACE)
    options = SearchOptions("grid", tmp_path, "killed")

    def second_epoch_logged(run_dir: RunDir) -> bool:
        """The first trial has logged its second epoch: the journal has not heard of it yet."""
        return [len(t.history) for t in run_dir.trials()] == [2]

    with killed_when(callbacks, "sync_journal", second_epoch_logged), pytest.raises(Killed):
        run_search(dataset, space, options)
    study = load_journal(tmp_path / "killed")
    assert [len(t.intermediate_values) for t in study.trials] == [1]  # the journal lags the trial's log
    with journal_path(RunDir(tmp_path / "killed")).open("ab") as journal:
        journal.write(b'{"op_code": 4')  # and a later write was cut by the kill
    run_search(dataset, space, options)
    assert_journal_is_the_record(tmp_path / "killed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _dashboard_text(journal: Path, pages: list[tuple[str, str]]) -> list[str]:
    """What optuna-dashboard shows in Chromium at each page (path, and a text to wait for), for this journal."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen([shutil.which("optuna-dashboard") or "optuna-dashboard", str(journal), "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError("optuna-dashboard did not start") from None
                time.sleep(0.3)
        texts = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page()
            for path, shown in pages:
                page.goto(f"http://127.0.0.1:{port}{path}")
                page.wait_for_selector(f"text={shown}", timeout=30_000)
                page.wait_for_timeout(1500)
                texts.append(page.inner_text("body"))
            browser.close()
        return texts
    finally:
        server.terminate()
        server.wait(timeout=30)


needs_dashboard = pytest.mark.skipif(not CHROMIUM.exists() or shutil.which("optuna-dashboard") is None,
                                     reason="needs Debian's chromium and optuna-dashboard (.ci/run installs both)")


@pytest.mark.slow
@needs_dashboard
def test_optuna_dashboard_shows_a_finished_run_in_a_real_browser(dataset: Dataset, tmp_path: Path) -> None:
    results = run_search(dataset, parse_space(SPACE), SearchOptions("grid", tmp_path, "finished"))
    assert results is not None
    assert_journal_is_the_record(tmp_path / "finished")
    best = max(t.best_val_accuracy or 0.0 for t in results.trials)
    study_page, trials_page = _dashboard_text(tmp_path / "finished" / JOURNAL_FILE,
                                              [("/dashboard/studies/0", "Best Trial"),
                                               ("/dashboard/studies/0/trials", "/\\d+ Trials/")])
    assert f"{len(results.trials)} Trials" in trials_page
    assert "Best Trial" in study_page and f"{best}" in study_page


LIVE_SEARCH = """
import sys
from kmnist_search import pipeline
space = {"name": "live", "hyperparameters": {"learning_rate": [1.0, 0.1], "batch_size": [16],
         "loss": ["categorical_crossentropy"]}, "training": {"epochs": 40, "validation_images": 100,
         "train_images": 400}, "pruning": {"strategy": "none"}}
pipeline.search(space, "grid", data_dir=sys.argv[1], project_dir=sys.argv[2], name="live", verify_checksums=False)
"""


@pytest.mark.slow
@needs_dashboard
def test_optuna_dashboard_shows_a_search_while_it_runs(synthetic_data_dir: Path, tmp_path: Path) -> None:
    search = subprocess.Popen([sys.executable, "-c", LIVE_SEARCH, str(synthetic_data_dir), str(tmp_path)],
                              env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    run = tmp_path / "live"
    try:
        deadline = time.monotonic() + 300
        while not ((run / JOURNAL_FILE).is_file()
                   and any(len(t.intermediate_values) >= 2 for t in load_journal(run).trials)):
            assert search.poll() is None, search.stderr.read().decode() if search.stderr else ""
            assert time.monotonic() < deadline, "the search logged no epochs to its journal"
            time.sleep(0.5)
        (trials_page,) = _dashboard_text(run / JOURNAL_FILE, [("/dashboard/studies/0/trials", "/\\d+ Trials/")])
        assert "1 Trials" in trials_page and "Running" in trials_page
        assert search.poll() is None  # the page was read while the search ran
    finally:
        search.kill()
        search.wait(timeout=60)


def test_the_journal_is_readable_by_trials_dataframe(run: Path) -> None:
    write_trial(run, 0, "COMPLETED", 2, 1.0)
    sync_journal(RunDir(run))
    frame: Any = load_journal(run).trials_dataframe()
    assert list(frame["params_learning_rate"]) == [1.0] and list(frame["user_attrs_trial"]) == [1]
