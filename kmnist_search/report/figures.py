"""The study's figures, made from any run: learning curves, hyperparameter effects, the winner's
confusion matrix and classification report, and a 10x10 prediction grid; plus a readable README.

Figures name classes by their kana ("2 す") in the IPAex Gothic font that the ``matplotlib-fontja``
package ships; without it (matplotlib's default font has no kana) they fall back to romanisation
("2 su").
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

try:  # registers IPAex Gothic and makes it matplotlib's default family
    import matplotlib_fontja  # noqa: F401

    KANA_FONT = True
except ImportError:  # pragma: no cover - the package is a dependency; this keeps figures working without it
    KANA_FONT = False
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import ConfusionMatrixDisplay, classification_report

from kmnist_search.base.files import atomic_write_text, staged_path
from kmnist_search.data.datasets import DatasetSpec, get_spec
from kmnist_search.data.record import RunRecord, Trial
from kmnist_search.data.rundir import RunDir
from kmnist_search.data.test_predictions import read_test_predictions
from kmnist_search.report.rankings import format_winner_markdown, hyperparameter_effects

PREDICTION_GRID_FILE = "prediction_grid.png"
CURVE_PANELS = (("accuracy", "training accuracy"), ("val_accuracy", "validation accuracy"),
                ("loss", "training loss"), ("val_loss", "validation loss"))


def class_name(spec: DatasetSpec, index: int) -> str:
    """A class as a figure can show it: its kana where the font has them, else its romanisation."""
    return spec.characters[index] if KANA_FONT else spec.romanized[index]


def class_label(spec: DatasetSpec, index: int) -> str:
    """Index and name, e.g. ``2 す`` (``2 su`` without the kana font)."""
    return f"{index} {class_name(spec, index)}"


def _save(figure: plt.Figure, path: Path) -> None:
    """Write a figure atomically (a new temporary file, then a rename)."""
    try:
        with staged_path(path) as staged:
            figure.savefig(staged, dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)


def plot_learning_curves(trials: list[Trial], hyperparameter: str, path: Path) -> bool:
    """Training and validation accuracy and loss per epoch, one line per value of ``hyperparameter``
    (the best trial that used it). Returns False if no trial has a history yet."""
    best_by_value: dict[str, Trial] = {}
    for trial in trials:
        if not trial.history or hyperparameter not in trial.hyperparameters:
            continue
        key = str(trial.hyperparameters[hyperparameter])
        current = best_by_value.get(key)
        if current is None or (trial.score or 0) > (current.score or 0):
            best_by_value[key] = trial
    if not best_by_value:
        return False
    figure, axes = plt.subplots(1, 4, figsize=(17, 4), layout="constrained")
    for (metric, title), axis in zip(CURVE_PANELS, axes, strict=True):
        for value, trial in best_by_value.items():
            epochs = [e.epoch for e in trial.history if e.metric(metric) is not None]
            values = [e.metric(metric) for e in trial.history if e.metric(metric) is not None]
            axis.plot(epochs, values, marker="o", markersize=3, label=f"{hyperparameter}={value}")
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if metric.endswith("loss"):
            axis.set_yscale("log")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Learning curves by {hyperparameter} (best trial per value)")
    _save(figure, path)
    return True


def plot_effects(trials: list[Trial], path: Path) -> bool:
    """Mean (bar) and best (dot) validation accuracy at each value of each hyperparameter."""
    effects = hyperparameter_effects(trials)
    if not effects:
        return False
    figure, axes = plt.subplots(1, len(effects), figsize=(4.6 * len(effects), 4), squeeze=False,
                                layout="constrained")
    for axis, (name, rows) in zip(axes[0], effects.items(), strict=True):
        labels = [str(row.value).replace("_", "\n") for row in rows]
        positions = np.arange(len(rows))
        axis.bar(positions, [r.mean_val_accuracy * 100 for r in rows], color="#9ecae1", label="mean")
        axis.scatter(positions, [r.best_val_accuracy * 100 for r in rows], color="#08519c", zorder=3, label="best")
        axis.set_xticks(positions, labels, fontsize=8)
        axis.set_title(name)
        axis.set_ylabel("validation accuracy (%)")
        axis.set_ylim(0, 100)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower left")
    figure.suptitle("Hyperparameter effects")
    _save(figure, path)
    return True


MAX_COUNTED_CLASSES = 20  # beyond this many classes a count in every cell is too small to read at this size


def confusion_figure(labels: np.ndarray, predicted: np.ndarray, spec: DatasetSpec) -> plt.Figure:
    """The winner's confusion matrix on the test images, classes named by index and kana; the count in each
    cell where there are few enough classes to read it (K49's 2,401 cells are shown by colour only)."""
    figure, axis = plt.subplots(figsize=(7.5, 6.5))
    counted = spec.num_classes <= MAX_COUNTED_CLASSES
    ConfusionMatrixDisplay.from_predictions(
        labels, predicted, labels=list(range(spec.num_classes)),
        display_labels=[class_label(spec, i) for i in range(spec.num_classes)],
        ax=axis, cmap="Blues", colorbar=not counted, include_values=counted, xticks_rotation=45)
    axis.set_title(f"Winner's confusion matrix on {len(labels):,} test images")
    return figure


def plot_confusion_matrix(labels: np.ndarray, predicted: np.ndarray, spec: DatasetSpec, path: Path) -> None:
    _save(confusion_figure(labels, predicted, spec), path)


def plot_prediction_grid(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, spec: DatasetSpec,
                         path: Path) -> None:
    """The first 100 test images with predicted (P) and actual (A) classes; mistakes in red.

    One image of 10 x 10 tiles with a caption above each, drawn on one axes: a hundred axes of their own
    took ten times as long to lay out and draw."""
    count = min(100, len(images))
    tile, gap, caption = 28, 6, 14  # pixels: the image, the space between tiles, the caption's band above
    cell_width, cell_height = tile + gap, caption + tile + gap
    mosaic = np.full((10 * cell_height, 10 * cell_width), np.nan)
    figure, axis = plt.subplots(figsize=(12, 13.5))
    for index in range(count):
        row, column = divmod(index, 10)
        top, left = row * cell_height + caption, column * cell_width + gap // 2
        mosaic[top:top + tile, left:left + tile] = images[index]
        wrong = predicted[index] != labels[index]
        colour = "#d62728" if wrong else "black"
        axis.text(left + tile / 2, top - 2, f"P:{class_name(spec, predicted[index])} "
                  f"A:{class_name(spec, labels[index])}", ha="center", va="bottom", fontsize=8, color=colour)
        if wrong:
            axis.add_patch(Rectangle((left - 1.5, top - 1.5), tile + 2, tile + 2, fill=False, edgecolor=colour,
                                     linewidth=2.5))
    axis.imshow(np.ma.masked_invalid(mosaic), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axis.axis("off")
    mistakes = int(np.sum(predicted[:count] != labels[:count]))
    axis.set_title(f"First {count} test images: P = predicted, A = actual ({mistakes} mistakes, in red)")
    _save(figure, path)


def class_table(spec: DatasetSpec, labels: np.ndarray, predicted: np.ndarray) -> str:
    """The classification report as Markdown: per-class precision, recall, F1 and support."""
    report = classification_report(labels, predicted, labels=list(range(spec.num_classes)), output_dict=True,
                                   zero_division=0)
    lines = ["| class | character | codepoint | precision | recall | F1 | support |", "|---|---|---|---|---|---|---|"]
    for index in range(spec.num_classes):
        row = report[str(index)]
        lines.append(f"| {index} {spec.romanized[index]} | {spec.characters[index]} | {spec.codepoints[index]} | "
                     f"{row['precision']:.3f} | {row['recall']:.3f} | {row['f1-score']:.3f} | {int(row['support'])} |")
    for name in ("macro avg", "weighted avg"):
        row = report[name]
        lines.append(f"| {name} | | | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1-score']:.3f} | "
                     f"{int(row['support'])} |")
    lines.append(f"\nAccuracy: {report['accuracy'] * 100:.2f}%")
    return "\n".join(lines)


def compared_hyperparameters(trials: list[Trial]) -> list[str]:
    """The hyperparameters whose learning curves are worth a figure: those the trials gave two or more
    values (a setting every trial shared draws one line), or the first one when none varied."""
    values: dict[str, set[str]] = {}
    for trial in trials:
        for name, value in trial.hyperparameters.items():
            values.setdefault(name, set()).add(json.dumps(value, sort_keys=True))
    names = sorted(values)
    return [name for name in names if len(values[name]) > 1] or names[:1]


def write_report(run_dir: RunDir, trials: list[Trial], results: RunRecord | None,
                 tables_markdown: str) -> Path:
    """Write every figure that the run's state allows, and report/README.md embedding them."""
    report_dir = run_dir.report_dir
    report_dir.mkdir(exist_ok=True)
    sections = [f"# Search report: {run_dir.name}", ""]
    if results:
        sections += [f"Strategy **{results.strategy}** over space **{results.space.name}** "
                     f"({len(trials)} trials, seed {results.seed}).", "", format_winner_markdown(results), ""]
    else:
        sections += ["The search has not finished: this report shows the trials so far.", ""]
    sections += ["## Trials and effects", "", tables_markdown, ""]
    if plot_effects(trials, report_dir / "effects.png"):
        sections += ["![Hyperparameter effects](effects.png)", ""]
    curves = [n for n in compared_hyperparameters(trials)
              if plot_learning_curves(trials, n, report_dir / f"learning_curves_{n}.png")]
    if curves:
        sections += ["## Learning curves", ""] + [f"![Learning curves by {n}](learning_curves_{n}.png)"
                                                   for n in curves] + [""]
    predictions = read_test_predictions(run_dir.test_predictions_path)
    if results and predictions is not None:
        spec = get_spec(results.dataset.name)
        labels, probabilities, first_images = predictions.labels, predictions.probabilities, predictions.first_images
        predicted = probabilities.argmax(axis=1)
        plot_confusion_matrix(labels, predicted, spec, report_dir / "confusion_matrix.png")
        plot_prediction_grid(first_images, labels[:100], predicted[:100], spec, report_dir / PREDICTION_GRID_FILE)
        sections += ["## The winner on the test set", "", "![Confusion matrix](confusion_matrix.png)", "",
                     "### Classification report", "", class_table(spec, labels, predicted), "",
                     "![First 100 test images](prediction_grid.png)", ""]
    path = report_dir / "README.md"
    atomic_write_text(path, "\n".join(sections))
    return path
