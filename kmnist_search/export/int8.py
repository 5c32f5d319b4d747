"""Exported float32 model -> int8 ONNX model, verified against its Keras original.

onnxruntime's static quantizer: int8 per-channel weights, uint8 activations, QDQ format, activation
ranges calibrated on training images of the model's own split (never its validation or test images).
Weights use 7 of their 8 bits (onnxruntime's ``reduce_range``): x86 CPUs without VNNI (AVX2, plain
AVX-512) multiply uint8 by int8 with an instruction that saturates, so with full 8-bit weights an int8
model that passes its parity check on one CPU can fail it on another; 7-bit weights cannot saturate it,
as onnxruntime's quantization guide recommends for such CPUs.
The convolutional body is quantized; each classifier head (the dense layer feeding a softmax), the
softmax and an ensemble's average stay in float32, so the probabilities keep full resolution instead
of steps of 1/255. The result is written only if it meets :data:`kmnist_search.export.parity.INT8` against
the Keras model; the card records that rule and the int8 model's own validation and test accuracy.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from kmnist_search.base.errors import ModelFileError, ParityError
from kmnist_search.data.contract import INPUT_NAME, to_model_input
from kmnist_search.data.datasets import Dataset, Split
from kmnist_search.export.card import quantized_card, read_quantizable_card
from kmnist_search.export.convert import (
    EXPORT_REFERENCE_MISSING,
    export_versions,
    load_keras_model,
    measure_parity,
    onnx_probabilities,
    publish,
)
from kmnist_search.export.parity import INT8, INT8_CALIBRATION_IMAGES

CALIBRATION_BATCH = 100
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "MaxPool", "Relu", "Reshape"]  # not Softmax, Add, Mul: probabilities
METHOD = ("onnxruntime static quantization, QDQ format: int8 per-channel weights (7-bit range), uint8 activations, "
          "min-max calibration; classifier heads, softmax and averaging kept in float32")


class TrainingImageBatches(CalibrationDataReader):
    """Feeds calibration images to onnxruntime's quantizer in batches."""

    def __init__(self, images: np.ndarray) -> None:
        self.batches: Iterator[np.ndarray] = iter(
            [to_model_input(images[i:i + CALIBRATION_BATCH]).astype(np.float32)
             for i in range(0, len(images), CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def model_split(dataset: Dataset, card: dict[str, Any]) -> Split:
    """The training/validation split the carded model was trained and selected on."""
    return dataset.split(card["split"]["validation_images"], card["split"]["seed"])


def calibration_images(split: Split, seed: int, count: int) -> np.ndarray:
    """``count`` images (at most all of them) from the split's training part, drawn with ``seed``."""
    count = min(count, len(split.train_images))
    chosen = np.random.default_rng(seed).choice(len(split.train_images), size=count, replace=False)
    return split.train_images[np.sort(chosen)]


def classifier_heads(model: onnx.ModelProto) -> list[str]:
    """The names of the nodes whose output feeds a softmax: the layers that make the logits."""
    producers = {output: node for node in model.graph.node for output in node.output}
    return [producers[node.input[0]].name for node in model.graph.node
            if node.op_type == "Softmax" and node.input[0] in producers]


def quantize_onnx(source: Path, images: np.ndarray, op_types: list[str] | None = QUANTIZED_OPS,
                  float_heads: bool = True) -> onnx.ModelProto:
    """Static int8 quantization of an ONNX file, calibrated on ``images``; the graph passes the checker.

    The defaults are this module's method; ``op_types=None, float_heads=False`` quantizes every op
    (``benchmarks/quantization_variants.py`` compares the two)."""
    with tempfile.TemporaryDirectory() as temp_dir:
        prepared, quantized = Path(temp_dir) / "prepared.onnx", Path(temp_dir) / "quantized.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)  # ONNX shape inference suffices
        heads = classifier_heads(onnx.load(str(prepared))) if float_heads else None
        quantize_static(str(prepared), str(quantized), TrainingImageBatches(images), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=True,
                        op_types_to_quantize=op_types, nodes_to_exclude=heads)
        proto = onnx.load(str(quantized))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_quantized(card_path: Path, dataset: Dataset, exports_dir: Path, name: str,
                     calibration_count: int = INT8_CALIBRATION_IMAGES) -> dict[str, Any]:
    """Quantize the export described by ``card_path`` to ``exports_dir/NAME.onnx`` with its model card.

    Raises ParityError (and writes nothing) if the int8 model strays from the Keras model.
    """
    source = read_quantizable_card(card_path)
    if source["dataset"]["name"] != dataset.spec.name:
        raise ModelFileError(f"{card_path} classifies {source['dataset']['name']}, not {dataset.spec.name}")
    split = model_split(dataset, source)
    images = calibration_images(split, source["split"]["seed"], calibration_count)
    source_onnx = card_path.with_name(source["onnx_file"])
    proto = quantize_onnx(source_onnx, images)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    keras_model = load_keras_model(card_path.with_name(source["keras_file"]), EXPORT_REFERENCE_MISSING,
                                   "export the model again")
    parity = measure_parity(session, keras_model, dataset.test_images, dataset.test_labels)
    if not parity.passes(INT8):
        raise ParityError(f"the int8 model strays from its float32 original ({parity.describe(INT8)}): "
                          f"nothing was written to {exports_dir}; ship the float32 export instead")
    validation_accuracy = float(np.mean(onnx_probabilities(session, split.validation_images).argmax(axis=1)
                                        == split.validation_labels))
    card = quantized_card(source, card_path, source_onnx.stat().st_size, dataset.spec, validation_accuracy, parity,
                          INT8, name, METHOD, len(images), export_versions())
    return publish(proto, card, keras_model, exports_dir, f"int8 quantization of {card_path.name}")
