"""Bayesian optimisation (Keras Tuner's Gaussian process) over the space's configurations, three random
ones first, then the untried configuration with the best upper confidence bound."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from kmnist_search.data.spaces import SearchSpace
from kmnist_search.search.keras_tuner_patches import GridBayesianOracle

INITIAL_POINTS = 3


def oracle(space: SearchSpace, trials: int, settings: dict[str, Any]) -> kt.Oracle:
    return GridBayesianOracle(max_trials=trials, num_initial_points=min(INITIAL_POINTS, trials), **settings)
