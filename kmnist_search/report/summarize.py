"""A run's summary as data and as text: ranked trials, effects and the winner, in every format.

Works on finished, running and interrupted runs (it reports what exists), for every strategy. The
JSON format (schema version 1) is ``{"schema_version", "run_dir", "trials": [trial records as in
results.json, without history], "effects": {hyperparameter: [{"value", "trials", "best_val_accuracy",
"mean_val_accuracy"}]}, "most_important": {"hyperparameter", "spread"} | null, "winner": {...} | null,
"export": {...} | null}``. The CSV format is one row per trial: ``rank, trial_id, status,
best_val_accuracy, best_val_balanced_accuracy, best_val_loss, best_epoch, epochs_run, wall_time_s,
message`` and one ``hp.NAME`` column per hyperparameter (values JSON-encoded).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kmnist_search.base.errors import RunError
from kmnist_search.base.formatting import duration, format_value, percent, trial_number
from kmnist_search.data import run_guard
from kmnist_search.data.record import RunRecord, Trial
from kmnist_search.data.rundir import RunDir
from kmnist_search.report.rankings import (
    describe_deployment,
    format_effects,
    format_trials_table,
    format_winner,
    format_winner_markdown,
    hyperparameter_effects,
    most_important,
    pareto_front,
    rank_trials,
)

SUMMARY_SCHEMA_VERSION = 1
CSV_FIELDS = ("rank", "trial", "status", "best_val_accuracy", "best_val_balanced_accuracy", "best_val_loss",
              "best_epoch", "epochs_run", "wall_time_s", "message")
CSV_DIGITS = {"best_val_accuracy": 4, "best_val_balanced_accuracy": 4, "best_val_loss": 4, "wall_time_s": 1}
FORMATS = ("table", "markdown", "csv", "json")


def load_run(run_dir: RunDir | Path) -> tuple[list[Trial], RunRecord | None]:
    """The run's trials and, if it finished, its results."""
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir.existing(run_dir)
    run_guard.check_state_files(run_dir)  # a damaged run is named as such
    if not run_guard.is_run(run_dir):
        raise RunError(f"{run_dir.path} is not a kmnist-search run folder (it has no space.json): pass a run "
                       f"directory such as runs/quick-grid")
    trials = run_dir.trials()
    results = run_dir.read_results()
    if not trials and results is None:
        raise RunError(f"{run_dir.path} holds no trials yet: start a search with `python -m kmnist_search.run`")
    return trials, results


def build_summary(run_dir: Path, trials: list[Trial], results: RunRecord | None,
                  top: int | None = None) -> dict[str, Any]:
    """The summary as data (the JSON format)."""
    effects = hyperparameter_effects(trials)
    verdict = most_important(effects)
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "run_dir": str(run_dir),
        "trials": [t.to_dict(with_history=False) for t in rank_trials(trials)[:top]],
        "effects": {name: [{k: v for k, v in asdict(e).items() if k != "hyperparameter"} for e in rows]
                    for name, rows in effects.items()},
        "most_important": {"hyperparameter": verdict[0], "spread": verdict[1]} if verdict else None,
        "winner": results.winner.to_dict() if results else None,
        "export": results.export.to_dict() if results and results.export else None,
    }


def to_csv(trials: list[Trial], top: int | None = None) -> str:
    """One row per ranked trial, numbered as the console numbers it (``trial``: from 1), with accuracies and
    losses to 4 decimals and seconds to 1; hyperparameters as ``hp.NAME`` columns holding plain values
    (``0.1``, ``categorical_crossentropy``, ``true``), as a spreadsheet reads them."""
    ranked = rank_trials(trials)[:top]
    names = sorted({name for t in ranked for name in t.hyperparameters})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_FIELDS, *(f"hp.{n}" for n in names)], lineterminator="\n")
    writer.writeheader()
    for rank, trial in enumerate(ranked, start=1):
        row: dict[str, Any] = {"rank": rank, "trial": trial_number(trial.trial_id),
                               **{k: v for k, v in trial.to_dict(False).items() if k in CSV_FIELDS}}
        row.update({k: round(row[k], digits) for k, digits in CSV_DIGITS.items() if row.get(k) is not None})
        row.update({f"hp.{n}": format_value(trial.hyperparameters[n]) for n in names if n in trial.hyperparameters})
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def from_csv(text: str) -> list[Trial]:
    """Read :func:`to_csv` output back into trial records (without per-epoch history)."""
    records = []
    for row in csv.DictReader(io.StringIO(text)):
        fields = {k: v if v != "" else None for k, v in row.items() if k in CSV_FIELDS and k not in ("rank", "trial")}
        hyperparameters = {k[3:]: _cell_value(v) for k, v in row.items() if k.startswith("hp.") and v != ""}
        records.append(Trial.model_validate({**fields, "trial_id": str(int(row["trial"]) - 1),
                                             "hyperparameters": hyperparameters}))
    return records


