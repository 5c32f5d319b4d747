"""A run's search report as one self-contained HTML page: ``RUN_DIR/report/index.html``.

The page opens offline in any browser and at any width: its figures are inline SVG drawn with
matplotlib (the figure stack of :mod:`kmnist_search.report.figures`), and its only script sorts and filters the
trial table. It opens with the verdict: the winner, how sure the search is, what pruning saved and how
the winner compares with the study it started from. Then: the best score so far after each trial,
the learning curves (pruned trials told apart), each hyperparameter's effect over the trials that
trained the same epochs, validation loss per loss function, hyperparameter importance by Optuna's
fANOVA, the trial table, and the winner's confusion matrix, classification report and 10x10 prediction
grid. For slice, contour and parallel-coordinate views, the run's Optuna journal opens in
optuna-dashboard.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from kmnist_search.base.files import atomic_write_text
from kmnist_search.base.formatting import format_value, percent, settings_text, trial_number
from kmnist_search.data import study
from kmnist_search.data.datasets import DatasetSpec, get_spec
from kmnist_search.data.record import SCORED_STATUSES, Budget, RunRecord, Trial
from kmnist_search.data.rundir import HTML_PAGE, RunDir
from kmnist_search.data.spaces import study_default
from kmnist_search.data.test_predictions import TestPredictions, read_test_predictions
from kmnist_search.report.figures import PREDICTION_GRID_FILE, confusion_figure, plot_prediction_grid
from kmnist_search.report.rankings import (
    STATUS_NAMES,
    describe_deployment,
    format_confirmation,
    hyperparameter_effects,
    pareto_front,
    rank_trials,
)

COLOURS = {"COMPLETED": "#1f77b4", "PRUNED": "#ff7f0e", "FAILED": "#d62728"}
WINNER_COLOUR = "#111111"
FIGURE_WIDTH = 7.2  # inches; figures scale to the page's width


@dataclass(frozen=True)
class Importance:
    """How much of the variation in validation accuracy each hyperparameter explains (sums to 1)."""

    values: dict[str, float]
    epoch: int  # trials are compared at this epoch, the last every scored trial reached
    trials: int
    method: str


def importance(trials: list[Trial], seed: int = 0) -> Importance | None:
    """Hyperparameter importance by Optuna's fANOVA evaluator, fed with the scored trials.

    Pruned trials stopped early, so every trial is scored by its best validation accuracy up to the
    last epoch that all scored trials reached. None when fewer than three trials or no hyperparameter
    with two values can be compared.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    scored = [t for t in trials if t.status in SCORED_STATUSES and t.history]
    names = sorted({n for t in scored for n in t.hyperparameters
                    if len({json.dumps(s.hyperparameters.get(n)) for s in scored}) > 1})
    if len(scored) < 3 or not names:
        return None
    epoch = min(len(t.history) for t in scored)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study_ = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    choices = {n: sorted({t.hyperparameters[n] for t in scored}, key=lambda v: (str(type(v)), v)) for n in names}
    for trial in scored:
        value = max(e.value("val_accuracy", 0.0) for e in trial.history[:epoch])
        study_.add_trial(optuna.trial.create_trial(
            params={n: trial.hyperparameters[n] for n in names},
            distributions={n: CategoricalDistribution(choices[n]) for n in names}, value=value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = get_param_importances(study_, evaluator=FanovaImportanceEvaluator(seed=seed), normalize=True)
    return Importance({k: float(v) for k, v in values.items()}, epoch, len(scored), "Optuna fANOVA (random forest)")


def svg(figure: plt.Figure) -> str:
    """A figure as inline SVG that scales to its container (text kept as text: the page's fonts draw it)."""
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "kmnist-search"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class=figure role=img', text, count=1)


def _by_number(trials: list[Trial]) -> list[Trial]:
    return sorted(trials, key=lambda t: int(t.trial_id) if t.trial_id.isdigit() else 0)


def best_so_far_figure(trials: list[Trial]) -> plt.Figure | None:
    """Each scored trial's validation accuracy in the order the trials ran, and the best so far."""
    scored = [t for t in _by_number(trials) if t.status in SCORED_STATUSES and t.score is not None]
    if not scored:
        return None
    figure, axis = plt.subplots(figsize=(FIGURE_WIDTH, 3.2))
    numbers = [int(trial_number(t.trial_id)) for t in scored]
    scores = [float(t.score or 0.0) * 100 for t in scored]
    axis.step(numbers, np.maximum.accumulate(scores), where="post", color=WINNER_COLOUR, label="best so far")
    for status in ("COMPLETED", "PRUNED"):
        chosen = [index for index, trial in enumerate(scored) if trial.status == status]
        if chosen:
            axis.scatter([numbers[i] for i in chosen], [scores[i] for i in chosen], s=18, color=COLOURS[status],
                         label=f"{STATUS_NAMES[status]} trial (its best score)")
    _finish_accuracy_axis(axis, "trial")
    return figure


def learning_curves_figure(trials: list[Trial], winner_id: str | None) -> plt.Figure | None:
    """Validation accuracy per epoch: completed trials solid, pruned ones dashed and ending in a cross,
    failed ones dotted, the winner bold."""
    drawn = [t for t in trials if t.history]
    if not drawn:
        return None
    figure, axis = plt.subplots(figsize=(FIGURE_WIDTH, 3.8))
    labelled: set[str] = set()
    for trial in sorted(drawn, key=lambda t: t.trial_id == winner_id):  # the winner on top
        epochs = [e.epoch for e in trial.history]
        values = [e.value("val_accuracy", 0.0) * 100 for e in trial.history]
        won = trial.trial_id == winner_id
        status = trial.status if trial.status in COLOURS else "COMPLETED"
        label = "the winner" if won else STATUS_NAMES.get(status, status.lower())
        colour = WINNER_COLOUR if won else COLOURS[status]
        axis.plot(epochs, values, color=colour, linewidth=2.2 if won else 0.9, alpha=1.0 if won else 0.7,
                  linestyle={"PRUNED": "--", "FAILED": ":"}.get(status, "-"),
                  label=None if label in labelled else label)
        labelled.add(label)
        if status == "PRUNED":
            axis.plot(epochs[-1], values[-1], marker="x", color=colour, markersize=5)
    _finish_accuracy_axis(axis, "epoch")
    return figure


def _finish_accuracy_axis(axis: plt.Axes, counted: str) -> None:
    """Label a validation-accuracy axis over whole trials or epochs, with a grid and a legend."""
    axis.set_xlabel(counted)
    axis.set_ylabel("validation accuracy (%)")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")


def full_budget_trials(trials: list[Trial], epochs: int) -> list[Trial]:
    """The completed trials that trained all ``epochs``: scores on one budget."""
    return [t for t in trials if t.status == "COMPLETED" and t.epochs_run == epochs and t.score is not None]


def effects_figure(trials: list[Trial]) -> plt.Figure | None:
    """Mean (bar) and each trial's (dot) validation accuracy at each value of each hyperparameter."""
    effects = hyperparameter_effects(trials)
    if not effects:
        return None
    figure, axes = plt.subplots(1, len(effects), figsize=(FIGURE_WIDTH, 3.2), squeeze=False, sharey=True)
    for axis, (name, rows) in zip(axes[0], effects.items(), strict=True):
        labels = [format_value(row.value).replace("_", "\n") for row in rows]
        positions = np.arange(len(rows))
        axis.bar(positions, [row.mean_val_accuracy * 100 for row in rows], color="#9ecae1")
        for position, row in zip(positions, rows, strict=True):
            points = [float(t.score or 0.0) * 100 for t in trials if t.hyperparameters.get(name) == row.value]
            axis.scatter([position] * len(points), points, s=12, color=COLOURS["COMPLETED"], zorder=3)
        axis.set_xticks(positions, labels, fontsize=7)
        axis.set_title(name, fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy (%)")
    return figure


def validation_loss_figure(trials: list[Trial], default_loss: str) -> plt.Figure | None:
    """Validation loss per epoch in one panel per loss function: their scales differ."""
    by_loss: dict[str, list[Trial]] = {}
    for trial in trials:
        if any(e.metric("val_loss") is not None for e in trial.history):
            by_loss.setdefault(str(trial.hyperparameters.get("loss", default_loss)), []).append(trial)
    if not by_loss:
        return None
    figure, axes = plt.subplots(1, len(by_loss), figsize=(FIGURE_WIDTH, 3.2), squeeze=False)
    for axis, (loss, chosen) in zip(axes[0], sorted(by_loss.items()), strict=True):
        for trial in chosen:
            kept = [(e.epoch, e.metric("val_loss")) for e in trial.history if e.metric("val_loss") is not None]
            axis.plot(*zip(*kept, strict=True), color=COLOURS.get(trial.status, COLOURS["COMPLETED"]), linewidth=0.9,
                      linestyle="--" if trial.status == "PRUNED" else "-", alpha=0.7)
        axis.set_title(loss, fontsize=9)
        axis.set_xlabel("epoch")
        axis.set_yscale("log")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation loss")
    return figure


def deployment_figure(trials: list[Trial], winner_id: str | None, budget: Budget | None) -> plt.Figure | None:
    """Validation accuracy against single-image latency and against file size for every measured trial,
    the trials on the Pareto front (of all three at once) in orange, the budget's limits dashed, the winner
    circled."""
    measured = [t for t in trials if t.deployment is not None and t.score is not None]
    if not measured:
        return None
    front = pareto_front(measured)
    figure, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 3.2), sharey=True)
    panels = ((axes[0], "milliseconds per image (onnxruntime, 1 thread)", lambda d: d.speed.single_image_ms,
               budget.max_ms if budget else None),
              (axes[1], "ONNX file (MB)", lambda d: d.megabytes, budget.max_mb if budget else None))
    for axis, label, value, limit in panels:
        points = [(value(t.deployment.shipped()), float(t.score or 0.0) * 100) for t in measured]  # type: ignore[union-attr]
        axis.scatter(*zip(*points, strict=True), s=16, color=COLOURS["COMPLETED"], label="trial")
        on_front = [(value(t.deployment.shipped()), float(t.score or 0.0) * 100) for t in front]  # type: ignore[union-attr]
        axis.scatter(*zip(*on_front, strict=True), s=30, color=COLOURS["PRUNED"],
                     label="on the Pareto front (accuracy, latency, size)")
        won = next((t for t in measured if t.trial_id == winner_id), None)
        if won is not None:
            axis.scatter([value(won.deployment.shipped())], [float(won.score or 0.0) * 100], s=90,  # type: ignore[union-attr]
                         facecolors="none", edgecolors=WINNER_COLOUR, linewidths=1.5, label="the winner")
        if limit:
            axis.axvline(limit, color="grey", linestyle="--", linewidth=1, label="budget")
        axis.set_xlabel(label, fontsize=8)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy (%)")
    axes[0].legend(fontsize=7, loc="best")
    return figure


def importance_figure(result: Importance) -> plt.Figure:
    ordered = sorted(result.values.items(), key=lambda item: item[1])
    figure, axis = plt.subplots(figsize=(FIGURE_WIDTH, 0.6 + 0.45 * len(ordered)))
    bars = axis.barh([name for name, _ in ordered], [value for _, value in ordered], color="#08519c")
    axis.bar_label(bars, labels=[f"{value:.2f}" for _, value in ordered], padding=3, fontsize=8)
    axis.set_xlabel("share of the variance explained")
    axis.set_xlim(0, 1.1)
    return figure


def classification_table(predictions: TestPredictions, spec: DatasetSpec) -> str:
    from sklearn.metrics import classification_report

    predicted = predictions.probabilities.argmax(axis=1)
    report = classification_report(predictions.labels, predicted, labels=list(range(spec.num_classes)),
                                   output_dict=True, zero_division=0)
    rows = ["<tr><th>class</th><th>character</th><th>codepoint</th><th>precision</th><th>recall</th><th>F1</th>"
            "<th>support</th></tr>"]
    for index in range(spec.num_classes):
        row = report[str(index)]
        rows.append(f"<tr><td>{index} {html.escape(spec.romanized[index])}</td><td class=kana>"
                    f"{html.escape(spec.characters[index])}</td><td>{spec.codepoints[index]}</td>"
                    f"<td>{row['precision']:.3f}</td><td>{row['recall']:.3f}</td><td>{row['f1-score']:.3f}</td>"
                    f"<td>{int(row['support'])}</td></tr>")
    return (f"<div class=scroll><table class=report>{''.join(rows)}</table></div>"
            f"<p>Test accuracy {percent(report['accuracy'])}.</p>")


def trial_table(trials: list[Trial], winner_id: str | None) -> str:
    """The sortable, filterable trial table: one row per trial, ranked, numbered as the console numbers
    them, every status and reason; the winner's row marked."""
    names = sorted({n for t in trials for n in t.hyperparameters})
    numeric = {n for n in names if all(isinstance(t.hyperparameters.get(n), (int, float)) for t in trials)}
    measured = any(t.deployment is not None for t in trials)
    head = [("rank", True), ("trial", True), *((n, n in numeric) for n in names), ("val accuracy (%)", True),
            ("val loss", True), ("best epoch", True), ("epochs", True), ("time (s)", True),
            *([("ms per image (shipped)", True), ("MB (shipped)", True)] if measured else []), ("status", False)]
    header = "".join(f"<th data-type={'number' if is_number else 'text'} tabindex=0>{html.escape(label)}</th>"
                     for label, is_number in head)
    rows = []
    for rank, t in enumerate(rank_trials(trials), start=1):
        status = STATUS_NAMES.get(t.status, t.status.lower())
        reason = f": {t.message}" if t.message and t.status != "COMPLETED" else ""
        accuracy = None if t.best_val_accuracy is None else round(t.best_val_accuracy * 100, 2)
        seconds = None if t.wall_time_s is None else round(t.wall_time_s, 1)
        cells = [(rank, str(rank)), (int(trial_number(t.trial_id)), trial_number(t.trial_id)),
                 *((t.hyperparameters.get(n), format_value(t.hyperparameters.get(n))) for n in names),
                 (accuracy, "-" if accuracy is None else f"{accuracy:.2f}"),
                 (t.best_val_loss, "-" if t.best_val_loss is None else f"{t.best_val_loss:.4f}"),
                 (t.best_epoch, format_value(t.best_epoch)), (t.epochs_run, str(t.epochs_run)),
                 (seconds, "-" if seconds is None else f"{seconds:.1f}"),
                 *(_shipped_cells(t) if measured else []), (status, status + reason)]
        marks = [t.status.lower(), *(["winner"] if t.trial_id == winner_id else [])]
        rows.append(f"<tr class='{' '.join(marks)}' data-status={t.status.lower()}>" + "".join(
            f"<td data-value=\"{html.escape(json.dumps(value))}\">{html.escape(text)}</td>" for value, text in cells)
            + "</tr>")
    statuses = sorted({t.status.lower() for t in trials})
    options = "".join(f"<option value={s}>{html.escape(s)}</option>" for s in statuses)
    controls = (f"<p class=controls><label>Filter <input id=filter type=search placeholder='e.g. 0.1 or pruned'>"
                f"</label> <label>Status <select id=status><option value=''>all</option>{options}</select></label> "
                f"<span id=shown></span></p>")
    return (f"{controls}<div class=scroll><table id=trials class=sortable><thead><tr>{header}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _shipped_cells(trial: Trial) -> list[tuple[Any, str]]:
    """A measured trial's single-image milliseconds and megabytes as it would ship; dashes if unmeasured."""
    if trial.deployment is None:
        return [(None, "-"), (None, "-")]
    shipped = trial.deployment.shipped()
    return [(shipped.speed.single_image_ms, f"{shipped.speed.single_image_ms:.3f}"),
            (round(shipped.megabytes, 4), f"{shipped.megabytes:.3f}")]


TABLE_SCRIPT = """
(function () {
  var table = document.getElementById('trials');
  if (!table) return;
  var body = table.tBodies[0], filter = document.getElementById('filter'), status = document.getElementById('status');
  var sort = function (th, column) {
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    table.querySelectorAll('th').forEach(function (other) { other.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var numeric = th.dataset.type === 'number';
    Array.from(body.rows).sort(function (a, b) {
      var x = JSON.parse(a.cells[column].dataset.value), y = JSON.parse(b.cells[column].dataset.value);
      if (x === null) return 1;
      if (y === null) return -1;
      var order = numeric ? x - y : String(x).localeCompare(String(y));
      return ascending ? order : -order;
    }).forEach(function (row) { body.appendChild(row); });
  };
  table.querySelectorAll('th').forEach(function (th, column) {
    th.addEventListener('click', function () { sort(th, column); });
    th.addEventListener('keydown', function (event) { if (event.key === 'Enter') sort(th, column); });
  });
  var apply = function () {
    var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    Array.from(body.rows).forEach(function (row) {
      var text = row.textContent.toLowerCase();
      var visible = (!status.value || row.dataset.status === status.value) &&
                    words.every(function (word) { return text.indexOf(word) >= 0; });
      row.hidden = !visible;
      shown += visible ? 1 : 0;
    });
    document.getElementById('shown').textContent = shown + ' of ' + body.rows.length + ' trials';
  };
  filter.addEventListener('input', apply);
  status.addEventListener('change', apply);
  apply();
})();
"""

STYLE = """
* { box-sizing: border-box; }
body { font-family: kmnist-kana, system-ui, sans-serif; margin: 1.5rem auto; max-width: 1100px; padding: 0 1rem;
       color: #222; line-height: 1.45; }
h1 { margin-bottom: .2rem; font-size: 1.6rem; overflow-wrap: anywhere; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.verdict { border: 1px solid #cfd8e3; background: #f5f8fb; border-radius: 6px; padding: .6rem 1.1rem; }
.verdict p { margin: .5rem 0; } .verdict .headline { font-size: 1.15rem; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: .88rem; }
td, th { padding: .25rem .55rem; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f4f4f4; text-align: left; } table.sortable th { cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
tr.pruned td { color: #a65300; } tr.failed td { color: #b00020; }
tr.winner td { background: #fff4c2; font-weight: 600; } .kana { font-size: 1.2rem; }
.note { color: #555; font-size: .9rem; } nav { display: flex; flex-wrap: wrap; gap: .2rem 1rem; }
svg.figure, img { width: 100%; max-width: 860px; height: auto; display: block; }
svg.figure text { font-family: kmnist-kana, "DejaVu Sans", system-ui, sans-serif !important; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: .85rem; }
.controls input, .controls select { font: inherit; max-width: 12rem; }
"""


def prediction_grid_png(run_dir: RunDir, predictions: TestPredictions, spec: DatasetSpec) -> bytes:
    """The 10x10 grid of the first 100 test images (P: predicted, A: actual) as PNG: the figure the
    report directory holds, drawn first if it is not there yet."""
    path = run_dir.report_dir / PREDICTION_GRID_FILE
    if not path.is_file():
        predicted = predictions.probabilities.argmax(axis=1)
        plot_prediction_grid(predictions.first_images, predictions.labels[:100], predicted[:100], spec, path)
    return path.read_bytes()


KANA_FAMILY = "kmnist-kana"


def kana_font_face(characters: str) -> str:
    """An @font-face rule with just ``characters`` from IPAex Gothic (the font ``matplotlib-fontja``
    ships), so the page shows the kana on machines without a Japanese font; empty without the package."""
    from importlib.util import find_spec

    spec = find_spec("matplotlib_fontja")
    if spec is None or spec.origin is None or not characters:
        return ""
    from fontTools import subset

    options = subset.Options()
    options.layout_features = []  # plain glyphs: no substitutions to follow
    options.hinting = False
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "BASE"]
    font = subset.load_font(str(Path(spec.origin).parent / "fonts" / "ipaexg.ttf"), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=characters)
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.save(buffer)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"@font-face {{ font-family: {KANA_FAMILY}; src: url(data:font/ttf;base64,{encoded}); }}"


def verdict(trials: list[Trial], results: RunRecord | None, planned_epochs: int | None) -> str:
    """The first screen: who won, how sure the search is, what pruning saved, and the study beside it."""
    counts = {status: sum(t.status == status for t in trials) for status in ("COMPLETED", "PRUNED", "FAILED")}
    trained = sum(t.epochs_run for t in trials)
    lines = []
    if results is None:
        lines.append(f"<p class=headline>The search has not finished: {len(trials)} trials so far.</p>")
    else:
        winner = results.winner
        lines.append(
            f"<p class=headline><b>Winner: trial {trial_number(winner.trial_id)}</b> "
            f"({html.escape(settings_text(winner.hyperparameters))}), validation accuracy "
            f"<b>{percent(winner.val_accuracy)}</b> (best epoch {format_value(winner.best_epoch)}).</p>")
        measured = results.trial(winner.trial_id)
        if measured is not None and measured.deployment is not None:
            within = f"Chosen within the budget of {results.budget.describe()}. " if results.budget else ""
            lines.append(f"<p>{within}As it would ship: {html.escape(describe_deployment(measured))}.</p>")
        if results.confirmation:
            lines.append(f"<pre>{html.escape(format_confirmation(results.confirmation).strip())}</pre>")
        else:
            lines.append("<p>How sure: one training per configuration, so the ranking includes seed noise. "
                         "<code>--confirm K</code> retrains the K best with more seeds and declares the winner "
                         "by their mean.</p>")
    lines.append(f"<p>Trials: {counts['COMPLETED']} completed, {counts['PRUNED']} pruned, {counts['FAILED']} failed; "
                 f"{trained} epochs trained" + (f" of the {planned_epochs} an unpruned search trains "
                                                f"({trained / planned_epochs:.2f}x)." if planned_epochs else ".")
                 + (" A pruned trial's score is its best before it stopped, not a final score." if counts["PRUNED"]
                    else "") + "</p>")
    if results is not None and results.winner.test_accuracy is not None:
        best = study.BEST
        lines.append(
            f"<p>The winner's test accuracy: <b>{percent(results.winner.test_accuracy)}</b> on "
            f"{results.dataset.test_images:,} test images, evaluated once, for comparison only (the search chose "
            f"on validation). The study this project started from reported {best.test_accuracy:.2f}% on the same "
            f"test set (learning rate {format_value(best.learning_rate)}, batch {best.batch_size}, "
            f"{best.loss}, {study.EPOCHS} epochs)." + (
                " Test accuracy is below validation accuracy because KMNIST's test characters come from other "
                "books than its training characters, from which the validation images are drawn."
                if results.winner.val_accuracy and results.winner.test_accuracy < results.winner.val_accuracy else "")
            + "</p>")
    return f"<section class=verdict id=verdict>{''.join(lines)}</section>"


def render_page(run_dir: RunDir, trials: list[Trial], results: RunRecord | None) -> str:
    """The whole page as text."""
    winner_id = results.winner.trial_id if results else None
    epochs = results.space.epochs if results else None
    planned = len(trials) * epochs if epochs else None
    sections = [f"<h1>Search report: {html.escape(run_dir.name)}</h1>"]
    if results:
        sections.append(f"<p class=note>Strategy {html.escape(results.strategy)} over space "
                        f"{html.escape(results.space.name)}, seed {results.seed}.</p>")
    sections.append(verdict(trials, results, planned))
    sections.append("<nav><a href=#history>Best so far</a><a href=#deployment>Speed and size</a>"
                    "<a href=#curves>Learning curves</a>"
                    "<a href=#effects>Effects</a><a href=#loss>Validation loss</a><a href=#importance>Importance</a>"
                    "<a href=#trial-table>Trials</a><a href=#winner>Winner on the test set</a></nav>")
    history = best_so_far_figure(trials)
    if history is not None:
        sections.append("<h2 id=history>Best so far</h2><p class=note>Each trial's best validation accuracy in "
                        "the order the trials ran, and the best so far after each.</p>" + svg(history))
    shipped = deployment_figure(trials, winner_id, results.budget if results else None)
    if shipped is not None:
        budget = f" within the budget of {results.budget.describe()}" if results and results.budget else ""
        sections.append(f"<h2 id=deployment>Accuracy against speed and size</h2><p class=note>Every completed "
                        f"trial exported to ONNX and timed with onnxruntime as it would ship{budget}; the front "
                        f"marks the trials no other beats on accuracy, latency and size at once.</p>" + svg(shipped))
    curves = learning_curves_figure(trials, winner_id)
    if curves is not None:
        sections.append("<h2 id=curves>Learning curves</h2><p class=note>Validation accuracy per epoch. Pruned "
                        "trials are dashed and end in a cross where they were stopped; the winner is bold.</p>"
                        + svg(curves))
    if epochs:
        same_budget = full_budget_trials(trials, epochs)
        figure = effects_figure(same_budget)
        left_out = len([t for t in trials if t.score is not None]) - len(same_budget)
        if figure is not None:
            sections.append(f"<h2 id=effects>Hyperparameter effects</h2><p class=note>Over the {len(same_budget)} "
                            f"trials that trained all {epochs} epochs, so every score is on the same budget "
                            f"(bars: mean; dots: the trials). {left_out} pruned or unfinished trials are left out: "
                            f"their scores are from fewer epochs.</p>" + svg(figure))
    loss_figure = validation_loss_figure(trials, str(study_default("loss")))
    if loss_figure is not None:
        sections.append("<h2 id=loss>Validation loss</h2><p class=note>One panel per loss function, since "
                        "their values are not comparable; pruned trials dashed.</p>" + svg(loss_figure))
    measured = importance(trials)
    sections.append("<h2 id=importance>Hyperparameter importance</h2>")
    if measured is None:
        sections.append("<p class=note>Needs at least three scored trials and a hyperparameter with two values.</p>")
    else:
        sections.append(f"<p class=note>{measured.method} over {measured.trials} scored trials, each scored by its "
                        f"best validation accuracy up to epoch {measured.epoch}, the last every scored trial reached. "
                        f"For slice, contour and parallel-coordinate views, open the run's optuna.log in "
                        f"optuna-dashboard.</p>" + svg(importance_figure(measured)))
    sections.append(f"<h2 id=trial-table>Trials</h2><p class=note>Click a column to sort; type to filter. The "
                    f"winner's row is highlighted.</p>{trial_table(trials, winner_id)}")
    predictions = read_test_predictions(run_dir.test_predictions_path)
    characters = "".join(get_spec(results.dataset.name).characters) if results else ""
    if results and predictions is not None:
        spec = get_spec(results.dataset.name)
        predicted = predictions.probabilities.argmax(axis=1)
        grid = base64.b64encode(prediction_grid_png(run_dir, predictions, spec)).decode("ascii")
        sections.append(f"<h2 id=winner>The winner on the test set</h2>"
                        f"{svg(confusion_figure(predictions.labels, predicted, spec))}"
                        f"<h3>Classification report</h3>{classification_table(predictions, spec)}"
                        f"<h3>The first 100 test images</h3><p class=note>P: predicted, A: actual; mistakes in red."
                        f"</p><img alt='first 100 test images' src='data:image/png;base64,{grid}'>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><title>Search report: "
            f"{html.escape(run_dir.name)}</title><style>{kana_font_face(characters)}{STYLE}</style></head>"
            f"<body>{''.join(sections)}<script>{TABLE_SCRIPT}</script></body></html>\n")


def write_html_report(run_dir: RunDir, trials: list[Trial], results: RunRecord | None) -> Path:
    """Write ``RUN_DIR/report/index.html``; return its path."""
    run_dir.report_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir.report_dir / HTML_PAGE
    atomic_write_text(path, render_page(run_dir, trials, results))
    return path
