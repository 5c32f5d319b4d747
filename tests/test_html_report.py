"""The HTML search report: self-contained, complete, and working in a real browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from kmnist_search.data.datasets import load_dataset
from kmnist_search.data.record import Epoch, Trial, TrialStatus
from kmnist_search.data.rundir import RunDir
from kmnist_search.data.spaces import parse_space
from kmnist_search.report.html import importance
from kmnist_search.report.summarize import write_report
from kmnist_search.search.runner import SearchOptions, run_search
from tests.cli import Command

CHROMIUM = Path("/usr/bin/chromium")
TWO_RATES = {
    "name": "two",
    "hyperparameters": {"learning_rate": [1.0, 0.1], "batch_size": [64],
                        "loss": ["categorical_crossentropy", "mean_squared_error"], "conv_layers": "4-p-8",
                        "dense_units": 16},
    "training": {"epochs": 2, "validation_images": 100, "train_images": 300},
    "pruning": {"strategy": "median", "warmup_epochs": 1, "min_trials": 2},
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A four-trial grid search on synthetic data, with its report written."""
    from tests.conftest import write_kmnist_files

    root = tmp_path_factory.mktemp("html")
    dataset = load_dataset("kmnist", write_kmnist_files(root / "data"), verify_checksums=False)
    run_search(dataset, parse_space(TWO_RATES), SearchOptions("grid", root / "runs", "two"))
    write_report(root / "runs" / "two")
    return RunDir(root / "runs" / "two")


@pytest.mark.slow
def test_the_page_is_self_contained_complete_small_and_names_no_absolute_path(searched: RunDir) -> None:
    page = (searched.report_dir / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", page)  # nothing fetched
    assert page.count("<tr class=") == len(searched.trials()) == 4
    assert page.index("id=verdict") < page.index("id=history") < page.index("id=trial-table")  # the verdict first
    for anchor in ("history", "curves", "effects", "loss", "importance", "trial-table", "winner"):
        assert f"id={anchor}" in page, anchor
    assert page.count("<svg") >= 6 and "data:image/png;base64," in page and "@font-face" in page
    assert "name=viewport" in page and "class='completed winner'" in page
    assert str(searched.path.parent) not in page and "/root/" not in page and "/home/" not in page
    assert (searched.report_dir / "README.md").is_file()  # the Markdown page beside it
    assert (searched.report_dir / "index.html").stat().st_size < 1_500_000


@pytest.mark.slow
def test_the_verdict_says_who_won_how_sure_what_pruning_saved_and_the_study_beside_it(searched: RunDir) -> None:
    from kmnist_search.data import study

    page = (searched.report_dir / "index.html").read_text(encoding="utf-8")
    verdict = page[page.index("id=verdict"):page.index("</section>")]
    results = searched.read_results()
    assert results is not None
    assert f"Winner: trial {int(results.winner.trial_id) + 1}" in verdict
    assert "--confirm K" in verdict  # not confirmed: says so, and how
    trained = sum(t.epochs_run for t in results.trials)
    assert f"{trained} epochs trained of the {len(results.trials) * 2} an unpruned search trains" in verdict
    assert f"{study.BEST.test_accuracy:.2f}%" in verdict and "for comparison only" in verdict


def test_importance_comes_from_optunas_fanova_on_the_searched_hyperparameters() -> None:
    def trial(number: int, rate: float, loss: str, scores: list[float], status: TrialStatus) -> Trial:
        history = [Epoch(epoch=e, val_accuracy=s) for e, s in enumerate(scores, start=1)]
        return Trial(trial_id=str(number), hyperparameters={"learning_rate": rate, "batch_size": 64, "loss": loss},
                     status=status, best_val_accuracy=max(scores), best_val_loss=None, best_epoch=None,
                     epochs_run=len(scores), wall_time_s=None, message=None, history=history)

    trials = [trial(1, 0.1, "categorical_crossentropy", [0.80, 0.90, 0.95], "COMPLETED"),
              trial(2, 0.1, "mean_squared_error", [0.79, 0.89, 0.94], "COMPLETED"),
              trial(3, 0.001, "categorical_crossentropy", [0.30, 0.99], "PRUNED"),  # scored at epoch 1 only
              trial(4, 0.001, "mean_squared_error", [0.29], "PRUNED"),
              trial(5, 0.01, "mean_squared_error", [0.50], "FAILED")]
    result = importance(trials)
    assert result is not None and set(result.values) == {"learning_rate", "loss"}  # batch_size has one value
    assert sum(result.values.values()) == pytest.approx(1.0) and "fANOVA" in result.method
    assert result.epoch == 1 and result.trials == 4  # the failed trial is not scored
    assert result.values["learning_rate"] > 0.5 > result.values["loss"]  # the rate decides the epoch-1 scores


def test_summary_html_prints_the_page_path(searched: RunDir, tmp_path: Path, command: Command) -> None:
    copy = tmp_path / "run"
    shutil.copytree(searched.path, copy)
    (copy / "report" / "index.html").unlink()
    result = command("summary", str(copy), "--format", "html", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(copy / "report" / "index.html") and (copy / "report/index.html").is_file()


@pytest.mark.slow  # starts a browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("width", [390, 1400])
def test_the_report_works_in_headless_chromium_at_phone_and_desktop_width(searched: RunDir, tmp_path: Path,
                                                                          width: int) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("request", lambda request: errors.append(f"fetched {request.url}")
                if not request.url.startswith(("file:", "data:")) else None)
        page.goto((searched.report_dir / "index.html").as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing overflows sideways
        assert page.locator("#verdict").bounding_box()["y"] < 900  # type: ignore[index]  # on the first screen
        rows = page.locator("#trials tbody tr")
        assert rows.count() == len(searched.trials())
        column = [header.inner_text() for header in page.locator("#trials th").all()].index("val accuracy (%)")

        def accuracies() -> list[float | None]:
            return [json.loads(cell.get_attribute("data-value") or "null")
                    for cell in page.locator(f"#trials tbody tr td:nth-child({column + 1})").all()]

        header = page.locator("#trials th").nth(column)
        header.click()
        ascending = accuracies()
        header.click()
        descending = accuracies()
        assert ascending == sorted(ascending, key=lambda v: (v is None, v))
        assert [v for v in descending if v is not None] == sorted((v for v in ascending if v is not None),
                                                                   reverse=True)
        pruned = sum(t.status == "PRUNED" for t in searched.trials())
        page.select_option("#status", "pruned")
        assert page.locator("#trials tbody tr:not([hidden])").count() == pruned
        assert page.locator("#shown").inner_text() == f"{pruned} of {len(searched.trials())} trials"
        page.select_option("#status", "")
        page.fill("#filter", "mean_squared_error")
        assert page.locator("#trials tbody tr:not([hidden])").count() == sum(
            t.hyperparameters["loss"] == "mean_squared_error" for t in searched.trials())
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 50_000
