"""The fused optimizers must train exactly as Keras's own: same weights after the same steps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest

from kmnist_search.search.hypermodel import build_network, make_optimizer
from kmnist_search.search.optimizers import FusedAdadelta, FusedAdam, FusedSGD

KERAS_TWINS: dict[str, Callable[[float], keras.optimizers.Optimizer]] = {
    "adadelta": lambda rate: keras.optimizers.Adadelta(learning_rate=rate),
    "adam": lambda rate: keras.optimizers.Adam(learning_rate=rate),
    "sgd": lambda rate: keras.optimizers.SGD(learning_rate=rate, momentum=0.9),
}


def weights_after_training(optimizer: keras.optimizers.Optimizer, steps: int) -> list[np.ndarray]:
    keras.utils.set_random_seed(3)
    model = build_network(steps_per_execution=4)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", steps_per_execution=4)
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (8 * steps, 28, 28, 1), dtype=np.uint8)
    labels = keras.utils.to_categorical(rng.integers(0, 10, 8 * steps), 10)
    model.fit(images, labels, batch_size=8, epochs=1, shuffle=False)
    return [np.asarray(weight) for weight in model.weights]


# After one step the weights agree to float rounding. Over many steps rounding differences grow:
# hardly at all for Adadelta and SGD, more for Adam, whose update divides by sqrt(v) and so amplifies
# differences in near-zero gradients. A weight whose gradient is at rounding level moves by up to a whole
# step (the learning rate) either way, whichever sign rounding gave it: after 16 steps a few such weights
# differ by about a step (9.2e-4 at lr 1e-3 in 8 of 288 weights on an AVX2-only CPU), while the rest agree
# within 5e-4. A wrong update would move most weights apart.
@pytest.mark.parametrize(("name", "rate", "tolerance_after_16_steps", "share_at_rounding_level"),
                         [("adadelta", 1.0, 1e-6, 0.0), ("adam", 0.001, 5e-4, 0.05), ("sgd", 0.01, 1e-6, 0.0)])
@pytest.mark.slow
@pytest.mark.graph  # the fused update as the search runs it: in a traced graph, 4 steps per execution
def test_fused_update_matches_keras(name: str, rate: float, tolerance_after_16_steps: float,
                                    share_at_rounding_level: float) -> None:
    assert isinstance(make_optimizer(name, rate), (FusedAdadelta, FusedAdam, FusedSGD))
    start = [np.asarray(w) for w in build_network().weights]
    for steps, tolerance, share in ((1, 1e-6, 0.0), (16, tolerance_after_16_steps, share_at_rounding_level)):
        ours = weights_after_training(make_optimizer(name, rate), steps)
        theirs = weights_after_training(KERAS_TWINS[name](rate), steps)
        assert len(ours) == len(theirs) == len(start)
        assert any(not np.allclose(a, b) for a, b in zip(ours, start, strict=True))  # training moved the weights
        for a, b in zip(ours, theirs, strict=True):
            apart = ~np.isclose(a, b, rtol=1e-4, atol=tolerance)
            assert apart.mean() <= share, (name, steps, apart.mean())
            assert np.abs(a - b).max() <= 2 * rate * steps  # never beyond the steps' own reach


def test_fused_optimizer_survives_a_save_and_load(tmp_path: Path) -> None:
    model = build_network(learning_rate=0.5)
    images = np.zeros((8, 28, 28, 1), np.uint8)
    model.fit(images, keras.utils.to_categorical(np.arange(8) % 10, 10), batch_size=8)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.optimizer, FusedAdadelta)
    assert float(loaded.optimizer.learning_rate.numpy()) == pytest.approx(0.5)
    for ours, saved in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(saved))
