"""Trials -> rankings, effects and text tables (no TensorFlow).

The trials come from :class:`kmnist_search.data.rundir.RunDir`, which reads a finished, running or
interrupted run directly from its files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kmnist_search.base.errors import RunError
from kmnist_search.base.formatting import duration, format_value, percent, settings_text, trial_number
from kmnist_search.data.record import SCORED_STATUSES, Budget, ConfirmationRecord, RunRecord, Trial

STATUS_NAMES = {"PRUNED": "pruned", "COMPLETED": "completed", "FAILED": "failed", "INVALID": "invalid",
                "STOPPED": "stopped", "RUNNING": "running", "IDLE": "idle"}


def rank_trials(records: list[Trial]) -> list[Trial]:
    """Best validation accuracy first; trials without one last."""
    return sorted(records, key=lambda r: (r.score is None, -(r.score or 0.0)))


def format_trials_table(records: list[Trial], top: int | None = None) -> str:
    """A ranked, fixed-width table of trials for the terminal."""
    ranked = rank_trials(records)[:top]
    names = sorted({name for r in ranked for name in r.hyperparameters})
    balanced = any(r.best_val_balanced_accuracy is not None for r in ranked)
    header = ["rank", "trial", *names, "val_acc", *(["val_bal_acc"] if balanced else []), "val_loss", "epochs",
              "time", "status"]
    rows = [header]
    for rank, record in enumerate(ranked, start=1):
        rows.append([
            str(rank), trial_number(record.trial_id),
            *(format_value(record.hyperparameters.get(name)) for name in names),
            percent(record.best_val_accuracy),
            *([percent(record.best_val_balanced_accuracy)] if balanced else []),
            _format_loss(record.best_val_loss),
            str(record.epochs_run),
            duration(record.wall_time_s),
            _status_text(record),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _status_text(record: Trial) -> str:
    status = STATUS_NAMES.get(record.status, record.status.lower())
    return f"{status}: {record.message}" if record.message and record.status != "COMPLETED" else status


def _format_loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def winner_headline(results: RunRecord, markdown: bool = False) -> str:
    """The winner, its validation accuracy and its single test-set evaluation (the test figure in bold
    for Markdown)."""
    winner = results.winner
    test = f"test accuracy {percent(winner.test_accuracy)}"
    return (f"{'Winner' if markdown else 'winner'}: trial {trial_number(winner.trial_id)} "
            f"({settings_text(winner.hyperparameters)}){', ' if markdown else chr(10) + '  '}"
            f"validation accuracy {percent(winner.val_accuracy)}, {f'**{test}**' if markdown else test} "
            f"(evaluated once, on {results.dataset.test_images:,} test images)")


def format_winner(results: RunRecord) -> str:
    """Two lines naming the winner and its single test-set evaluation."""
    winner = results.winner
    text = winner_headline(results)
    if winner.objective == "val_balanced_accuracy":
        text += (f"; balanced accuracy: validation {percent(winner.val_balanced_accuracy)}, "
                 f"test {percent(winner.test_balanced_accuracy)}")
    measured = results.trial(winner.trial_id)
    if results.budget:
        text += f"\n  budget: {results.budget.describe()}: the most accurate trial within it"
    if measured is not None and measured.deployment is not None:
        text += f"\n  as shipped: {describe_deployment(measured)}"
    if results.confirmation:
        text += "\n" + format_confirmation(results.confirmation)
    retraining = winner.settings.retraining
    if retraining:
        text += (f"\n  retrained on {retraining.train_images:,} images for {retraining.epochs_trained} epochs "
                 f"(best epoch {retraining.best_epoch}); search trial's validation accuracy "
                 f"{percent(winner.search_val_accuracy)}")
    return text


def format_confirmation(confirmation: ConfirmationRecord) -> str:
    """The confirmed configurations as mean ± sd, the winner first, with the tie verdict."""
    lines = [f"  confirmed with {confirmation.runs_per_configuration} runs per configuration (different seeds), "
             f"validation accuracy mean ± sd:"]
    tied = set(confirmation.tied_trial_ids)
    for entry in confirmation.configurations:
        mark = ("winner" if entry.trial_id == confirmation.winner_trial_id
                else "tied with the winner" if entry.trial_id in tied else "")
        line = (f"    trial {trial_number(entry.trial_id)}: {entry.mean_val_accuracy * 100:.2f}% ± "
                f"{entry.sd_val_accuracy * 100:.2f} ({settings_text(entry.hyperparameters)}) {mark}")
        lines.append(line.rstrip())
    if tied:
        lines.append("  the intervals overlap: the data cannot tell the tied configurations apart")
    return "\n".join(lines)


def format_winner_markdown(results: RunRecord) -> str:
    """The winner and its single test-set evaluation as one Markdown paragraph."""
    text = winner_headline(results, markdown=True) + "."
    if results.export:
        text += f" ONNX model: `{results.export.onnx}` (verified with onnxruntime)."
    return text


@dataclass(frozen=True)
class ValueEffect:
    """Validation accuracy of the completed trials that used one value of one hyperparameter."""

    hyperparameter: str
    value: Any
    trials: int
    best_val_accuracy: float
    mean_val_accuracy: float


def hyperparameter_effects(records: list[Trial]) -> dict[str, list[ValueEffect]]:
    """The study's one-factor analysis over a real search: for each hyperparameter and value, the best
    and mean validation accuracy of the trials that used it (trials without a score are left out)."""
    scored = [r for r in records if r.score is not None and r.status in SCORED_STATUSES]
    names = sorted({name for r in scored for name in r.hyperparameters})
    effects: dict[str, list[ValueEffect]] = {}
    for name in names:
        groups: dict[str, list[float]] = {}
        values: dict[str, Any] = {}
        for record in scored:
            if name in record.hyperparameters:
                key = json.dumps(record.hyperparameters[name])
                values[key] = record.hyperparameters[name]
                groups.setdefault(key, []).append(float(record.score))  # type: ignore[arg-type]
        effects[name] = [ValueEffect(name, values[key], len(scores), max(scores), sum(scores) / len(scores))
                         for key, scores in sorted(groups.items(), key=lambda kv: _sort_key(values[kv[0]]))]
    return effects


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def most_important(effects: dict[str, list[ValueEffect]]) -> tuple[str, float] | None:
    """The hyperparameter whose values' mean validation accuracies spread widest, and that spread."""
    spreads = {name: max(e.mean_val_accuracy for e in rows) - min(e.mean_val_accuracy for e in rows)
               for name, rows in effects.items() if len(rows) > 1}
    if not spreads:
        return None
    name = max(spreads, key=spreads.__getitem__)
    return name, spreads[name]


