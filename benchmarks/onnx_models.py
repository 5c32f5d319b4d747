"""Compare exported ONNX models side by side in one run: file size, test accuracy, latency.

Run: python benchmarks/onnx_models.py exports/A.onnx exports/B.onnx ... --data-dir ../shared/data/kmnist

Typical use: a float32 export against its int8 quantization (``python -m kmnist_search.quantize``),
or a single model against an ensemble. Every model gets onnxruntime's default CPU session (the
sequential executor); ``--parallel-executor`` adds a session per model with
``ExecutionMode.ORT_PARALLEL``, which runs independent branches such as ensemble members
concurrently. The single-image calls go round the sessions in turn, image by image, and the
batch-1,000 passes alternate too, so machine noise hits every session alike. Ratios are against the
first session.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from records import description

from kmnist_search.data.datasets import load_dataset


def make_session(path: Path, parallel: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if parallel:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--single", type=int, default=500, help="single-image calls per model")
    parser.add_argument("--rounds", type=int, default=3, help="full test-set passes per model at batch 1,000")
    parser.add_argument("--parallel-executor", action="store_true",
                        help="also time each model with onnxruntime's parallel executor")
    args = parser.parse_args()

    data = load_dataset("kmnist", args.data_dir)
    images = data.test_images[..., np.newaxis].astype(np.float32)
    executors = (False, True) if args.parallel_executor else (False,)
    names = [path.name for path in args.models]
    labelled = {f"{path.name if names.count(path.name) == 1 else path}{' (parallel executor)' if parallel else ''}":
                (path, parallel) for path in args.models for parallel in executors}
    sessions = {label: make_session(path, parallel) for label, (path, parallel) in labelled.items()}
    sizes = {label: path.stat().st_size for label, (path, _) in labelled.items()}
    accuracy = {}
    for name, session in sessions.items():  # also warms up thread pools and memory arenas
        predicted = np.concatenate([session.run(None, {"image": images[i:i + 1000]})[0].argmax(axis=1)
                                    for i in range(0, len(images), 1000)])
        accuracy[name] = float(np.mean(predicted == data.test_labels))
        session.run(None, {"image": images[:1]})

    latencies: dict[str, list[float]] = {name: [] for name in sessions}
    for index in range(args.single):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.run(None, {"image": images[index:index + 1]})
            latencies[name].append(time.perf_counter() - started)
    per_image: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.rounds):
        for name, session in sessions.items():
            started = time.perf_counter()
            for start in range(0, len(images), 1000):
                session.run(None, {"image": images[start:start + 1000]})
            per_image[name].append((time.perf_counter() - started) / len(images))

    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, onnxruntime "
          f"{ort.__version__}; {args.single} single-image calls and {args.rounds} passes at batch 1,000 each")
    print("| model | bytes | test accuracy | single image p50 | p95 | batch 1,000: ms per image | p50 speed vs first |")
    print("|---|---|---|---|---|---|---|")
    first = statistics.median(next(iter(latencies.values())))
    for name in sessions:
        ordered = sorted(latencies[name])
        p50, p95 = statistics.median(ordered), ordered[int(0.95 * len(ordered))]
        print(f"| {name} | {sizes[name]:,} | {accuracy[name] * 100:.2f}% | {p50 * 1e3:.3f} ms | {p95 * 1e3:.3f} ms "
              f"| {statistics.median(per_image[name]) * 1e3:.3f} ms | {first / p50:.2f}x |")


if __name__ == "__main__":
    main()
