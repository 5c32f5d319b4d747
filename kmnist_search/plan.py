"""Plan a search before running it: how many trials, which configurations, roughly how long.

Imports no TensorFlow, so ``--dry-run`` answers at once.
"""

from __future__ import annotations

import math

from kmnist_search.spaces import SearchSpace

STRATEGIES = ("grid", "bayesian", "random", "hyperband")
DEFAULT_MAX_TRIALS = 10
# Rough CPU cost model fitted to benchmarks/trial_vs_plain_fit.py on a 2-core machine (BENCHMARKS.md,
# 2026-11-25): a 54k-image trial epoch of the study's CNN took ~30 s at batch 128 and ~55 s at batch 8.
# The same machine type has measured up to 2x slower on other days.
SECONDS_PER_IMAGE = 0.000525
SECONDS_PER_STEP = 0.00395


def planned_trials(space: SearchSpace, strategy: str, max_trials: int | None) -> int:
    """How many configurations a strategy will try (Hyperband decides for itself: an upper bound)."""
    if strategy == "grid":
        return min(space.num_configurations, max_trials or space.num_configurations)
    if strategy in ("bayesian", "random"):
        return min(space.num_configurations, max_trials or DEFAULT_MAX_TRIALS)
    return space.num_configurations


def estimate_epoch_seconds(space: SearchSpace, batch_size: int, train_images: int) -> float:
    """A rough wall-time estimate for one epoch (training and validation) on a 2-core CPU."""
    steps = math.ceil(train_images / batch_size)
    return (train_images * SECONDS_PER_IMAGE + steps * SECONDS_PER_STEP
            + space.validation_images * SECONDS_PER_IMAGE / 3)


def estimate_trial_seconds(space: SearchSpace, batch_size: int, train_images: int) -> float:
    """A rough wall-time estimate for one full trial on a 2-core CPU."""
    return space.epochs * estimate_epoch_seconds(space, batch_size, train_images)


def describe_plan(space: SearchSpace, strategy: str, max_trials: int | None, train_pool: int) -> str:
    """The dry-run text: the space, the configurations and a cost estimate (for the study's network)."""
    train_images = min(space.train_images or train_pool, train_pool)
    configurations = space.configurations()
    trials = planned_trials(space, strategy, max_trials)
    costs = [estimate_trial_seconds(space, c["batch_size"], train_images) for c in configurations]
    names = list(space.values())
    widths = [max(len(name), *(len(_cell(c[name])) for c in configurations)) for name in names]
    lines = [
        f"search space {space.name} ({space.source}): {space.description}",
        f"strategy {strategy}: {trials} of {len(configurations)} configurations, {space.epochs} epochs each, "
        f"optimizer {space.describe_optimizer()}, {train_images} training and {space.validation_images} "
        f"validation images; pruning: {_pruning(space, strategy)}",
        "",
        "  #  " + "  ".join(name.ljust(width) for name, width in zip(names, widths, strict=True)) + "  est. time",
    ]
    for index, (config, cost) in enumerate(zip(configurations, costs, strict=True), start=1):
        cells = "  ".join(_cell(config[name]).ljust(width) for name, width in zip(names, widths, strict=True))
        lines.append(f"{index:>3}  {cells}  {_duration(cost):>9}")
    total = sum(costs[:trials]) if strategy == "grid" else sum(costs) / len(costs) * trials
    lines.append("")
    if space.retrain_epochs:
        retrain = space.retrain_epochs * max(estimate_epoch_seconds(space, c["batch_size"], train_pool)
                                             for c in configurations)
        total += retrain
        lines.append(f"then the winner is retrained on all {train_pool} training images for {space.retrain_epochs} "
                     f"epochs: up to {_duration(retrain)}")
    lines.append(f"estimated total: {_duration(total)} on a 2-core CPU (rough, for the study's network; {trials} "
                 f"trials{', Hyperband stops most early' if strategy == 'hyperband' else ''})")
    return "\n".join(lines)


def _pruning(space: SearchSpace, strategy: str) -> str:
    if strategy == "hyperband":
        return "Hyperband's own"
    rule = space.pruning
    return "none" if rule.strategy == "none" else \
        f"median after {rule.warmup_epochs} epoch(s), against >= {rule.min_trials} trials"


def _cell(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.1f} min"
