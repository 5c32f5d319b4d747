"""The search strategies, one module each (as Keras Tuner's ``tuners/`` and Optuna's ``samplers/``): each
builds the Keras Tuner oracle that proposes the trials. :data:`REGISTRY` maps the names the commands
accept (:data:`kmnist_search.search.plan.STRATEGIES`) to them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras_tuner as kt

from kmnist_search.data.spaces import SearchSpace
from kmnist_search.search.hypermodel import search_hyperparameters
from kmnist_search.search.strategies import bayesian, grid, hyperband, random

OracleBuilder = Callable[[SearchSpace, int, dict[str, Any]], kt.Oracle]  # (space, planned trials, settings)


@dataclass(frozen=True)
class Strategy:
    """A strategy: how its oracle is built, and whether it stops trials early by a rule of its own."""

    oracle: OracleBuilder
    stops_trials_itself: bool = False  # Hyperband's brackets: the space's pruning rule is not applied


REGISTRY: dict[str, Strategy] = {
    "grid": Strategy(grid.oracle),
    "bayesian": Strategy(bayesian.oracle),
    "random": Strategy(random.oracle),
    "hyperband": Strategy(hyperband.oracle, stops_trials_itself=True),
}


def oracle_settings(space: SearchSpace, objective: str, seed: int) -> dict[str, Any]:
    """What every oracle is built with: the objective (maximised), the space's hyperparameters (fixed: no
    new entries), the seed and the failure limit."""
    return {
        "objective": kt.Objective(objective, direction="max"),
        "hyperparameters": search_hyperparameters(space),
        "tune_new_entries": False,
        "allow_new_entries": False,
        "seed": seed,
        "max_consecutive_failed_trials": 3,
    }
