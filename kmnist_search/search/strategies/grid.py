"""Grid search: every configuration of the space, in the space's order, resumable after a kill."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from kmnist_search.data.spaces import SearchSpace
from kmnist_search.search.keras_tuner_patches import ResumableGridSearchOracle


def oracle(space: SearchSpace, trials: int, settings: dict[str, Any]) -> kt.Oracle:
    return ResumableGridSearchOracle(max_trials=trials, **settings)
