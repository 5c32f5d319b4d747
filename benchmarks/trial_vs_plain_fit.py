"""Benchmark one training epoch of a kmnist-search trial against plain ``model.fit``, side by side.

Run: python benchmarks/trial_vs_plain_fit.py --data-dir ../shared/data/kmnist [--rounds 2]

"Plain" is how the study trained: float32 images scaled to [0, 1] in memory, one step per call
(Keras's defaults), Keras's own Adadelta. "Trial" is what kmnist-search does in every trial: uint8
images in memory (scaled inside the model), ``steps_per_execution=32`` and the fused Adadelta update
(``kmnist_search.search.optimizers``, same arithmetic). Same network, learning rate, loss and data. Both
models are traced first; then each slice of the epoch (``--segments``) is trained by one and then the
other, in alternating order, so that spells of noise on the shared host hit both alike. The figures
are one full epoch each (the sum of the slices) and the spread of the per-slice ratios. Writes
benchmarks/records/trial_vs_plain_fit.json and the BENCHMARKS.md section rendered from it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from records import BENCHMARKS, ROOT, description, publish, write_record

from kmnist_search.data.datasets import load_dataset, split_train_validation
from kmnist_search.search.hypermodel import STEPS_PER_EXECUTION, build_network, to_model_input

RECORD = ROOT / "benchmarks" / "records" / "trial_vs_plain_fit.json"
DOCUMENT = BENCHMARKS
MARKER = "figures:trial-vs-plain-fit"


def compiled_model(plain: bool, warm_up: tuple[np.ndarray, np.ndarray], batch_size: int) -> keras.Model:
    """The study's CNN set up as plain ``model.fit`` or as a trial, traced once on a few batches."""
    keras.utils.set_random_seed(0)
    model = build_network(learning_rate=1.0, steps_per_execution=1 if plain else STEPS_PER_EXECUTION)
    if plain:
        model.compile(optimizer=keras.optimizers.Adadelta(learning_rate=1.0), loss="categorical_crossentropy",
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    model.fit(*warm_up, batch_size=batch_size, epochs=1, verbose=0)
    return model


def fit_seconds(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one pass over the images."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0)
    return time.perf_counter() - wall, time.process_time() - cpu


def render(record: dict[str, Any]) -> str:
    rows = record["rows"]
    lines = [f"`{record['command']}` ({record['date']}, {record['machine']}): {record['images']:,} images, the "
             f"epoch cut into {record['segments']} slices that the two train in alternating order; CPU seconds "
             "are summed over the process's threads.", "",
             "| round | batch | plain fit | trial | speed-up (wall) | per-slice speed-ups | CPU s plain / trial |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['batch_size']} | {r['plain_wall_s']:.1f} s | {r['trial_wall_s']:.1f} s | "
              f"{r['plain_wall_s'] / r['trial_wall_s']:.2f}x | median {r['slice_speedup_median']:.2f}x "
              f"({r['slice_speedup_min']:.2f}x to {r['slice_speedup_max']:.2f}x) | {r['plain_cpu_s']:.1f} / "
              f"{r['trial_cpu_s']:.1f} ({r['plain_cpu_s'] / r['trial_cpu_s']:.2f}x) |" for r in rows]
    sizes = sorted({r["batch_size"] for r in rows})
    cpu_ratio = {b: statistics.fmean(r["plain_cpu_s"] / r["trial_cpu_s"] for r in rows if r["batch_size"] == b)
                 for b in sizes}
    trial_cpu = {b: statistics.fmean(r["trial_cpu_s"] for r in rows if r["batch_size"] == b) for b in sizes}
    lines += ["", "CPU work, the steady figure on a shared host (mean over rounds): "
              + "; ".join(f"at batch {b} plain `model.fit` needs {cpu_ratio[b]:.2f}x the trial's" for b in sizes)
              + f". The trial's batch-{sizes[0]} epoch costs {trial_cpu[sizes[0]] / trial_cpu[sizes[-1]]:.2f}x its "
              f"batch-{sizes[-1]} epoch ({trial_cpu[sizes[0]]:.0f} against {trial_cpu[sizes[-1]]:.0f} CPU "
              "seconds), the same convolutions in smaller steps."]
    return "\n".join(lines)


def measure(data_dir: Path, batch_sizes: list[int], rounds: int, segments: int) -> dict[str, Any]:
    data = load_dataset("kmnist", data_dir)
    split = split_train_validation(data.train_images, data.train_labels, 6000, seed=42)
    labels = keras.utils.to_categorical(split.train_labels, 10).astype(np.float32)
    trial_images = to_model_input(split.train_images)  # uint8, scaled inside the model
    # The study's way: float32 in [0, 1] in memory. Our model rescales by 1/255 itself, so feed it the
    # same float32 values times 255: identical arithmetic, plain-fit data path.
    plain_images = (split.train_images.astype(np.float32) / 255.0 * 255.0)[..., np.newaxis]
    slices = np.array_split(np.arange(len(labels)), segments)
    rows = []
    for round_number in range(1, rounds + 1):
        for batch_size in batch_sizes:
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
            rows.append({"round": round_number, "batch_size": batch_size, "plain_wall_s": round(plain_total[0], 2),
                         "trial_wall_s": round(trial_total[0], 2), "plain_cpu_s": round(plain_total[1], 2),
                         "trial_cpu_s": round(trial_total[1], 2),
                         "slice_speedup_median": round(statistics.median(ratios), 3),
                         "slice_speedup_min": round(ratios[0], 3), "slice_speedup_max": round(ratios[-1], 3)})
            print(rows[-1], flush=True)
    return {"images": len(labels), "segments": segments, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 128])
    parser.add_argument("--rounds", type=int, default=2, help="repeat the whole comparison this many times")
    parser.add_argument("--segments", type=int, default=6,
                        help="split the epoch into this many slices, timed plain/trial alternately")
    parser.add_argument("--render-only", action="store_true", help="rewrite the BENCHMARKS.md section from the record")
    args = parser.parse_args()
    if not args.render_only:
        command = f"python benchmarks/trial_vs_plain_fit.py --data-dir D --rounds {args.rounds}"
        write_record(RECORD, command, measure(args.data_dir, args.batch_sizes, args.rounds, args.segments))
    publish(RECORD, DOCUMENT, MARKER, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
