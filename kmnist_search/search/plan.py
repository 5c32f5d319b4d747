"""Plan a search before running it: how many trials, which configurations, roughly how long.

Imports no TensorFlow, so ``--dry-run`` answers at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from kmnist_search.base.formatting import counted
from kmnist_search.data.spaces import SearchSpace

STRATEGIES = ("grid", "bayesian", "random", "hyperband")
DEFAULT_MAX_TRIALS = 10
# Rough CPU cost model fitted to benchmarks/trial_vs_plain_fit.py on a 2-core machine (BENCHMARKS.md,
# 2026-11-25): a 54k-image trial epoch of the study's CNN took ~30 s at batch 128 and ~55 s at batch 8.
# The same machine type has measured up to 2x slower on other days.
SECONDS_PER_IMAGE = 0.000525
SECONDS_PER_STEP = 0.00395
MAX_PLAN_ROWS = 200  # the dry run lists this many configurations, then counts the rest


def planned_trials(space: SearchSpace, strategy: str, max_trials: int | None) -> int:
    """How many configurations a strategy will try (Hyperband decides for itself: an upper bound)."""
    if strategy == "grid":
        return min(space.num_configurations, max_trials or space.num_configurations)
    if strategy in ("bayesian", "random"):
        return min(space.num_configurations, max_trials or DEFAULT_MAX_TRIALS)
    return space.num_configurations


def residual_blocks(values: dict[str, Any], image_size: int = 28) -> Iterator[tuple[int, int, int, bool]]:
    """Each block of the residual network ``values`` describes: (output size, input channels, filters,
    whether it halves the size)."""
    width, blocks = int(values["resnet_width"]), (int(values["resnet_depth"]) - 2) // 6
    size, channels = image_size, width
    for stage in range(3):
        filters = width * 2 ** stage
        for block in range(blocks):
            halves = bool(stage) and not block
            size = math.ceil(size / 2) if halves else size
            yield size, channels, filters, halves
            channels = filters


def activation_elements(values: dict[str, Any], image_size: int = 28) -> int:
    """Activation values per image that a residual network's batch normalisations, ReLUs and additions
    pass over: the stem's output and two per block."""
    return image_size * image_size * int(values["resnet_width"]) + sum(
        2 * size * size * filters for size, _, filters, _ in residual_blocks(values, image_size))


def multiply_adds(values: dict[str, Any], image_size: int = 28) -> int:
    """Multiply-adds per image of the network that ``values`` (effective hyperparameters) describe."""
    if values["network"] == "preact_resnet":
        total = image_size * image_size * int(values["resnet_width"]) * 9  # the stem
        for size, channels, filters, halves in residual_blocks(values, image_size):
            total += size * size * channels * filters * (9 + 1 if halves else 9)  # with a 1x1 shortcut
            total += size * size * filters * filters * 9
        return total
    total, size, channels = 0, image_size, 1
    for token in [*str(values["conv_layers"]).split("-"), "p"]:
        if token == "p":
            size //= 2
            continue
        size -= 2
        total += size * size * channels * int(token) * 9
        channels = int(token)
    return total + size * size * channels * int(values["dense_units"])


STUDY_MULTIPLY_ADDS = 11_991_168  # the study's CNN: conv 32, conv 64, pool, dense 128
# A residual network's epoch costs its multiply-adds plus its element-wise passes (batch normalisation,
# ReLU, additions) at ACTIVATION_COST multiply-adds per activation value, scaled by RESIDUAL_SCALE; fitted
# to training epochs of five depth and width pairs measured side by side here (BENCHMARKS.md).
ACTIVATION_COST = 606
RESIDUAL_SCALE = 0.576


def network_cost(values: dict[str, Any]) -> float:
    """A network's training cost per image in the study CNN's multiply-adds: its own multiply-adds, and for a
    residual network its element-wise passes too."""
    if values["network"] == "preact_resnet":
        return (multiply_adds(values) + ACTIVATION_COST * activation_elements(values)) * RESIDUAL_SCALE
    if values["network"] == "cnn":
        return multiply_adds(values)
    return STUDY_MULTIPLY_ADDS  # a model of your own: costed as the study's CNN until its epochs are measured


def estimate_epoch_seconds(space: SearchSpace, configuration: dict[str, Any], train_images: int) -> float:
    """A rough wall-time estimate for one epoch (training and validation) on a 2-core CPU: the study's
    CNN's measured cost, scaled by :func:`network_cost`."""
    values = space.effective_hyperparameters(configuration)
    steps = math.ceil(train_images / int(values["batch_size"]))
    scale = network_cost(values) / STUDY_MULTIPLY_ADDS
    return (train_images * SECONDS_PER_IMAGE * scale + steps * SECONDS_PER_STEP
            + space.validation_images * SECONDS_PER_IMAGE * scale / 3)


def estimate_trial_seconds(space: SearchSpace, configuration: dict[str, Any], train_images: int) -> float:
    """A rough wall-time estimate for one full trial on a 2-core CPU."""
    return space.epochs * estimate_epoch_seconds(space, configuration, train_images)


def describe_plan(space: SearchSpace, strategy: str, max_trials: int | None, train_pool: int) -> str:
    """The dry-run text: the space, the configurations and a cost estimate (for the study's network)."""
    train_images = min(space.train_images or train_pool, train_pool)
    configurations = space.configurations()
    trials = planned_trials(space, strategy, max_trials)
    costs = [estimate_trial_seconds(space, c, train_images) for c in configurations]
    names = list(space.values())
    widths = [max(len(name), *(len(_cell(c[name])) for c in configurations)) for name in names]
    lines = [
        f"search space {space.name} ({space.source}): {space.description}",
        f"strategy {strategy}: {trials} of {counted(len(configurations), 'configuration')}, "
        f"{counted(space.epochs, 'epoch')} each, "
        f"optimizer {space.describe_optimizer()}, {train_images} training and {space.validation_images} "
        f"validation images; pruning: {_pruning(space, strategy)}",
        "",
        "  #  " + "  ".join(name.ljust(width) for name, width in zip(names, widths, strict=True)) + "  est. time",
    ]
    for index, (config, cost) in enumerate(zip(configurations, costs, strict=True), start=1):
        if index > MAX_PLAN_ROWS:
            lines.append(f"  ... and {len(configurations) - MAX_PLAN_ROWS:,} more configurations")
            break
        cells = "  ".join(_cell(config[name]).ljust(width) for name, width in zip(names, widths, strict=True))
        lines.append(f"{index:>3}  {cells}  {_duration(cost):>9}")
    total = sum(costs[:trials]) if strategy == "grid" else sum(costs) / len(costs) * trials
    lines.append("")
    if space.retrain_epochs:
        retrain = space.retrain_epochs * max(estimate_epoch_seconds(space, c, train_pool)
                                             for c in configurations)
        total += retrain
        lines.append(f"then the winner is retrained on all {train_pool} training images for {space.retrain_epochs} "
                     f"epochs: up to {_duration(retrain)}")
    lines.append(f"estimated total: {_duration(total)} on a 2-core CPU (rough; {counted(trials, 'trial')}"
                 f"{', Hyperband stops most early' if strategy == 'hyperband' else ''})")
    return "\n".join(lines)


def _pruning(space: SearchSpace, strategy: str) -> str:
    if strategy == "hyperband":
        return "Hyperband's own"
    return space.pruning.describe()


def _cell(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.1f} min"
