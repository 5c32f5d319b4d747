"""Benchmark one training epoch of a kmnist-search trial against plain ``model.fit``, side by side.

Run: python benchmarks/trial_vs_plain_fit.py --data-dir ../shared/data/kmnist [--batch-sizes 8 128]

"Plain" is how the study trained: float32 images scaled to [0, 1] in memory, one step per call
(Keras's defaults), Keras's own Adadelta. "Trial" is what kmnist-search does in every trial: uint8
images in memory (scaled inside the model), ``steps_per_execution=32`` and the fused Adadelta update
(``kmnist_search.optimizers``, same arithmetic). Same network, learning rate, loss and data; the two
runs alternate, ``--rounds`` times, so machine noise hits both alike.
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

from kmnist_search.datasets import load_dataset, split_train_validation
from kmnist_search.hypermodel import STEPS_PER_EXECUTION, build_cnn, to_model_input


def epoch_seconds(batch_size: int, images: np.ndarray, labels: np.ndarray, plain: bool) -> float:
    keras.utils.set_random_seed(0)
    model = build_cnn(learning_rate=1.0, steps_per_execution=1 if plain else STEPS_PER_EXECUTION)
    if plain:
        model.compile(optimizer=keras.optimizers.Adadelta(learning_rate=1.0), loss="categorical_crossentropy",
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    started = time.perf_counter()
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 8])
    parser.add_argument("--rounds", type=int, default=1, help="alternate plain and trial this many times")
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
    print(f"{'round':>5} {'batch':>5} {'plain fit (s)':>14} {'trial (s)':>10} {'speed-up':>9}")
    for round_number in range(1, args.rounds + 1):
        for batch_size in args.batch_sizes:
            plain = epoch_seconds(batch_size, plain_images, labels, plain=True)
            trial = epoch_seconds(batch_size, trial_images, labels, plain=False)
            print(f"{round_number:>5} {batch_size:>5} {plain:>14.1f} {trial:>10.1f} {plain / trial:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