def _cell_value(text: str) -> Any:
    """A CSV cell back to the value it was written from (numbers and booleans; text stays text)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def to_markdown(summary: dict[str, Any], trials: list[Trial], top: int | None = None) -> str:
    """The ranked trials and effects as Markdown tables."""
    ranked = rank_trials(trials)[:top]
    names = sorted({name for t in ranked for name in t.hyperparameters})
    lines = ["| rank | trial | " + " | ".join(names) + " | val acc | val loss | epochs | time | status |",
             "|" + "---|" * (len(names) + 7)]
    for rank, t in enumerate(ranked, start=1):
        values = " | ".join(format_value(t.hyperparameters.get(n)) for n in names)
        loss = f"{t.best_val_loss:.4f}" if t.best_val_loss is not None else "-"
        status = t.status.lower() + (f": {t.message}" if t.message and t.status != "COMPLETED" else "")
        lines.append(f"| {rank} | {trial_number(t.trial_id)} | {values} | {percent(t.best_val_accuracy)} | {loss} | "
                     f"{t.epochs_run} | {duration(t.wall_time_s)} | {status} |")
    lines += ["", "| hyperparameter | value | trials | best val acc | mean val acc |", "|---|---|---|---|---|"]
    for name, effects in hyperparameter_effects(trials).items():
        for effect in effects:
            lines.append(f"| {name} | {format_value(effect.value)} | {effect.trials} | "
                         f"{percent(effect.best_val_accuracy)} | {percent(effect.mean_val_accuracy)} |")
    if summary["most_important"]:
        verdict = summary["most_important"]
        lines += ["", f"**Matters most: `{verdict['hyperparameter']}`** (its values' mean validation "
                      f"accuracies span {verdict['spread'] * 100:.2f} points)."]
    return "\n".join(lines)


def render(summary: dict[str, Any], trials: list[Trial], results: RunRecord | None, fmt: str,
           top: int | None) -> str:
    """The summary in one of FORMATS."""
    if fmt == "json":
        return json.dumps(summary, indent=2, ensure_ascii=False)
    if fmt == "csv":
        return to_csv(trials, top).rstrip("\n")
    if fmt == "markdown":
        winner = format_winner_markdown(results) if results else "The search has not finished: no winner yet."
        return to_markdown(summary, trials, top) + "\n\n" + winner
    parts = [f"run {summary['run_dir']}: {len(trials)} trials", format_trials_table(trials, top), "",
             "per-hyperparameter effects (validation accuracy):", format_effects(hyperparameter_effects(trials))]
    front = pareto_front(trials)
    if front:
        parts += ["", "measured as shipped, the trials no other beats on accuracy, latency and size at once:",
                  *(f"  trial {trial_number(t.trial_id)}: {describe_deployment(t)}" for t in front)]
    if results:
        parts += ["", format_winner(results)]
        if results.export:
            parts.append(f"  ONNX: {results.export.onnx}")
    else:
        parts += ["", "no winner yet: the search has not finished (rerun its command to resume)"]
    return "\n".join(parts)


def summarise(run_dir: Path, fmt: str = "table", top: int | None = None) -> str:
    """The summary of a run in one of :data:`FORMATS` (reads only; see :func:`write_report`)."""
    trials, results = load_run(run_dir)
    return render(build_summary(run_dir, trials, results, top), trials, results, fmt, top)


def write_report(run_dir: Path) -> Path:
    """(Re)write the run's report directory: the figures, the Markdown page and the self-contained
    HTML page ``index.html``; return the HTML page's path."""
    from kmnist_search.report.figures import write_report as write_figures_and_page
    from kmnist_search.report.html import write_html_report

    trials, results = load_run(run_dir)
    summary = build_summary(run_dir, trials, results)
    write_figures_and_page(RunDir(run_dir), trials, results, to_markdown(summary, trials))
    return write_html_report(RunDir(run_dir), trials, results)
