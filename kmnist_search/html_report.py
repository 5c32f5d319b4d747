"""A run's search report as one self-contained HTML page: ``RUN_DIR/report/index.html``.

Opens offline in any browser (plotly.js, the figures and the styles are inside the file; nothing is
fetched). It shows the sortable trial table with every status and pruning reason, a
parallel-coordinates view of all trials, every trial's learning curve (pruned and failed ones
marked), each hyperparameter's effect, hyperparameter importance computed by Optuna's fANOVA
evaluator, and the winner's confusion matrix, classification report and 10x10 prediction grid.
"""

from __future__ import annotations

import base64
import html
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from kmnist_search.datasets import DatasetSpec, get_spec
from kmnist_search.files import atomic_write_text
from kmnist_search.formatting import duration, format_value, percent, settings_text, trial_number
from kmnist_search.record import SCORED_STATUSES, RunRecord, Trial
from kmnist_search.reports import STATUS_NAMES, format_winner_markdown, hyperparameter_effects, rank_trials
from kmnist_search.rundir import HTML_PAGE, RunDir, TestPredictions

STATUS_COLOURS = {"COMPLETED": "#1f77b4", "PRUNED": "#ff7f0e", "FAILED": "#d62728"}


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
    last epoch that all scored trials reached (the comparison median pruning makes). None when fewer
    than three trials or no hyperparameter with two values can be compared.
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
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    choices = {n: sorted({t.hyperparameters[n] for t in scored}, key=lambda v: (str(type(v)), v)) for n in names}
    for trial in scored:
        value = max(e.value("val_accuracy", 0.0) for e in trial.history[:epoch])
        study.add_trial(optuna.trial.create_trial(
            params={n: trial.hyperparameters[n] for n in names},
            distributions={n: CategoricalDistribution(choices[n]) for n in names}, value=value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed), normalize=True)
    return Importance({k: float(v) for k, v in values.items()}, epoch, len(scored), "Optuna fANOVA (random forest)")


def _figure_json(figure: go.Figure) -> str:
    return str(figure.to_json())


def parallel_coordinates(trials: list[Trial]) -> go.Figure | None:
    """One line per scored trial across every hyperparameter and its validation accuracy."""
    scored = [t for t in trials if t.score is not None]
    names = sorted({n for t in scored for n in t.hyperparameters})
    if not scored or not names:
        return None
    dimensions = []
    for name in names:
        values = sorted({format_value(t.hyperparameters.get(name)) for t in scored},
                        key=lambda v: (0, float(v)) if _is_number(v) else (1, v))
        index = {v: i for i, v in enumerate(values)}
        dimensions.append({"label": name, "values": [index[format_value(t.hyperparameters.get(name))] for t in scored],
                           "tickvals": list(range(len(values))), "ticktext": values})
    accuracies = [float(t.score or 0.0) * 100 for t in scored]
    dimensions.append({"label": "val accuracy (%)", "values": accuracies})
    figure = go.Figure(go.Parcoords(line={"color": accuracies, "colorscale": "Viridis", "showscale": True},
                                    dimensions=dimensions))
    figure.update_layout(margin={"l": 60, "r": 60, "t": 40, "b": 30}, height=420)
    return figure


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d*)?(e[-+]?\d+)?", text) is not None


def learning_curves(trials: list[Trial]) -> go.Figure | None:
    """Validation accuracy per epoch for every trial; pruned trials dashed and failed ones dotted."""
    figure = go.Figure()
    for trial in trials:
        if not trial.history:
            continue
        status = STATUS_NAMES.get(trial.status, trial.status.lower())
        marked = {"color": STATUS_COLOURS[trial.status]} if trial.status in ("PRUNED", "FAILED") else {}
        figure.add_trace(go.Scatter(
            x=[e.epoch for e in trial.history], y=[e.value("val_accuracy", 0.0) * 100 for e in trial.history],
            mode="lines+markers", name=f"trial {trial_number(trial.trial_id)} ({status})",
            line={"dash": {"PRUNED": "dash", "FAILED": "dot"}.get(trial.status, "solid"), "width": 1.5},
            marker={"size": 4, **marked},
            hovertext=settings_text(trial.hyperparameters), hoverinfo="text+x+y"))
    if not figure.data:
        return None
    figure.update_layout(xaxis_title="epoch", yaxis_title="validation accuracy (%)", height=460,
                         margin={"l": 60, "r": 20, "t": 30, "b": 50}, legend={"font": {"size": 10}})
    return figure


