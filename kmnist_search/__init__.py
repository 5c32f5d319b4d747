"""kmnist-search: tune the study's KMNIST CNN with Keras Tuner, export the winner to ONNX, verify it.

Modules, one per stage: ``datasets`` -> ``spaces`` -> ``hypermodel`` -> ``search`` -> ``export`` ->
``reports``; ``inference`` runs exported models with onnxruntime alone. The package root imports
nothing heavy, so ``import kmnist_search.inference`` stays free of TensorFlow.
"""

__version__ = "0.1.0"
