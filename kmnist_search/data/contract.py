"""The exported model's input/output contract: names, layout and where the card travels (no TensorFlow).

Every exported model takes raw pixels, float32 in [0, 255], shape ``(batch, height, width, 1)``, white
ink on black as in KMNIST, under the input name ``image``, and returns softmax probabilities,
``(batch, classes)``, under ``probabilities``. Scaling to [0, 1] happens inside the model. The model
card rides in the ONNX file's metadata under :data:`MODEL_CARD_KEY`.
"""

from __future__ import annotations

import numpy as np

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
MODEL_CARD_KEY = "model_card"
AUGMENTATION_PREFIX = "augment_"  # training-only layers, left out of exports
OPSET = 17
INPUT_VALUE_RANGE = (0, 255)
INPUT_SCALING = "inside the model (Rescaling 1/255): feed raw pixel values"
INPUT_LAYOUT = "NHWC grayscale, white ink on a black background as in KMNIST"


def to_model_input(images: np.ndarray) -> np.ndarray:
    """(N, H, W) raw pixels -> the (N, H, W, 1) layout every model takes (a view, no copy)."""
    return images[..., np.newaxis]
