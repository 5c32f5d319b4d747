"""Each completed trial measured as it will ship.

A trial's best-epoch weights are exported to ONNX as the winner's would be (:mod:`kmnist_search.export.convert`),
checked against Keras on the validation images, weighed in bytes and timed with onnxruntime by the
latency protocol (:mod:`kmnist_search.export.latency`); with ``quantize``, its int8 copy too
(:mod:`kmnist_search.export.int8`, calibrated on training images). The search calls the measurer when a
trial ends, so a kill loses at most the measurement in progress and a rerun measures what is missing.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from kmnist_search.data.record import Deployment, Speed
from kmnist_search.export import latency
from kmnist_search.export.convert import convert_to_onnx, measure_parity, session_from_proto, without_augmentation
from kmnist_search.export.int8 import quantize_onnx
from kmnist_search.export.parity import EXACT, INT8

LATENCY_IMAGES = 100
CALIBRATION_IMAGES = 500


@dataclass(frozen=True)
class TrialMeasurer:
    """Measures trained models as they would ship, on the split's validation images."""

    validation_images: np.ndarray
    validation_labels: np.ndarray
    image_shape: tuple[int, int]
    calibration_images: np.ndarray | None = None  # training images: also measure an int8 copy

    def measure(self, trained: keras.Model) -> Deployment:
        started = time.process_time()
        model = without_augmentation(trained)
        proto = convert_to_onnx(model, self.image_shape)
        data = proto.SerializeToString()
        parity = measure_parity(session_from_proto(proto), trained, self.validation_images, self.validation_labels)
        int8 = None
        if self.calibration_images is not None:
            with tempfile.TemporaryDirectory() as folder:
                source = Path(folder) / "model.onnx"
                source.write_bytes(data)
                quantized = quantize_onnx(source, self.calibration_images)
            int8_parity = measure_parity(session_from_proto(quantized), trained, self.validation_images,
                                         self.validation_labels)
            int8_data = quantized.SerializeToString()
            int8 = Deployment(onnx_bytes=len(int8_data), parity_label_agreement=int8_parity.label_agreement,
                              parity_passed=int8_parity.passes(INT8), speed=self._speed(int8_data),
                              measure_seconds=0.0)
        return Deployment(onnx_bytes=len(data), parity_label_agreement=parity.label_agreement,
                          parity_passed=parity.passes(EXACT), speed=self._speed(data), int8=int8,
                          measure_seconds=round(time.process_time() - started, 2))

    def _speed(self, data: bytes) -> Speed:
        return Speed.model_validate(latency.measure(data, self.validation_images[:LATENCY_IMAGES]).to_dict())
