"""BENCHMARKS.md's accuracy table, from the records kept in this repository.

Run: python benchmarks/accuracy_table.py

Reads the shipped model's card (exports/kmnist-reference.json), the ground truth of the study's grid
(benchmarks/ground_truth/report.csv and units.csv, written by benchmarks/ground_truth.py) and the pruned
search published in docs/study/trials.csv. Rewrites BENCHMARKS.md's ``accuracy`` section: validation and
test accuracy of each, and the range of the validation-test gap computed from the rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from typing import Any

from ground_truth import OUT_DIR, read_csv
from records import BENCHMARKS, ROOT, description, write_into
from study_truth import PRUNED_SEARCH, SPACE, Configuration, Truth, ground_truth, percent, pruned_search

DOCUMENT = BENCHMARKS
MARKER = "accuracy"
CARD = ROOT / "exports" / "kmnist-reference.json"


def shipped_rows(card: dict[str, Any]) -> list[tuple[str, str, float, float]]:
    """(model, record, validation, test) of the shipped model and the float model it was quantized from."""
    model = card["models"][0]
    settings = model["training"]["hyperparameters"]
    network = f"pre-activation ResNet-{settings['resnet_depth']} width {settings['resnet_width']}"
    retraining = model["training"]["retraining"]
    where = f"`{CARD.relative_to(ROOT)}`"
    described = (f"{network}, found by a {model['strategy']} search of space `{model['training']['search_space']}`, "
                 f"retrained {retraining['epochs_trained']} epochs on {retraining['train_images']:,} images")
    return [(f"the shipped model, int8: {described}", where, card["metrics"]["validation_accuracy"],
             card["metrics"]["test_accuracy"]),
            ("its float32 model", where, model["metrics"]["validation_accuracy"], model["metrics"]["test_accuracy"])]


def study_rows(truth: dict[Configuration, Truth], winner: Configuration) -> list[tuple[str, str, float, float]]:
    """The study's grid trained to the end: its true best, and the pruned search's declared winner."""
    best = max(truth.values(), key=lambda t: t.mean)
    where = "`benchmarks/ground_truth/`"

    def row(label: str, t: Truth) -> tuple[str, str, float, float]:
        seeds = f"mean of {len(t.finals)} seeds" if len(t.finals) > 1 else "1 seed"
        return (f"the study's CNN, {label}: {t.configuration.describe()} ({seeds})", where, t.mean,
                statistics.fmean(t.test_at_best))

    rows = [row("true best of its grid", best)]
    if winner != best.configuration:
        rows.append(row("the pruned search's winner trained to the end", truth[winner]))
    return rows


def render(rows: list[tuple[str, str, float, float]]) -> str:
    gaps = [(validation - test) * 100 for _, _, validation, test in rows]
    lines = ["Validation on 6,000 images held out of the training set, after the last epoch (the study's grid) or "
             "at the epoch kept (the shipped model); test on the 10,000 official test images, once per model. "
             "The ground truth's test figure is of each seed's best epoch, averaged, for comparison only: it chose "
             f"nothing. Validation runs {min(gaps):.1f} to {max(gaps):.1f} points above test here: the test pages "
             "come from other books than the training pages.", "",
             "| model | record | val acc | test acc |", "|---|---|---:|---:|"]
    lines += [f"| {model} | {record} | {percent(validation)} | {percent(test)} |"
              for model, record, validation, test in rows]
    return "\n".join(lines)


def rows_from_records() -> list[tuple[str, str, float, float]]:
    from kmnist_search.data.spaces import load_space

    card = json.loads(CARD.read_text(encoding="utf-8"))
    truth = ground_truth(read_csv(OUT_DIR / f"{SPACE}.csv"), read_csv(OUT_DIR / "units.csv"),
                         len(load_space(SPACE).configurations()))
    if truth is None:
        return shipped_rows(card)
    with PRUNED_SEARCH.open(newline="", encoding="utf-8") as file:
        winner = next(c for c, trial in pruned_search(list(csv.DictReader(file))).items() if trial.winner)
    return shipped_rows(card) + study_rows(truth, winner)


def main() -> int:
    argparse.ArgumentParser(description=description(__doc__)).parse_args()
    write_into(DOCUMENT, MARKER, render(rows_from_records()))
    print(f"wrote {DOCUMENT.relative_to(ROOT)} ({MARKER})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
