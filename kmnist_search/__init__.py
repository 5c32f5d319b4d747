"""kmnist-search: tune the study's KMNIST CNN with Keras Tuner, export the winner to ONNX, verify it.

The Python API is :mod:`kmnist_search.pipeline`::

    from kmnist_search import pipeline

    outcome = pipeline.run("quick", strategy="grid")

Importing the package loads no TensorFlow; the pipeline loads it when it trains or exports, and
:mod:`kmnist_search.inference` never does.
"""

__version__ = "0.1.0"
