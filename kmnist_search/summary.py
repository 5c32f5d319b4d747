"""Summarise a run: ``python -m kmnist_search.summary RUN_DIR [--format table|markdown|csv|json] [--top N]``.

Works on finished, running and interrupted runs (it reports what exists), for every strategy, and
writes the figures and a readable ``RUN_DIR/report/README.md`` unless ``--no-figures``.

The JSON format (schema version 1) is ``{"schema_version", "run_dir", "trials": [trial records as in
results.json, without history], "effects": {hyperparameter: [{"value", "trials", "best_val_accuracy",
"mean_val_accuracy"}]}, "most_important": {"hyperparameter", "spread"} | null, "winner": {...} | null,
"export": {...} | null}``. The CSV format is one row per trial: ``rank, trial_id, status,
best_val_accuracy, best_val_balanced_accuracy, best_val_loss, best_epoch, epochs_run, wall_time_s,
message`` and one ``hp.NAME``
column per hyperparameter (values JSON-encoded).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kmnist_search.cli import OneLineArgumentParser, run_main
from kmnist_search.errors import RunError
from kmnist_search.reports import (
    TrialRecord,
    collect_trials,
    format_effects,
    format_trials_table,
    format_winner,
    hyperparameter_effects,
    most_important,
    rank_trials,
)

SUMMARY_SCHEMA_VERSION = 1
CSV_FIELDS = ("rank", "trial_id", "status", "best_val_accuracy", "best_val_balanced_accuracy", "best_val_loss",
              "best_epoch", "epochs_run", "wall_time_s", "message")
FORMATS = ("table", "markdown", "csv", "json")


def load_run(run_dir: Path) -> tuple[list[TrialRecord], dict[str, Any] | None]:
    """The run's trials and, if it finished, its results.json."""
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a run directory: pass e.g. runs/quick-grid")
    trials = collect_trials(run_dir)
    results_path = run_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else None
    if not trials and results is None:
        raise RunError(f"{run_dir} holds no trials yet: start a search with `python -m kmnist_search.run`")
    return trials, results


def build_summary(run_dir: Path, trials: list[TrialRecord], results: dict[str, Any] | None,
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
        "winner": results["winner"] if results else None,
        "export": results.get("export") if results else None,
    }


def to_csv(trials: list[TrialRecord], top: int | None = None) -> str:
    """One row per ranked trial; hyperparameters as ``hp.NAME`` columns holding JSON values."""
    ranked = rank_trials(trials)[:top]
    names = sorted({name for t in ranked for name in t.hyperparameters})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_FIELDS, *(f"hp.{n}" for n in names)], lineterminator="\n")
    writer.writeheader()
    for rank, trial in enumerate(ranked, start=1):
        row: dict[str, Any] = {"rank": rank, **{k: v for k, v in trial.to_dict(False).items() if k in CSV_FIELDS}}
        row.update({f"hp.{n}": json.dumps(trial.hyperparameters[n]) for n in names if n in trial.hyperparameters})
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def from_csv(text: str) -> list[TrialRecord]:
    """Read :func:`to_csv` output back into trial records (without per-epoch history)."""
    records = []
    for row in csv.DictReader(io.StringIO(text)):
        def number(key: str, kind: type = float, row: dict[str, str] = row) -> Any:
            return kind(row[key]) if row[key] != "" else None

        records.append(TrialRecord(
            trial_id=row["trial_id"], status=row["status"],
            hyperparameters={k[3:]: json.loads(v) for k, v in row.items() if k.startswith("hp.") and v != ""},
            best_val_accuracy=number("best_val_accuracy"), best_val_loss=number("best_val_loss"),
            best_val_balanced_accuracy=number("best_val_balanced_accuracy"),
            best_epoch=number("best_epoch", int), epochs_run=int(row["epochs_run"]),
            wall_time_s=number("wall_time_s"), message=row["message"] or None,
        ))
    return records


