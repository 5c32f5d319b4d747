"""Random search: configurations drawn at random (seeded), at most ``trials`` of them."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from kmnist_search.data.spaces import SearchSpace


def oracle(space: SearchSpace, trials: int, settings: dict[str, Any]) -> kt.Oracle:
    return kt.oracles.RandomSearchOracle(max_trials=trials, **settings)