def effects_figure(trials: list[Trial]) -> go.Figure | None:
    """Every scored trial's validation accuracy at each value of each hyperparameter, with the mean."""
    effects = hyperparameter_effects(trials)
    if not effects:
        return None
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(effects), subplot_titles=list(effects), shared_yaxes=True)
    scored = [t for t in trials if t.score is not None and t.status in SCORED_STATUSES]
    for column, (name, rows) in enumerate(effects.items(), start=1):
        labels = [format_value(row.value) for row in rows]
        figure.add_trace(go.Bar(x=labels, y=[row.mean_val_accuracy * 100 for row in rows], name="mean",
                                marker_color="#9ecae1", showlegend=column == 1), row=1, col=column)
        points = [t for t in scored if name in t.hyperparameters]
        figure.add_trace(go.Scatter(
            x=[format_value(t.hyperparameters[name]) for t in points], y=[float(t.score or 0) * 100 for t in points],
            mode="markers", name="trials", marker={"color": [STATUS_COLOURS[t.status] for t in points], "size": 7},
            hovertext=[f"trial {trial_number(t.trial_id)}" for t in points], showlegend=column == 1),
            row=1, col=column)
        figure.update_xaxes(type="category", row=1, col=column)
    figure.update_yaxes(title_text="validation accuracy (%)", row=1, col=1)
    figure.update_layout(height=380, margin={"l": 60, "r": 20, "t": 40, "b": 60})
    return figure


def importance_figure(result: Importance) -> go.Figure:
    ordered = sorted(result.values.items(), key=lambda item: item[1])
    figure = go.Figure(go.Bar(x=[v for _, v in ordered], y=[n for n, _ in ordered], orientation="h",
                              marker_color="#08519c", text=[f"{v:.2f}" for _, v in ordered], textposition="auto"))
    figure.update_layout(xaxis_title="share of the variance explained", height=80 + 40 * len(ordered),
                         margin={"l": 120, "r": 20, "t": 20, "b": 50})
    return figure


def confusion_figure(predictions: TestPredictions, spec: DatasetSpec) -> go.Figure:
    predicted = predictions.probabilities.argmax(axis=1)
    classes = spec.num_classes
    counts = np.zeros((classes, classes), dtype=int)
    np.add.at(counts, (predictions.labels.astype(int), predicted), 1)
    names = [f"{i} {spec.characters[i]}" for i in range(classes)]
    figure = go.Figure(go.Heatmap(z=counts, x=names, y=names, colorscale="Blues", text=counts,
                                  texttemplate="%{text}", showscale=False))
    figure.update_layout(xaxis_title="predicted", yaxis_title="actual", yaxis_autorange="reversed", height=520,
                         font={"family": f"{KANA_FAMILY}, system-ui, sans-serif"},
                         margin={"l": 80, "r": 20, "t": 20, "b": 60})
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
    return f"<table class=report>{''.join(rows)}</table><p>Test accuracy {percent(report['accuracy'])}.</p>"


