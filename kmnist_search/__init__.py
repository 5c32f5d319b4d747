"""kmnist-search: tune the study's KMNIST CNN with Keras Tuner, export the winner to ONNX, verify it.

The Python API is :mod:`kmnist_search.pipeline`::

    from kmnist_search import pipeline

    outcome = pipeline.run("quick", strategy="grid")

The package reads as the pipeline, each stage standing only on those below it (``lint-imports`` holds it):

- ``commands/``: the command line (``kmnist-search VERB``); it calls :mod:`kmnist_search.pipeline` only;
- ``search/``: the HyperModel, Keras Tuner's strategies and the pruners, resume, the journal, the replay;
- ``export/`` and ``report/``: the winner as a verified ONNX model with its card; a run's summary and page;
- ``data/``: the datasets, the search spaces and the run record;
- ``base/``: errors, atomic files, user-given names, formatting.

The top-level ``run``, ``export``, ``verify``... modules are the ``python -m kmnist_search.VERB`` entry points.
Importing the package loads no TensorFlow; the pipeline loads it when it trains or exports, and
:mod:`kmnist_search.export.inference` never does.
"""

__version__ = "0.1.0"
