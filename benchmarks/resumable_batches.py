"""Benchmark the resumable training input against Keras's own array input, side by side.

Run: python benchmarks/resumable_batches.py --data-dir ../shared/data/kmnist [--images 8000] [--rounds 2]

Trials and retraining feed the model through ``kmnist_search.search.resume.epoch_batches``: a ``tf.data``
pipeline that gathers each batch by an order drawn from (seed, epoch), so that a resumed run sees the
same batches as an uninterrupted one. This compares one epoch of the study's CNN (as a trial trains
it: uint8 input, ``steps_per_execution=32``) with that input against ``model.fit`` on the arrays with
Keras's own shuffling, in alternating order, and reports CPU seconds (all threads). Writes
benchmarks/records/resumable_batches.json and the BENCHMARKS.md section rendered from it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
from records import BENCHMARKS, ROOT, description, publish, write_record

from kmnist_search.data.contract import to_model_input
from kmnist_search.data.datasets import load_dataset
from kmnist_search.search.hypermodel import build_network
from kmnist_search.search.resume import epoch_batches

RECORD = ROOT / "benchmarks" / "records" / "resumable_batches.json"
DOCUMENT = BENCHMARKS
MARKER = "figures:resumable-batches"


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


def render(record: dict[str, Any]) -> str:
    rows = record["rows"]
    rounds = sorted({r["round"] for r in rows})
    lines = [f"`{record['command']}` ({record['date']}, {record['machine']}): one epoch of {record['images']:,} "
             "images each, the two inputs in alternating order; CPU seconds of the process (all threads).", "",
             "| batch | input | " + " | ".join(f"CPU s, round {n}" for n in rounds) + " | CPU ratio |",
             "|---|---|" + "---|" * len(rounds) + "---|"]
    for batch_size in sorted({r["batch_size"] for r in rows}):
        cpu = {(r["input"], r["round"]): r["cpu_s"] for r in rows if r["batch_size"] == batch_size}
        arrays = sum(cpu["arrays", n] for n in rounds)
        for kind, label in (("arrays", "arrays"), ("epoch_batches", "resumable")):
            total = sum(cpu[kind, n] for n in rounds)
            lines.append(f"| {batch_size} | {label} | " + " | ".join(f"{cpu[kind, n]:.1f}" for n in rounds)
                         + f" | {total / arrays:.2f}x |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--images", type=int, default=8000, help="training images per epoch")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 128])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--render-only", action="store_true", help="rewrite the BENCHMARKS.md section from the record")
    args = parser.parse_args()
    if not args.render_only:
        data = load_dataset("kmnist", args.data_dir)
        images = to_model_input(data.train_images[:args.images])
        targets = keras.utils.to_categorical(data.train_labels[:args.images], 10).astype(np.float32)
        rows = []
        for round_number in range(1, args.rounds + 1):
            for batch_size in args.batch_sizes:
                kinds = ("arrays", "epoch_batches") if round_number % 2 else ("epoch_batches", "arrays")
                for kind in kinds:
                    wall, cpu = one_epoch(kind, images, targets, batch_size)
                    rows.append({"round": round_number, "batch_size": batch_size, "input": kind,
                                 "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)})
                    print(rows[-1], flush=True)
        command = f"python benchmarks/resumable_batches.py --data-dir D --images {args.images} --rounds {args.rounds}"
        write_record(RECORD, command, {"images": args.images, "rows": rows})
    publish(RECORD, DOCUMENT, MARKER, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