def to_markdown(summary: dict[str, Any], trials: list[TrialRecord], top: int | None = None) -> str:
    """The ranked trials and effects as Markdown tables."""
    ranked = rank_trials(trials)[:top]
    names = sorted({name for t in ranked for name in t.hyperparameters})
    lines = ["| rank | trial | " + " | ".join(names) + " | val acc | val loss | epochs | time (s) | status |",
             "|" + "---|" * (len(names) + 7)]
    for rank, t in enumerate(ranked, start=1):
        values = " | ".join(str(t.hyperparameters.get(n, "-")) for n in names)
        acc = f"{t.best_val_accuracy * 100:.2f}%" if t.best_val_accuracy is not None else "-"
        loss = f"{t.best_val_loss:.4f}" if t.best_val_loss is not None else "-"
        status = t.status.lower() + (f": {t.message}" if t.message and t.status != "COMPLETED" else "")
        lines.append(f"| {rank} | {t.trial_id} | {values} | {acc} | {loss} | {t.epochs_run} | "
                     f"{t.wall_time_s if t.wall_time_s is not None else '-'} | {status} |")
    lines += ["", "| hyperparameter | value | trials | best val acc | mean val acc |", "|---|---|---|---|---|"]
    for name, rows in summary["effects"].items():
        for row in rows:
            lines.append(f"| {name} | {row['value']} | {row['trials']} | {row['best_val_accuracy'] * 100:.2f}% | "
                         f"{row['mean_val_accuracy'] * 100:.2f}% |")
    if summary["most_important"]:
        verdict = summary["most_important"]
        lines += ["", f"**Matters most: `{verdict['hyperparameter']}`** (its values' mean validation "
                      f"accuracies span {verdict['spread'] * 100:.2f} points)."]
    return "\n".join(lines)


def render(summary: dict[str, Any], trials: list[TrialRecord], results: dict[str, Any] | None, fmt: str,
           top: int | None) -> str:
    """The summary in one of FORMATS."""
    if fmt == "json":
        return json.dumps(summary, indent=2, ensure_ascii=False)
    if fmt == "csv":
        return to_csv(trials, top).rstrip("\n")
    if fmt == "markdown":
        return to_markdown(summary, trials, top)
    parts = [f"run {summary['run_dir']}: {len(trials)} trials", format_trials_table(trials, top), "",
             "per-hyperparameter effects (validation accuracy):", format_effects(hyperparameter_effects(trials))]
    if results:
        parts += ["", format_winner(results)]
        if results.get("export"):
            parts.append(f"  ONNX: {results['export']['onnx']}")
    else:
        parts += ["", "no winner yet: the search has not finished (rerun its command to resume)"]
    return "\n".join(parts)


def summarise(run_dir: Path, fmt: str = "table", top: int | None = None, figures: bool = True) -> str:
    """Summarise a run in a format and (re)write its report directory; return the text to print."""
    trials, results = load_run(run_dir)
    summary = build_summary(run_dir, trials, results, top)
    text = render(summary, trials, results, fmt, top)
    if figures:
        from kmnist_search.plots import write_report

        report = write_report(run_dir, trials, results, to_markdown(summary, trials))
        if fmt == "table":
            text += f"\n\nreport: {report}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m kmnist_search.summary",
                                   description="Summarise a search: ranked trials, effects, winner, figures.")
    parser.add_argument("run_dir", type=Path, help="a run directory, e.g. runs/quick-grid")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    parser.add_argument("--top", type=int, help="only the N best trials")
    parser.add_argument("--no-figures", action="store_true", help="do not write RUN_DIR/report/")
    args = parser.parse_args(argv)
    if args.top is not None and args.top < 1:
        raise RunError(f"--top {args.top}: must be at least 1")
    print(summarise(args.run_dir, args.format, args.top, figures=not args.no_figures))
    return 0


if __name__ == "__main__":
    run_main(main)
