"""docs/study from the ground truth: the study's grid trained to the end, beside the study's own figures and
what the pruned search declared.

Run: python benchmarks/study_truth.py

Reads benchmarks/ground_truth/report.csv and units.csv (written by benchmarks/ground_truth.py), the
study's figures (:mod:`kmnist_search.data.study`) and the pruned search published in docs/study/trials.csv.
Rewrites the ``study:truth`` section of docs/study/README.md and draws docs/study/curves.png. It writes
nothing until every configuration of the ``report`` grid is recorded at some seed: a ranking of part of
the grid would name the wrong best.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import statistics
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from ground_truth import OUT_DIR, read_csv, whole_trainings
from records import ROOT, description, write_into

from kmnist_search.data.study import SETTINGS, StudySetting

SPACE = "report"
FINAL_EPOCH = 12
STUDY_DIR = ROOT / "docs" / "study"
DOCUMENT = STUDY_DIR / "README.md"
FIGURE = STUDY_DIR / "curves.png"
PRUNED_SEARCH = STUDY_DIR / "trials.csv"
MARKER = "study:truth"
LOSS_NAMES = {"categorical_crossentropy": "cross-entropy", "mean_squared_error": "squared error"}


@dataclass(frozen=True)
class Configuration:
    learning_rate: float
    batch_size: int
    loss: str

    def describe(self) -> str:
        return f"lr {self.learning_rate:g}, batch {self.batch_size}, {LOSS_NAMES[self.loss]}"


@dataclass(frozen=True)
class Truth:
    """One configuration trained to the end at one or more seeds."""

    configuration: Configuration
    finals: tuple[float, ...]  # validation accuracy after the last epoch, one per seed
    curve: tuple[float, ...]  # validation accuracy after each epoch at the first seed
    test_at_best: tuple[float, ...]  # test accuracy of each seed's best epoch (comparison only)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.finals)

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.finals) if len(self.finals) > 1 else None


@dataclass(frozen=True)
class PrunedTrial:
    """A trial of the published pruned search: its number, its epochs run, its best score, and whether the
    search declared it the winner."""

    trial: int
    epochs: int
    best: float
    winner: bool


def configuration_of(row: dict[str, str]) -> Configuration:
    return Configuration(float(row["learning_rate"]), int(row["batch_size"]), row["loss"])


def ground_truth(epochs: list[dict[str, str]], units: list[dict[str, str]], configurations: int
                 ) -> dict[Configuration, Truth] | None:
    """Each configuration's truth; None until some seed has every configuration trained to the end."""
    whole = {(configuration_of(trained[0]), int(trained[0]["seed"])): {int(r["epoch"]): float(r["val_accuracy"])
                                                                      for r in trained}
             for trained in whole_trainings(epochs, SPACE, FINAL_EPOCH).values()}
    seeds = sorted({seed for _, seed in whole})
    if not any(sum(1 for _, s in whole if s == seed) == configurations for seed in seeds):
        return None
    tests: dict[tuple[Configuration, int], float] = {
        (configuration_of(row), int(row["seed"])): float(row["test_accuracy_at_best_epoch"])
        for row in units if row["space"] == SPACE and row["repeat"] == "0"}
    truth = {}
    for configuration in sorted({c for c, _ in whole}, key=lambda c: (-c.learning_rate, c.batch_size, c.loss)):
        trained = [seed for seed in seeds if (configuration, seed) in whole]
        truth[configuration] = Truth(
            configuration, tuple(whole[(configuration, s)][FINAL_EPOCH] for s in trained),
            tuple(whole[(configuration, trained[0])][e] for e in range(1, FINAL_EPOCH + 1)),
            tuple(tests[(configuration, s)] for s in trained if (configuration, s) in tests))
    return truth


def pruned_search(rows: list[dict[str, str]]) -> dict[Configuration, PrunedTrial]:
    """The published pruned search's trials by configuration."""
    return {Configuration(float(r["hp.learning_rate"]), int(r["hp.batch_size"]), r["hp.loss"]):
            PrunedTrial(int(r["trial"]), int(r["epochs_run"]), float(r["best_val_accuracy"]), r["rank"] == "1")
            for r in rows}


def percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def score(truth: Truth) -> str:
    spread = f" ± {truth.sd * 100:.2f}" if truth.sd is not None else ""
    seeds = f" ({len(truth.finals)} seeds)" if len(truth.finals) > 1 else ""
    return f"{truth.mean * 100:.2f}%{spread}{seeds}"


