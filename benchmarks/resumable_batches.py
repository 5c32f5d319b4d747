"""Benchmark the resumable training input against Keras's own array input, side by side.

Run: python benchmarks/resumable_batches.py --data-dir ../shared/data/kmnist [--images 8000] [--rounds 2]

Trials and retraining feed the model through ``kmnist_search.search.resume.epoch_batches``: a ``tf.data``
pipeline that gathers each batch by an order drawn from (seed, epoch), so that a resumed run sees the
same batches as an uninterrupted one. This compares one epoch of the study's CNN (as a trial trains
it: uint8 input, ``steps_per_execution=32``) with that input against ``model.fit`` on the arrays with
Keras's own shuffling, in alternating order, and reports wall and CPU seconds (all threads).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from records import description

from kmnist_search.data.contract import to_model_input
from kmnist_search.data.datasets import load_dataset
from kmnist_search.search.hypermodel import build_network
from kmnist_search.search.resume import epoch_batches


def one_epoch(kind: str, images: np.ndarray, targets: np.ndarray, batch_size: int) -> tuple[float, float]:
    """Wall and CPU seconds of one epoch, after a traced first epoch."""
    keras.utils.set_random_seed(0)
    model = build_network()
    if kind == "arrays":
        model.fit(images[:batch_size * 64], targets[:batch_size * 64], batch_size=batch_size, verbose=0)
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(images, targets, batch_size=batch_size, epochs=1, verbose=0)
    else:
        batches, order = epoch_batches(images, targets, batch_size, seed=1)
        model.fit(batches, epochs=1, callbacks=[order], shuffle=False, verbose=0)
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(batches, epochs=2, initial_epoch=1, callbacks=[order], shuffle=False, verbose=0)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--images", type=int, default=8000, help="training images per epoch")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 128])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data = load_dataset("kmnist", args.data_dir)
    images = to_model_input(data.train_images[:args.images])
    targets = keras.utils.to_categorical(data.train_labels[:args.images], 10).astype(np.float32)
    print(f"{platform.node()}, {os.cpu_count()} CPUs, {args.images} images, {time.strftime('%Y-%m-%d %H:%M')}")
    print("round  batch  input          wall s   CPU s")
    totals: dict[tuple[int, str], float] = {}
    for round_number in range(1, args.rounds + 1):
        for batch_size in args.batch_sizes:
            kinds = ("arrays", "epoch_batches") if round_number % 2 else ("epoch_batches", "arrays")
            for kind in kinds:
                wall, cpu = one_epoch(kind, images, targets, batch_size)
                totals[batch_size, kind] = totals.get((batch_size, kind), 0.0) + cpu
                print(f"{round_number:>5}  {batch_size:>5}  {kind:<13} {wall:>7.1f} {cpu:>7.1f}")
    for batch_size in args.batch_sizes:
        ratio = totals[batch_size, "epoch_batches"] / totals[batch_size, "arrays"]
        print(f"batch {batch_size}: resumable input costs {ratio:.2f}x the CPU time of Keras's array input")


if __name__ == "__main__":
    main()