def trial_table(trials: list[Trial]) -> str:
    """The sortable trial table: one row per trial, ranked, every status and reason."""
    names = sorted({n for t in trials for n in t.hyperparameters})
    numeric = {n for n in names if all(isinstance(t.hyperparameters.get(n), (int, float)) for t in trials)}
    head = [("rank", True), ("trial", True), *((n, n in numeric) for n in names), ("val accuracy", True),
            ("val loss", True), ("best epoch", True), ("epochs", True), ("time (s)", True), ("status", False)]
    header = "".join(f"<th data-type={'number' if is_number else 'text'}>{html.escape(label)}</th>"
                     for label, is_number in head)
    rows = []
    for rank, t in enumerate(rank_trials(trials), start=1):
        status = STATUS_NAMES.get(t.status, t.status.lower())
        reason = f": {t.message}" if t.message and t.status != "COMPLETED" else ""
        cells = [(rank, str(rank)), (int(trial_number(t.trial_id)), trial_number(t.trial_id)),
                 *((t.hyperparameters.get(n), format_value(t.hyperparameters.get(n))) for n in names),
                 (t.best_val_accuracy, percent(t.best_val_accuracy)),
                 (t.best_val_loss, "-" if t.best_val_loss is None else f"{t.best_val_loss:.4f}"),
                 (t.best_epoch, format_value(t.best_epoch)), (t.epochs_run, str(t.epochs_run)),
                 (t.wall_time_s, duration(t.wall_time_s)), (status, status + reason)]
        rows.append(f"<tr class={t.status.lower()}>" + "".join(
            f"<td data-value=\"{html.escape(json.dumps(value))}\">{html.escape(text)}</td>" for value, text in cells)
            + "</tr>")
    return f"<table id=trials class=sortable><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, column) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    table.querySelectorAll('th').forEach(function (other) { other.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var numeric = th.dataset.type === 'number';
    var rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      var x = JSON.parse(a.cells[column].dataset.value), y = JSON.parse(b.cells[column].dataset.value);
      if (x === null) return 1;
      if (y === null) return -1;
      var order = numeric ? x - y : String(x).localeCompare(String(y));
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""

STYLE = """
body { font-family: kmnist-kana, system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem;
       color: #222; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: .88rem; }
td, th { padding: .25rem .55rem; border-bottom: 1px solid #eee; }
th { background: #f4f4f4; text-align: left; } table.sortable th { cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
tr.pruned td { color: #a65300; } tr.failed td { color: #b00020; } .kana { font-size: 1.2rem; }
.note { color: #555; font-size: .9rem; } nav a { margin-right: 1rem; } img { max-width: 100%; }
"""


def prediction_grid_png(run_dir: RunDir, predictions: TestPredictions, spec: DatasetSpec) -> bytes:
    """The 10x10 grid of the first 100 test images (P: predicted, A: actual) as PNG: the figure the
    report directory holds, drawn first if it is not there yet."""
    from kmnist_search.plots import PREDICTION_GRID_FILE, plot_prediction_grid

    path = run_dir.report_dir / PREDICTION_GRID_FILE
    if not path.is_file():
        predicted = predictions.probabilities.argmax(axis=1)
        plot_prediction_grid(predictions.first_images, predictions.labels[:100], predicted[:100], spec, path)
    return path.read_bytes()


KANA_FAMILY = "kmnist-kana"


def kana_font_face(characters: str) -> str:
    """An @font-face rule with just ``characters`` from IPAex Gothic (the font ``matplotlib-fontja``
    ships), so the page shows the kana on machines without a Japanese font; empty without the package."""
    import io
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