def format_effects(effects: dict[str, list[ValueEffect]]) -> str:
    """Per-hyperparameter effects as text, plus which one matters most."""
    lines = []
    for name, rows in effects.items():
        lines.append(f"{name}:")
        for row in rows:
            lines.append(f"  {format_value(row.value):<26} best {row.best_val_accuracy * 100:6.2f}%  "
                         f"mean {row.mean_val_accuracy * 100:6.2f}%  ({row.trials} trial{'s' * (row.trials != 1)})")
    verdict = most_important(effects)
    if verdict:
        lines.append(f"matters most: {verdict[0]} (its values' mean validation accuracies span "
                     f"{verdict[1] * 100:.2f} points)")
    return "\n".join(lines)


def within_budget(trials: list[Trial], budget: Budget) -> list[Trial]:
    """The measured trials that fit the budget, most accurate first; a one-line error naming the closest
    trial when none does."""
    measured = [t for t in trials if t.deployment is not None and t.score is not None]
    if not measured:
        raise RunError(f"no trial was measured for the budget ({budget.describe()}): rerun without --no-measure")
    fitting = sorted((t for t in measured if budget.fits(t.deployment)),  # type: ignore[arg-type]
                     key=lambda t: -(t.score or 0.0))
    if not fitting:
        closest = min(measured, key=lambda t: budget.excess(t.deployment))  # type: ignore[arg-type]
        raise RunError(f"no trial fits the budget of {budget.describe()}: the closest is trial "
                       f"{trial_number(closest.trial_id)} ({describe_deployment(closest)}); raise the budget or "
                       f"search smaller models")
    return fitting


def describe_deployment(trial: Trial) -> str:
    """A measured trial in a few words: accuracy, milliseconds, size."""
    assert trial.deployment is not None
    shipped = trial.deployment.shipped()
    kind = "int8" if trial.deployment.int8 else "float32"
    return (f"{percent(trial.score)}, {shipped.speed.single_image_ms:.3f} ms per image "
            f"({shipped.speed.ratio_to_reference:.2f}x the reference), {shipped.megabytes:.3f} MB {kind}")


LATENCY_TIE = 0.15  # latencies this close count as equal: one model's median moves about this much between runs


def pareto_front(trials: list[Trial]) -> list[Trial]:
    """The measured trials no other beats on accuracy, latency and size at once, fastest first. Latencies
    within :data:`LATENCY_TIE` of each other count as equal (measurement noise, as the independent timings
    in BENCHMARKS.md show), so a trial is beaten by one at least as accurate, no larger and no slower beyond
    that noise, and better on accuracy or size. A trial whose shipped copy failed its parity check is left out."""
    measured = [t for t in trials if t.deployment is not None and t.score is not None
                and t.deployment.parity_passed and t.deployment.shipped().parity_passed]

    def point(trial: Trial) -> tuple[float, float, float]:
        shipped = trial.deployment.shipped()  # type: ignore[union-attr]
        return trial.score or 0.0, shipped.speed.single_image_ms, shipped.megabytes

    def beats(other: Trial, trial: Trial) -> bool:
        (accuracy, ms, mb), (my_accuracy, my_ms, my_mb) = point(other), point(trial)
        no_worse = accuracy >= my_accuracy and mb <= my_mb and ms <= my_ms * (1 + LATENCY_TIE)
        better = accuracy > my_accuracy or mb < my_mb or ms * (1 + LATENCY_TIE) < my_ms
        return no_worse and better

    return sorted((t for t in measured if not any(beats(other, t) for other in measured)), key=lambda t: point(t)[1])
