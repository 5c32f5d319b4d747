"""Benchmark an ensemble's ONNX graph against one of its members, side by side in one run.

Run: python benchmarks/ensemble_latency.py exports/ENSEMBLE.onnx exports/MEMBER.onnx --data-dir ../shared/data/kmnist

Measures single-image latency (median and 95th percentile) and throughput at batch 1,000 with
onnxruntime for the member and for the ensemble, each with the default sequential executor and with
``ExecutionMode.ORT_PARALLEL`` (independent branches, such as ensemble members, run concurrently).
All four sessions are called in turn, image by image, so machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from kmnist_search.datasets import load_dataset


def make_session(path: Path, parallel: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if parallel:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ensemble", type=Path)
    parser.add_argument("member", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--single", type=int, default=500, help="single-image calls per session")
    parser.add_argument("--rounds", type=int, default=3, help="full test-set passes per session at batch 1,000")
    args = parser.parse_args()

    images = load_dataset("kmnist", args.data_dir).test_images[..., np.newaxis].astype(np.float32)
    sessions = {f"{label} {'parallel' if parallel else 'sequential'}": make_session(path, parallel)
                for label, path in (("member", args.member), ("ensemble", args.ensemble))
                for parallel in (False, True)}
    for session in sessions.values():  # warm up thread pools and memory arenas
        session.run(None, {"image": images[:1000]})
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
    print("| session | single image p50 | p95 | batch 1,000: ms per image (median) |")
    print("|---|---|---|---|")
    for name in sessions:
        ordered = sorted(latencies[name])
        p50, p95 = statistics.median(ordered), ordered[int(0.95 * len(ordered))]
        batch = statistics.median(per_image[name])
        print(f"| {name} | {p50 * 1e3:.3f} ms | {p95 * 1e3:.3f} ms | {batch * 1e3:.3f} ms |")


if __name__ == "__main__":
    main()
