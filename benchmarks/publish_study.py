"""Publish a finished search of the study's grid as docs/study/: summary, report page, figures, trial table.

Run: python benchmarks/publish_study.py runs/report-grid docs/study --reading READING.md [--timing "..."]

Writes ``README.md`` (the 40-configuration table, each factor's effect, hyperparameter importance, and
the study's reported figures side by side with this search's for the same settings, followed by the
reading in ``--reading``), ``trials.csv``, and copies the run's report page and figures. Small files
only: no checkpoints or models.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from records import description

from kmnist_search.base.formatting import duration, format_value, percent, trial_number
from kmnist_search.data import study
from kmnist_search.data.record import RunRecord, Trial
from kmnist_search.data.rundir import RunDir
from kmnist_search.report.html import importance
from kmnist_search.report.rankings import hyperparameter_effects
from kmnist_search.report.summarize import to_csv, write_report


def key(trial: Trial) -> tuple[Any, ...]:
    values = trial.hyperparameters
    return float(values["learning_rate"]), int(values["batch_size"]), str(values["loss"])


def status_text(trial: Trial) -> str:
    if trial.status == "PRUNED":
        return f"pruned {trial.message}"
    return trial.status.lower() + (f": {trial.message}" if trial.message and trial.status != "COMPLETED" else "")


def grid_table(trials: list[Trial]) -> list[str]:
    lines = ["| trial | learning rate | batch | loss | best val acc | best epoch | epochs | time | status |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in sorted(trials, key=lambda t: int(t.trial_id)):
        lr, batch, loss = key(t)
        lines.append(f"| {trial_number(t.trial_id)} | {format_value(lr)} | {batch} | {loss} | "
                     f"{percent(t.best_val_accuracy)} | {format_value(t.best_epoch)} | {t.epochs_run} | "
                     f"{duration(t.wall_time_s)} | {status_text(t)} |")
    return lines


def side_by_side(trials: list[Trial]) -> list[str]:
    by_key = {key(t): t for t in trials}
    lines = ["| study varied | learning rate | batch | loss | study: train / val (on the test set), 12 epochs "
             "| this search: best val (held out of training), epochs run | status here |",
             "|---|---|---|---|---|---|---|"]
    for varied, settings in study.SETTINGS.items():
        for setting in settings:
            trial = by_key.get((setting.learning_rate, setting.batch_size, setting.loss))
            ours = f"{percent(trial.best_val_accuracy)}, {trial.epochs_run}" if trial else "not run"
            lines.append(f"| {varied} | {format_value(setting.learning_rate)} | {setting.batch_size} | "
                         f"{setting.loss} | {setting.train_accuracy:.2f}% / {setting.test_accuracy:.2f}% | {ours} | "
                         f"{trial.status.lower() if trial else '-'} |")
    return lines


def effects_table(trials: list[Trial]) -> list[str]:
    lines = ["| factor | value | trials | best val acc | mean val acc |", "|---|---|---|---|---|"]
    for name, rows in hyperparameter_effects(trials).items():
        for row in rows:
            lines.append(f"| {name} | {format_value(row.value)} | {row.trials} | {percent(row.best_val_accuracy)} | "
                         f"{percent(row.mean_val_accuracy)} |")
    return lines


def dates(results: RunRecord) -> str:
    started, finished = results.started_at[:10], results.finished_at[:10]
    return started if started == finished else f"{started} to {finished}"


def main() -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--reading", type=Path, required=True, help="Markdown: what the figures say")
    parser.add_argument("--timing", default="", help="a sentence on wall and CPU time, from the run's log")
    args = parser.parse_args()
    run_dir = RunDir.existing(args.run_dir)
    results = run_dir.require_results()
    trials = run_dir.trials()
    write_report(run_dir.path)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for page in sorted(run_dir.report_dir.iterdir()):
        if page.suffix in (".png", ".html"):
            shutil.copy(page, args.out_dir / page.name)
    (args.out_dir / "trials.csv").write_text(to_csv(trials), encoding="utf-8")
    winner = results.winner
    counts = {s: sum(t.status == s for t in trials) for s in ("COMPLETED", "PRUNED", "FAILED")}
    measured = importance(trials)
    lines = [
        "# The study's grid, searched in full",
        "",
        f"`python -m kmnist_search.run --strategy grid --space report --data-dir ../shared/data/kmnist` "
        f"(the default space: the study's 4 learning rates x 5 batch sizes x 2 losses, Adadelta, 12 epochs, all "
        f"{results.dataset.train_images:,} training images, {results.dataset.validation_images:,} held "
        f"out for validation; median pruning on), {dates(results)}, on a 2-core CPU. {args.timing}",
        "",
        f"- Trials: {len(trials)}: {counts['COMPLETED']} ran all 12 epochs, {counts['PRUNED']} were pruned, "
        f"{counts['FAILED']} failed. Epochs trained: {sum(t.epochs_run for t in trials)} of the "
        f"{len(trials) * 12} an unpruned grid trains.",
        f"- Winner: trial {trial_number(winner.trial_id)}, learning rate "
        f"{format_value(winner.hyperparameters['learning_rate'])}, batch {winner.hyperparameters['batch_size']}, "
        f"{winner.hyperparameters['loss']}: validation {percent(winner.val_accuracy)}, **test "
        f"{percent(winner.test_accuracy)}** (the test set used once, for the winner). The study's best: "
        f"{study.BEST.test_accuracy:.2f}%.",
        "- The report page: [index.html](index.html) (open it in a browser; it works offline); the trials as "
        "[trials.csv](trials.csv).",
        "",
        "## What the figures say",
        "",
        args.reading.read_text(encoding="utf-8").strip(),
        "",
        "## The study's figures and this search's, setting by setting",
        "",
        *side_by_side(trials),
        "",
        "## Every configuration",
        "",
        *grid_table(trials),
        "",
        "## Each factor's effect",
        "",
        *effects_table(trials),
        "",
    ]
    if measured is not None:
        lines += [f"Hyperparameter importance ({measured.method}, each trial scored by its best validation accuracy "
                  f"up to epoch {measured.epoch}, the last every trial reached): "
                  + ", ".join(f"{name} {value:.2f}" for name, value in sorted(measured.values.items(),
                                                                              key=lambda item: -item[1])) + ".", ""]
    lines += ["![Effects](effects.png)", "", "![Learning curves by learning rate](learning_curves_learning_rate.png)",
              "", "![The winner's confusion matrix](confusion_matrix.png)", "",
              "![The first 100 test images](prediction_grid.png)", ""]
    (args.out_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out_dir}")


if __name__ == "__main__":
    main()
