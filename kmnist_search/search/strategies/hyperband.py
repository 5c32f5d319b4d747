"""Hyperband (Li et al. 2018): brackets of successive halving up to the space's epochs, keeping the best
third of each round; it stops trials by its own rule, so the space's pruning rule is not applied."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from kmnist_search.data.spaces import SearchSpace

FACTOR = 3


def oracle(space: SearchSpace, trials: int, settings: dict[str, Any]) -> kt.Oracle:
    return kt.oracles.HyperbandOracle(max_epochs=space.epochs, factor=FACTOR, **settings)
