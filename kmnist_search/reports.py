"""Trials -> records and tables.

Reads a Keras Tuner project directly from its JSON files (``trial_*/trial.json``) plus the per-epoch
log our tuners write beside it (``trial_log.json``), so it works on a finished, running or
interrupted run without constructing a tuner or importing TensorFlow.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kmnist_search.spaces import BOOLEAN_HYPERPARAMETERS

TRIAL_LOG_FILE = "trial_log.json"
TEST_PREDICTIONS_FILE = "winner_test_predictions.npz"
RETRAIN_LOG_FILE = "retrain_log.json"
PRUNED_FILE = "pruned.json"
HYPERBAND_BOOKKEEPING = "tuner/"  # Hyperband's own entries (bracket, round, epochs), not hyperparameters
STATUS_NAMES = {"PRUNED": "pruned", "COMPLETED": "completed", "FAILED": "failed", "INVALID": "invalid",
                "STOPPED": "stopped", "RUNNING": "running", "IDLE": "idle"}
SCORED_STATUSES = ("COMPLETED", "PRUNED")  # pruned trials count with the score they had reached


@dataclass
class TrialRecord:
    """One trial as the reports see it."""

    trial_id: str
    hyperparameters: dict[str, Any]
    status: str
    best_val_accuracy: float | None
    best_val_loss: float | None
    best_epoch: int | None
    epochs_run: int
    wall_time_s: float | None
    message: str | None
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_balanced_accuracy: float | None = None  # tracked when it is the objective (K49)

    @property
    def score(self) -> float | None:
        """What the search maximised: balanced accuracy where tracked, else accuracy."""
        return self.best_val_balanced_accuracy if self.best_val_balanced_accuracy is not None \
            else self.best_val_accuracy

    @classmethod
    def from_trial_json(cls, state: dict[str, Any], log: dict[str, Any] | None,
                        pruned: dict[str, Any] | None = None) -> TrialRecord:
        """Combine Keras Tuner's trial state with our per-epoch log (either may be partial) and the
        median-stopping record, if the trial was pruned."""
        metrics = state.get("metrics", {}).get("metrics", {})
        history = list((log or {}).get("epochs", []))
        val_accuracy = _best(metrics, "val_accuracy", max)
        val_loss = _best(metrics, "val_loss", min)
        best_epoch = None
        if history:
            accuracies = [e.get("val_accuracy", float("-inf")) for e in history]
            best_index = max(range(len(history)), key=accuracies.__getitem__)
            best_epoch = int(history[best_index]["epoch"])
            if val_accuracy is None and state.get("status") != "FAILED":
                val_accuracy = history[best_index].get("val_accuracy")
                val_loss = history[best_index].get("val_loss")
        status = str(state.get("status", "UNKNOWN"))
        message = message_gist(state.get("message"))
        if pruned and status == "COMPLETED":
            status = "PRUNED"
            message = (f"at epoch {pruned['epoch']}: best {pruned['value'] * 100:.2f}% below the median "
                       f"{pruned['median'] * 100:.2f}% of {pruned['trials_compared']} trials")
        return cls(
            trial_id=str(state.get("trial_id")),
            hyperparameters={name: bool(value) if name in BOOLEAN_HYPERPARAMETERS else value
                             for name, value in state.get("hyperparameters", {}).get("values", {}).items()
                             if not name.startswith(HYPERBAND_BOOKKEEPING)},
            status=status,
            best_val_accuracy=val_accuracy,
            best_val_loss=val_loss,
            best_epoch=best_epoch,
            epochs_run=len(history),
            wall_time_s=(log or {}).get("wall_time_s"),
            message=message,
            history=history,
            best_val_balanced_accuracy=_best(metrics, "val_balanced_accuracy", max),
        )

    def to_dict(self, with_history: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_history:
            data.pop("history")
        return data


def message_gist(message: str | None) -> str | None:
    """The last line of a failed trial's traceback, without the exception's module path."""
    if not message or not message.strip():
        return None
    last = message.strip().splitlines()[-1]
    return re.sub(r"^[\w.]*(Error|Exception): ", "", last)


def _best(metrics: dict[str, Any], name: str, pick: Any) -> float | None:
    observations = metrics.get(name, {}).get("observations", [])
    values = [value for obs in observations for value in obs.get("value", [])]
    return float(pick(values)) if values else None


def collect_trials(run_dir: Path) -> list[TrialRecord]:
    """All trials of a run directory, in trial order."""
    records = []
    for trial_json in sorted(run_dir.glob("trial_*/trial.json")):
        state = _read_json(trial_json)
        if state is None:
            continue  # a trial file being written right now; the next look will see it
        records.append(TrialRecord.from_trial_json(state, _read_json(trial_json.parent / TRIAL_LOG_FILE),
                                                   _read_json(trial_json.parent / PRUNED_FILE)))
    return records


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data


def rank_trials(records: list[TrialRecord]) -> list[TrialRecord]:
    """Best validation accuracy first; trials without one last."""
    return sorted(records, key=lambda r: (r.score is None, -(r.score or 0.0)))


def format_trials_table(records: list[TrialRecord], top: int | None = None) -> str:
    """A ranked, fixed-width table of trials for the terminal."""
    ranked = rank_trials(records)[:top]
    names = sorted({name for r in ranked for name in r.hyperparameters})
    balanced = any(r.best_val_balanced_accuracy is not None for r in ranked)
    header = ["rank", "trial", *names, "val_acc", *(["val_bal_acc"] if balanced else []), "val_loss", "epochs",
              "time", "status"]
    rows = [header]
    for rank, record in enumerate(ranked, start=1):
        rows.append([
            str(rank), record.trial_id,
            *(_format_value(record.hyperparameters.get(name)) for name in names),
            _format_metric(record.best_val_accuracy, percent=True),
            *([_format_metric(record.best_val_balanced_accuracy, percent=True)] if balanced else []),
            _format_metric(record.best_val_loss),
            str(record.epochs_run),
            _format_seconds(record.wall_time_s),
            _status_text(record),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _status_text(record: TrialRecord) -> str:
    status = STATUS_NAMES.get(record.status, record.status.lower())
    return f"{status}: {record.message}" if record.message and record.status != "COMPLETED" else status


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def _format_metric(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.2f}%" if percent else f"{value:.4f}"


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f}m" if seconds >= 90 else f"{seconds:.0f}s"


def format_winner(results: dict[str, Any]) -> str:
    """Two lines naming the winner and its single test-set evaluation."""
    winner = results["winner"]
    values = ", ".join(f"{k}={_format_value(v)}" for k, v in sorted(winner["hyperparameters"].items()))
    text = (f"winner: trial {winner['trial_id']} ({values})\n"
            f"  validation accuracy {winner['val_accuracy'] * 100:.2f}%, "
            f"test accuracy {winner['test_accuracy'] * 100:.2f}% (evaluated once, on "
            f"{results['dataset']['test_images']} test images)")
    if winner.get("objective") == "val_balanced_accuracy":
        text += (f"; balanced accuracy: validation {winner['val_balanced_accuracy'] * 100:.2f}%, "
                 f"test {winner['test_balanced_accuracy'] * 100:.2f}%")
    retrained = winner.get("retrained")
    if retrained:
        text += (f"\n  retrained on {retrained['train_images']} images for {retrained['epochs_run']} epochs "
                 f"(best epoch {retrained['best_epoch']}); search trial's validation accuracy "
                 f"{winner['search_val_accuracy'] * 100:.2f}%")
    return text


@dataclass(frozen=True)
class ValueEffect:
    """Validation accuracy of the completed trials that used one value of one hyperparameter."""

    hyperparameter: str
    value: Any
    trials: int
    best_val_accuracy: float
    mean_val_accuracy: float


def hyperparameter_effects(records: list[TrialRecord]) -> dict[str, list[ValueEffect]]:
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
            lines.append(f"  {_format_value(row.value):<26} best {row.best_val_accuracy * 100:6.2f}%  "
                         f"mean {row.mean_val_accuracy * 100:6.2f}%  ({row.trials} trial{'s' * (row.trials != 1)})")
    verdict = most_important(effects)
    if verdict:
        lines.append(f"matters most: {verdict[0]} (its values' mean validation accuracies span "
                     f"{verdict[1] * 100:.2f} points)")
    return "\n".join(lines)
