"""Benchmark one training epoch of a kmnist-search trial against plain ``model.fit``, side by side.

Run: python benchmarks/trial_vs_plain_fit.py --data-dir ../shared/data/kmnist [--batch-sizes 8 128]

"Plain" is how the study trained: float32 images scaled to [0, 1] in memory, one step per call
(Keras's defaults), Keras's own Adadelta. "Trial" is what kmnist-search does in every trial: uint8
images in memory (scaled inside the model), ``steps_per_execution=32`` and the fused Adadelta update
(``kmnist_search.search.optimizers``, same arithmetic). Same network, learning rate, loss and data. Both
models are traced first; then each slice of the epoch (``--segments``) is trained by one and then the
other, in alternating order, so that spells of noise on the shared host hit both alike. The figures
are one full epoch each (the sum of the slices) and the spread of the per-slice ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from records import description

from kmnist_search.data.datasets import load_dataset, split_train_validation
from kmnist_search.search.hypermodel import STEPS_PER_EXECUTION, build_network, to_model_input


def compiled_model(plain: bool, warm_up: tuple[np.ndarray, np.ndarray], batch_size: int) -> keras.Model:
    """The study's CNN set up as plain ``model.fit`` or as a trial, traced once on a few batches."""
    keras.utils.set_random_seed(0)
    model = build_network(learning_rate=1.0, steps_per_execution=1 if plain else STEPS_PER_EXECUTION)
    if plain:
        model.compile(optimizer=keras.optimizers.Adadelta(learning_rate=1.0), loss="categorical_crossentropy",
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    model.fit(*warm_up, batch_size=batch_size, epochs=1)
    return model


def fit_seconds(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one pass over the images."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(images, labels, batch_size=batch_size, epochs=1)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 8])
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole comparison this many times")
    parser.add_argument("--segments", type=int, default=6,
                        help="split the epoch into this many slices, timed plain/trial alternately")
    args = parser.parse_args()
    data = load_dataset("kmnist", args.data_dir)
    split = split_train_validation(data.train_images, data.train_labels, 6000, seed=42)
    labels = keras.utils.to_categorical(split.train_labels, 10).astype(np.float32)
    trial_images = to_model_input(split.train_images)  # uint8, scaled inside the model
    # The study's way: float32 in [0, 1] in memory. Our model rescales by 1/255 itself, so feed it the
    # same float32 values times 255: identical arithmetic, plain-fit data path.
    plain_images = (split.train_images.astype(np.float32) / 255.0 * 255.0)[..., np.newaxis]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; keras {keras.__version__}; "
          f"{len(labels)} training images per epoch")
    print(f"{'round':>5} {'batch':>5} {'plain fit (s)':>14} {'trial (s)':>10} {'speed-up':>9}  slice speed-ups; "
          "CPU seconds plain/trial (ratio)")
    slices = np.array_split(np.arange(len(labels)), args.segments)
    for round_number in range(1, args.rounds + 1):
        for batch_size in args.batch_sizes:
            warm_up = slice(0, 64 * batch_size)
            plain_model = compiled_model(True, (plain_images[warm_up], labels[warm_up]), batch_size)
            trial_model = compiled_model(False, (trial_images[warm_up], labels[warm_up]), batch_size)
            plain_times, trial_times = [], []
            for number, part in enumerate(slices):
                # Alternate which goes first, so a noisy spell on the shared host hits both alike.
                for plain in (True, False) if number % 2 == 0 else (False, True):
                    if plain:
                        plain_times.append(fit_seconds(plain_model, plain_images[part], labels[part], batch_size))
                    else:
                        trial_times.append(fit_seconds(trial_model, trial_images[part], labels[part], batch_size))
            plain_total, trial_total = np.sum(plain_times, axis=0), np.sum(trial_times, axis=0)
            ratios = sorted(p[0] / t[0] for p, t in zip(plain_times, trial_times, strict=True))
            print(f"{round_number:>5} {batch_size:>5} {plain_total[0]:>14.1f} {trial_total[0]:>10.1f} "
                  f"{plain_total[0] / trial_total[0]:>8.2f}x  median {ratios[len(ratios) // 2]:.2f}x, "
                  f"range {ratios[0]:.2f}x to {ratios[-1]:.2f}x; CPU {plain_total[1]:.1f}/{trial_total[1]:.1f} s "
                  f"({plain_total[1] / trial_total[1]:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
