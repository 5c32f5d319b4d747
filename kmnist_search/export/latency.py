"""How fast an ONNX model runs on this machine, measured so that it holds on a noisy shared one.

The protocol (:data:`PROTOCOL`): onnxruntime on the CPU with one intra-op and one inter-op thread,
sequential execution; a warm-up; then rounds that time the model and a fixed reference model one after
the other in the same process, so that a slow moment slows both; the medians over all rounds. The
reference is a small convolutional network built here with fixed weights (:func:`reference_model`), the
same on every machine. The ratio of the model's median to the reference's is recorded beside the
milliseconds: milliseconds move with the host's load, the ratio much less.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

IMAGE_SHAPE = (28, 28, 1)


@dataclass(frozen=True)
class Protocol:
    """What a measurement does: threads, warm-up calls, rounds, calls per round and the batch sizes."""

    threads: int = 1
    warmup_calls: int = 10
    rounds: int = 15
    calls_per_round: int = 10
    throughput_batch: int = 256

    def describe(self) -> str:
        return (f"onnxruntime CPU, {self.threads} intra-op thread(s); {self.warmup_calls} warm-up calls; "
                f"{self.rounds} rounds of {self.calls_per_round} single-image calls and one batch of "
                f"{self.throughput_batch}, alternating with the fixed reference model; medians over all calls")


PROTOCOL = Protocol()


@dataclass(frozen=True)
class Latency:
    """One model's measured speed, with the reference model's beside it."""

    single_image_ms: float  # median milliseconds for one image
    single_image_p90_ms: float
    images_per_second: float  # median throughput at the protocol's batch size
    reference_single_image_ms: float
    reference_images_per_second: float
    protocol: str
    machine: str

    @property
    def ratio_to_reference(self) -> float:
        """The model's single-image median over the reference's: comparable across machines and moments."""
        return self.single_image_ms / self.reference_single_image_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio_to_reference": round(self.ratio_to_reference, 4)}


def machine() -> str:
    """Where a measurement was taken: the CPU (its speed, and its int8 results, depend on it), cores, runtime."""
    import os

    return f"{platform.machine()} {cpu()}, {os.cpu_count()} cores, onnxruntime {ort.__version__}"


def cpu() -> str:
    """The CPU's model name, and whether it has VNNI: onnxruntime's int8 kernels use those instructions when
    present, and without them compute differently (and slower)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    return f"{model} ({'with' if 'vnni' in text else 'without'} VNNI)"


def reference_model() -> bytes:
    """The fixed reference: the study's CNN layout (conv 3x3x32, conv 3x3x64, 2x2 max-pool, dense 128, dense
    10, softmax) on (batch, 28, 28, 1) float32 input, with weights from a fixed seed."""
    generator = np.random.default_rng(0)

    def weights(name: str, *shape: int) -> onnx.TensorProto:
        return onnx.numpy_helper.from_array(generator.normal(0, 0.05, shape).astype(np.float32), name)

    initializers = [weights("conv1", 32, 1, 3, 3), weights("conv2", 64, 32, 3, 3), weights("dense1", 64 * 12 * 12, 128),
                    weights("dense2", 128, 10)]
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "conv1"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "conv2"], ["c2"]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense1"], ["d1"]),
        helper.make_node("Relu", ["d1"], ["r3"]),
        helper.make_node("MatMul", ["r3", "dense2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "latency-reference",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *IMAGE_SHAPE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def session(model: bytes | str, protocol: Protocol = PROTOCOL) -> ort.InferenceSession:
    """An onnxruntime session set up as the protocol says."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = protocol.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _runner(model_session: ort.InferenceSession, batch: np.ndarray) -> Callable[[], object]:
    name = model_session.get_inputs()[0].name
    return lambda: model_session.run(None, {name: batch})


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(model: bytes | str, images: np.ndarray, protocol: Protocol = PROTOCOL) -> Latency:
    """Measure ``model`` (ONNX bytes or a path) on raw-pixel ``images`` (N, 28, 28): single-image latency and
    batch throughput, interleaved with the reference model."""
    pixels = np.asarray(images, dtype=np.float32).reshape(-1, *IMAGE_SHAPE)
    batch = np.resize(pixels, (protocol.throughput_batch, *IMAGE_SHAPE)).astype(np.float32)
    sessions = {"model": session(model, protocol), "reference": session(reference_model(), protocol)}
    single = {name: [_runner(s, pixels[i % len(pixels):i % len(pixels) + 1]) for i in range(protocol.calls_per_round)]
              for name, s in sessions.items()}
    whole = {name: _runner(s, batch) for name, s in sessions.items()}
    for name in sessions:
        for call in (single[name] * protocol.warmup_calls)[:protocol.warmup_calls]:
            call()
        whole[name]()
    milliseconds: dict[str, list[float]] = {name: [] for name in sessions}
    throughput: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(protocol.rounds):
        for name in sessions:  # the model, then the reference, in every round
            milliseconds[name] += [_timed(call) * 1000 for call in single[name]]
            throughput[name].append(len(batch) / _timed(whole[name]))
    return Latency(
        single_image_ms=round(statistics.median(milliseconds["model"]), 4),
        single_image_p90_ms=round(statistics.quantiles(milliseconds["model"], n=10)[-1], 4),
        images_per_second=round(statistics.median(throughput["model"]), 1),
        reference_single_image_ms=round(statistics.median(milliseconds["reference"]), 4),
        reference_images_per_second=round(statistics.median(throughput["reference"]), 1),
        protocol=protocol.describe(), machine=machine())
