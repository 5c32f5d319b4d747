"""How numbers and values read, the same in the console, the tables and the reports (no TensorFlow)."""

from __future__ import annotations

from typing import Any


def format_value(value: Any) -> str:
    """A hyperparameter value as people read it: floats in Python's shortest form (``1.0``, ``0.0001``),
    booleans as ``true``/``false``, ``-`` for none."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def percent(fraction: float | None, digits: int = 2) -> str:
    """0.9774 -> ``97.74%``; ``-`` for none."""
    return "-" if fraction is None else f"{fraction * 100:.{digits}f}%"


def duration(seconds: float | None) -> str:
    """Seconds as people read them: ``45 s``, ``12.5 min``, ``2.3 h``; ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def counted(count: int, noun: str) -> str:
    """``1 trial``, ``4 trials``: a count with its noun in the number that agrees."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def settings_text(values: dict[str, Any]) -> str:
    """``name=value`` pairs in name order."""
    return ", ".join(f"{name}={format_value(value)}" for name, value in sorted(values.items()))


def trial_number(trial_id: str) -> str:
    """A trial as people count it, from 1 (Keras Tuner's ids count from 0: ``"00"`` is trial 1)."""
    return str(int(trial_id) + 1) if trial_id.isdigit() else trial_id