def render_page(run_dir: RunDir, trials: list[Trial], results: RunRecord | None) -> str:
    """The whole page as text."""
    figures: list[tuple[str, go.Figure]] = []
    sections = [f"<h1>Search report: {html.escape(run_dir.name)}</h1>"]
    counts = {status: sum(t.status == status for t in trials) for status in ("COMPLETED", "PRUNED", "FAILED")}
    epochs = sum(t.epochs_run for t in trials)
    summary = (f"{len(trials)} trials: {counts['COMPLETED']} completed, {counts['PRUNED']} pruned, "
               f"{counts['FAILED']} failed; {epochs} epochs trained.")
    if results:
        summary = (f"Strategy <b>{html.escape(results.strategy)}</b> over space "
                   f"<b>{html.escape(results.space.name)}</b>, seed {results.seed}. {summary} "
                   f"Planned without pruning: {len(trials) * results.space.epochs} epochs.")
        sections.append(f"<p>{summary}</p><p>{_markdown_bold(format_winner_markdown(results))}</p>")
    else:
        sections.append(f"<p>{summary} The search has not finished: this page shows the trials so far.</p>")
    sections.append("<nav><a href=#trial-table>Trials</a><a href=#parallel>Parallel coordinates</a>"
                    "<a href=#curves>Learning curves</a><a href=#importance>Importance</a><a href=#effects>Effects</a>"
                    "<a href=#winner>Winner</a></nav>")
    sections.append(f"<h2 id=trial-table>Trials</h2><p class=note>Click a column to sort.</p>{trial_table(trials)}")
    for anchor, title, figure, note in (
            ("parallel", "Parallel coordinates", parallel_coordinates(trials),
             "Every scored trial; colour is its validation accuracy."),
            ("curves", "Learning curves", learning_curves(trials),
             "Validation accuracy per epoch; pruned trials dashed, failed trials dotted."),
            ("effects", "Hyperparameter effects", effects_figure(trials),
             "Bars: mean validation accuracy at each value; dots: the trials (orange: pruned).")):
        if figure is not None:
            figures.append((anchor, figure))
            sections.append(f"<h2 id={anchor}>{title}</h2><p class=note>{note}</p><div id=figure-{anchor}></div>")
    measured = importance(trials)
    sections.append("<h2 id=importance>Hyperparameter importance</h2>")
    if measured is None:
        sections.append("<p class=note>Needs at least three scored trials and a hyperparameter with two values.</p>")
    else:
        figures.append(("importance", importance_figure(measured)))
        sections.append(f"<p class=note>{measured.method} over {measured.trials} scored trials, each scored by its "
                        f"best validation accuracy up to epoch {measured.epoch}, the last every scored trial reached "
                        f"(pruned trials stopped early).</p><div id=figure-importance></div>")
    predictions = run_dir.read_test_predictions()
    characters = "".join(get_spec(results.dataset.name).characters) if results else ""
    if results and predictions is not None:
        spec = get_spec(results.dataset.name)
        figures.append(("confusion", confusion_figure(predictions, spec)))
        grid = base64.b64encode(prediction_grid_png(run_dir, predictions, spec)).decode("ascii")
        sections.append(f"<h2 id=winner>The winner on the test set</h2><div id=figure-confusion></div>"
                        f"<h3>Classification report</h3>{classification_table(predictions, spec)}"
                        f"<h3>The first 100 test images</h3><p class=note>P: predicted, A: actual; mistakes in red."
                        f"</p><img alt='first 100 test images' src='data:image/png;base64,{grid}'>")
    plots = "".join(f"(function (f) {{ Plotly.newPlot('figure-{anchor}', f.data, f.layout, "
                    f"{{displaylogo: false, responsive: true}}); }})({_figure_json(figure)});\n"
                    for anchor, figure in figures)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Search report: "
            f"{html.escape(run_dir.name)}</title><style>{kana_font_face(characters)}{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head>"
            f"<body>{''.join(sections)}<script>{SORT_SCRIPT}\n{plots}</script></body></html>\n")


def _markdown_bold(text: str) -> str:
    """The winner paragraph's Markdown (``**bold**``, `` `code` ``) as HTML."""
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(f"<b>{part}</b>" if index % 2 else part for index, part in enumerate(parts))
    parts = escaped.split("`")
    return "".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts))


def write_html_report(run_dir: RunDir, trials: list[Trial], results: RunRecord | None) -> Path:
    """Write ``RUN_DIR/report/index.html``; return its path."""
    run_dir.report_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir.report_dir / HTML_PAGE
    atomic_write_text(path, render_page(run_dir, trials, results))
    return path
