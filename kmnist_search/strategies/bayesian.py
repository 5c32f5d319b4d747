"""Bayesian optimisation (Keras Tuner's Gaussian process) over the space's configurations, three random
ones first, never the same configuration twice."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from kmnist_search.keras_tuner_patches import NonRepeatingBayesianOracle
from kmnist_search.spaces import SearchSpace

INITIAL_POINTS = 3


def oracle(space: SearchSpace, trials: int, settings: dict[str, Any]) -> kt.Oracle:
    return NonRepeatingBayesianOracle(max_trials=trials, num_initial_points=min(INITIAL_POINTS, trials), **settings)
