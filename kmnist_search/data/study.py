"""The published study this project started from (``SEED_SUMMARY.md``): the classic Keras MNIST CNN on
KMNIST, Adadelta, 12 epochs, one factor varied at a time. Its figures are quoted from the study; its
"validation" data was the KMNIST test set, so they compare with a run's test accuracy, not with its
validation accuracy."""

from __future__ import annotations

from dataclasses import dataclass

CROSS_ENTROPY, SQUARED_ERROR = "categorical_crossentropy", "mean_squared_error"
EPOCHS = 12  # every setting of the study trained this many epochs


@dataclass(frozen=True)
class StudySetting:
    """One configuration the study trained and the accuracies it reported (percent)."""

    learning_rate: float
    batch_size: int
    loss: str
    train_accuracy: float
    test_accuracy: float  # the study called it validation accuracy; it was measured on the test set


# The study's one-factor settings: what was varied -> the settings, in the study's order.
SETTINGS: dict[str, tuple[StudySetting, ...]] = {
    "learning rate, batch 128": (StudySetting(0.1, 128, CROSS_ENTROPY, 95.24, 91.67),
                                 StudySetting(0.01, 128, CROSS_ENTROPY, 83.22, 76.46),
                                 StudySetting(0.001, 128, CROSS_ENTROPY, 61.77, 55.27),
                                 StudySetting(0.0001, 128, CROSS_ENTROPY, 18.07, 21.67)),
    "batch size (lr 0.001)": (StudySetting(0.001, 8, CROSS_ENTROPY, 75.81, 67.21),
                              StudySetting(0.001, 16, CROSS_ENTROPY, 75.35, 67.41),
                              StudySetting(0.001, 32, CROSS_ENTROPY, 71.39, 62.58),
                              StudySetting(0.001, 64, CROSS_ENTROPY, 66.67, 58.13),
                              StudySetting(0.001, 128, CROSS_ENTROPY, 63.08, 55.61)),
    "loss (lr 0.001, batch 128)": (StudySetting(0.001, 128, CROSS_ENTROPY, 60.93, 54.18),
                                   StudySetting(0.001, 128, SQUARED_ERROR, 12.94, 14.41)),
}

BEST = max((setting for group in SETTINGS.values() for setting in group), key=lambda s: s.test_accuracy)
