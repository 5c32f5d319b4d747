"""Benchmark onnxruntime against Keras on an exported model, side by side in one run.

Run: python benchmarks/onnx_vs_keras.py exports/kmnist-reference.onnx --data-dir ../shared/data/kmnist

Measures throughput at batch 1,000 (images per second over the full 10,000-image test set) and
single-image latency (median and 95th percentile over many calls), interleaving the two runtimes
round by round so machine noise hits both alike. Keras is called as ``model(x, training=False)``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import onnxruntime as ort
from records import description

from kmnist_search.data.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("model", type=Path, help="exported .onnx with its .keras beside it")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--rounds", type=int, default=5, help="full test-set passes per runtime")
    parser.add_argument("--single", type=int, default=300, help="single-image calls per runtime")
    args = parser.parse_args()

    dataset = load_dataset("kmnist", args.data_dir)
    images = dataset.test_images[..., np.newaxis].astype(np.float32)
    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    model = keras.models.load_model(args.model.with_suffix(".keras"), compile=False)

    def run_onnx(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: batch})[0]

    def run_keras(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model(batch, training=False))

    runtimes = {"onnxruntime": run_onnx, "keras": run_keras}
    for run in runtimes.values():  # warm up: graph tracing, thread pools
        run(images[:1000])
        run(images[:1])

    throughput: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(args.rounds):
        for name, run in runtimes.items():
            started = time.perf_counter()
            for start in range(0, len(images), 1000):
                run(images[start:start + 1000])
            throughput[name].append(len(images) / (time.perf_counter() - started))

    latency: dict[str, list[float]] = {name: [] for name in runtimes}
    for index in range(args.single):
        single = images[index:index + 1]
        for name, run in runtimes.items():
            started = time.perf_counter()
            run(single)
            latency[name].append((time.perf_counter() - started) * 1000)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"onnxruntime {ort.__version__}, keras {keras.__version__}")
    print(f"model: {args.model}")
    print(f"{'runtime':<12} {'images/s @1000 (median)':>24} {'latency ms p50':>15} {'latency ms p95':>15}")
    for name in runtimes:
        p95 = statistics.quantiles(latency[name], n=20)[-1]
        print(f"{name:<12} {statistics.median(throughput[name]):>24,.0f} {statistics.median(latency[name]):>15.3f} "
              f"{p95:>15.3f}")
    ratio_throughput = statistics.median(throughput["onnxruntime"]) / statistics.median(throughput["keras"])
    ratio_latency = statistics.median(latency["keras"]) / statistics.median(latency["onnxruntime"])
    print(f"onnxruntime vs keras: {ratio_throughput:.2f}x the throughput at batch 1000, "
          f"{ratio_latency:.2f}x faster single-image latency (median)")


if __name__ == "__main__":
    main()
