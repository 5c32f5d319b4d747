"""The winner as it ships: Keras to ONNX, int8, ensembles, distillation, verification, the model card, and
prediction and latency with onnxruntime alone.

``python -m kmnist_search.export`` runs the export command (``__main__``). Importing this package loads no
TensorFlow: :mod:`kmnist_search.export.inference` must stay usable without it.
"""