def render(truth: dict[Configuration, Truth], searched: dict[Configuration, PrunedTrial],
           study: Mapping[str, tuple[StudySetting, ...]]) -> str:
    """The section: what the ground truth says, then the ranking and the study's settings beside it."""
    ranking = sorted(truth.values(), key=lambda t: (-t.mean, -t.configuration.learning_rate,
                                                    t.configuration.batch_size, t.configuration.loss))
    rank = {t.configuration: index + 1 for index, t in enumerate(ranking)}
    best = ranking[0]
    (declared,) = [configuration for configuration, trial in searched.items() if trial.winner]
    gap = (best.mean - truth[declared].mean) * 100
    top = ranking[:5]
    stopped_top = [t for t in top if t.configuration in searched and searched[t.configuration].epochs < FINAL_EPOCH]
    lines = [
        f"Every configuration of the grid trained for all {FINAL_EPOCH} epochs, none stopped "
        f"([ground truth](../../benchmarks/ground_truth/README.md)); validation accuracy after the last epoch, "
        f"the mean over seeds where more than one trained it.",
        "",
        f"- **The true best**: {best.configuration.describe()}, {score(best)}.",
        f"- **The pruned search declared** {declared.describe()} (trial {searched[declared].trial}): it ranks "
        f"{rank[declared]} of {len(ranking)} here, {gap:.2f} points below the true best."
        + (f" The true best's seeds spread by {best.sd * 100:.2f} points (sd)." if best.sd is not None else ""),
        f"- **What pruning stopped**: {len(stopped_top)} of the 5 best configurations "
        + (("(" + "; ".join(f"{t.configuration.describe()} at epoch {searched[t.configuration].epochs}, "
                            f"{percent(searched[t.configuration].best)}" for t in stopped_top) + ")")
           if stopped_top else "")
        + ". The median rule compares trials at the same epoch, where a large batch has taken fewer steps.",
        "",
        "### The grid at a glance",
        "",
        *grid_table(truth),
        "",
        *findings(truth),
        "",
        "### The study's settings, trained to the end",
        "",
        "The study's figures are its own (its \"validation\" was the KMNIST test set). Ours are after the same "
        f"{FINAL_EPOCH} epochs, validated on 6,000 images held out of training; the test accuracy of the best "
        "epoch is for comparison only (no winner was chosen by it).",
        "",
        "| study varied | configuration | study: train / test | here: validation | here: test at the best epoch "
        "(comparison only) | rank here |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for varied, settings in study.items():
        for setting in settings:
            configuration = Configuration(setting.learning_rate, setting.batch_size, setting.loss)
            found = truth[configuration]
            test = percent(statistics.fmean(found.test_at_best)) if found.test_at_best else "not recorded"
            lines.append(f"| {varied} | {configuration.describe()} | {setting.train_accuracy:.2f}% / "
                         f"{setting.test_accuracy:.2f}% | {score(found)} | {test} | {rank[configuration]} |")
    lines += [
        "",
        f"### All {len(ranking)} configurations",
        "",
        "| rank | configuration | validation, epoch 12 | epoch 2 (what the pruner saw first) | the pruned search |",
        "|---:|---|---:|---:|---|",
    ]
    for truth_of in ranking:
        trial = searched.get(truth_of.configuration)
        verdict = ("not tried" if trial is None else f"trial {trial.trial}: ran all {FINAL_EPOCH} epochs"
                   if trial.epochs == FINAL_EPOCH else f"trial {trial.trial}: stopped at epoch {trial.epochs}")
        lines.append(f"| {rank[truth_of.configuration]} | {truth_of.configuration.describe()} | {score(truth_of)} "
                     f"| {percent(truth_of.curve[1])} | {verdict} |")
    return "\n".join(lines)


def grid_table(truth: dict[Configuration, Truth]) -> list[str]:
    """Validation accuracy after the last epoch: a row per learning rate and loss, a column per batch size."""
    rates = sorted({c.learning_rate for c in truth}, reverse=True)
    batches = sorted({c.batch_size for c in truth})
    lines = ["| learning rate | loss | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---:|---|" + "---:|" * len(batches)]
    for rate in rates:
        for loss, name in LOSS_NAMES.items():
            cells = [truth.get(Configuration(rate, b, loss)) for b in batches]
            lines.append(f"| {rate:g} | {name} | " + " | ".join(percent(t.mean) if t else "" for t in cells) + " |")
    return lines


def marginal_means(truth: dict[Configuration, Truth]) -> dict[str, dict[object, float]]:
    """Each factor's values, each with the mean over every configuration that has it."""
    factors = {"learning rates": lambda c: c.learning_rate, "batch sizes": lambda c: c.batch_size,
               "losses": lambda c: c.loss}
    return {factor: {value: statistics.fmean(t.mean for c, t in truth.items() if key(c) == value)
                     for value in {key(c) for c in truth}} for factor, key in factors.items()}


def findings(truth: dict[Configuration, Truth]) -> list[str]:
    """What the grid shows about each factor, computed from it (so that each sentence holds on the table)."""
    rates = sorted({c.learning_rate for c in truth}, reverse=True)
    batches = sorted({c.batch_size for c in truth})
    by_rate = {rate: statistics.fmean(t.mean for c, t in truth.items() if c.learning_rate == rate) for rate in rates}
    ordered = all(by_rate[a] > by_rate[b] for a, b in itertools.pairwise(rates))
    pairs = [(rate, batch) for rate in rates for batch in batches
             if all(Configuration(rate, batch, loss) in truth for loss in LOSS_NAMES)]
    gaps = {pair: truth[Configuration(*pair, "categorical_crossentropy")].mean
            - truth[Configuration(*pair, "mean_squared_error")].mean for pair in pairs}
    ahead = sum(1 for gap in gaps.values() if gap > 0)
    gap_by_rate = {rate: statistics.fmean(gap for (r, _), gap in gaps.items() if r == rate)
                   for rate in rates if any(r == rate for r, _ in gaps)}
    spans = {factor: max(means.values()) - min(means.values()) for factor, means in marginal_means(truth).items()}
    lines = [
        "- **What matters most**: the mean accuracy of each value (over the other two factors) spans "
        + ", ".join(f"{span * 100:.2f} points across {factor}" for factor, span in
                    sorted(spans.items(), key=lambda item: -item[1])) + ".",
        "- **The learning rate**: its 10 configurations average "
        + ", ".join(f"{percent(by_rate[rate])} at {rate:g}" for rate in rates)
        + (", in the order of the rates." if ordered else "."),
        f"- **The loss**: cross-entropy ends ahead of squared error in {ahead} of the {len(pairs)} pairs of learning "
        "rate and batch size, on average by " + ", ".join(f"{gap_by_rate[rate] * 100:.2f} points at lr {rate:g}"
                                                          for rate in gap_by_rate) + ".",
    ]
    for loss, name in LOSS_NAMES.items():
        by_batch = []
        for rate in rates:
            scores = {b: truth[Configuration(rate, b, loss)].mean for b in batches
                      if Configuration(rate, b, loss) in truth}
            if len(scores) < 2:
                continue
            smallest_best = max(scores, key=lambda b: scores[b]) == batches[0]
            spread = (max(scores.values()) - min(scores.values())) * 100
            by_batch.append(f"{rate:g}: best at batch {max(scores, key=lambda b: scores[b])}, a {spread:.2f}-point "
                         f"spread{' (the smallest batch)' if smallest_best else ''}")
        lines.append(f"- **The batch size**, with {name}, at each learning rate: " + "; ".join(by_batch) + ".")
    return lines


def plot(truth: dict[Configuration, Truth]) -> None:
    """Validation accuracy after each epoch, one panel per learning rate, a colour per batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = sorted({c.learning_rate for c in truth}, reverse=True)
    batches = sorted({c.batch_size for c in truth})
    colours = {batch: plt.get_cmap("viridis")(index / max(len(batches) - 1, 1)) for index, batch in enumerate(batches)}
    figure, axes = plt.subplots(1, len(rates), figsize=(3.6 * len(rates), 3.4), sharey=True)
    for axis, rate in zip(axes, rates, strict=True):
        for configuration, found in sorted(truth.items(), key=lambda item: item[0].batch_size):
            if configuration.learning_rate != rate:
                continue
            axis.plot(range(1, FINAL_EPOCH + 1), [v * 100 for v in found.curve],
                      color=colours[configuration.batch_size], linewidth=1.2,
                      linestyle="-" if configuration.loss == "categorical_crossentropy" else "--")
        axis.set_title(f"learning rate {rate:g}", fontsize=9)
        axis.set_xlabel("epoch")
    axes[0].set_ylabel("validation accuracy (%)")
    handles = [plt.Line2D([], [], color=colours[b], label=f"batch {b}") for b in batches]
    handles += [plt.Line2D([], [], color="grey", linestyle="-", label=LOSS_NAMES["categorical_crossentropy"]),
                plt.Line2D([], [], color="grey", linestyle="--", label=LOSS_NAMES["mean_squared_error"])]
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(FIGURE, dpi=100)


def main() -> int:
    argparse.ArgumentParser(description=description(__doc__)).parse_args()
    from kmnist_search.data.spaces import load_space

    configurations = len(load_space(SPACE).configurations())
    truth = ground_truth(read_csv(OUT_DIR / f"{SPACE}.csv"), read_csv(OUT_DIR / "units.csv"), configurations)
    if truth is None:
        print(f"the {SPACE} grid is not yet recorded in full at any seed: run benchmarks/ground_truth.py",
              file=sys.stderr)
        return 1
    with PRUNED_SEARCH.open(newline="", encoding="utf-8") as file:
        searched = pruned_search(list(csv.DictReader(file)))
    write_into(DOCUMENT, MARKER, render(truth, searched, SETTINGS))
    plot(truth)
    print(f"wrote {DOCUMENT.relative_to(ROOT)} ({MARKER}) and {FIGURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
