"""Keras model -> checked ONNX graph, verified against Keras with onnxruntime, published with its card.

The conversion goes through Keras's own ONNX exporter (``model.export(format="onnx")``, which drives
``tf2onnx.convert.from_function``; ``tf2onnx.convert.from_keras`` fails on Keras 3 models). The graph
gets the contract's input and output names, a dynamic batch dimension, a pinned opset, and passes
``onnx.checker`` (full check). :func:`publish` is the one way any model (a run's winner, an ensemble,
an int8 copy) reaches ``exports/``: the Keras reference first, then the ONNX file with its card
embedded, then the card with the file's sha256 (last, so a card on disk means a complete export).
"""

from __future__ import annotations

import platform
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import onnxruntime as ort

from kmnist_search.base.errors import ModelFileError, ParityError
from kmnist_search.base.files import file_digest, remove_leftovers_of, staged_set
from kmnist_search.data.contract import (
    AUGMENTATION_PREFIX,
    INPUT_NAME,
    MODEL_CARD_KEY,
    OPSET,
    OUTPUT_NAME,
    to_model_input,
)
from kmnist_search.data.datasets import Dataset
from kmnist_search.data.record import ExportRecord
from kmnist_search.data.rundir import RunDir
from kmnist_search.export.card import (
    card_path_for,
    embedded_text,
    finish_publication,
    publication_marker,
    single_model_card,
    write_card,
)
from kmnist_search.export.parity import EXACT, ParityReport, compare_probabilities


def convert_to_onnx(model: keras.Model, image_shape: tuple[int, int]) -> onnx.ModelProto:
    """Export a Keras model to a checked ONNX graph: input ``image`` (batch, H, W, 1) float32,
    output ``probabilities`` (batch, classes)."""
    import tensorflow as tf

    signature = [tf.TensorSpec((None, *image_shape, 1), tf.float32, name=INPUT_NAME)]
    try:
        with tempfile.TemporaryDirectory() as temp_dir, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's own deprecation notices are not the user's concern
            path = Path(temp_dir) / "model.onnx"
            model.export(str(path), format="onnx", input_signature=signature, opset_version=OPSET, verbose=False)
            proto = onnx.load(str(path))
        _name_graph_io(proto)
        _number_inserted_names(proto)
        onnx.checker.check_model(proto, full_check=True)
    except Exception as error:  # tf2onnx and the checker raise many types
        gist = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"ONNX conversion failed ({gist[:200]}): nothing was exported; rerun with --debug "
                             f"and report it") from None
    return proto


def without_augmentation(model: keras.Model) -> keras.Model:
    """The same network, sharing its weights, without the training-only augmentation layers.

    Keras's random augmentation layers are identity at inference, but their random ops would still
    be traced into the ONNX graph. The functional graph is rebuilt from its config with every
    augmentation layer's consumers fed from that layer's own input (residual branches included),
    and each remaining layer takes the trained layer's weights.
    """
    if not any(layer.name.startswith(AUGMENTATION_PREFIX) for layer in model.layers):
        return model  # also any model of your own (a Sequential's config lists its layers another way)
    config = model.get_config()
    skipped = {layer["name"]: _first_input(layer) for layer in config["layers"]
               if layer["name"].startswith(AUGMENTATION_PREFIX)}

    def source(history: list[Any]) -> list[Any]:
        while history[0] in skipped:
            history = skipped[history[0]]
        return history

    def rewire(node: Any) -> Any:
        if isinstance(node, dict):
            if "keras_history" in node:
                node = {**node, "keras_history": source(node["keras_history"])}
            return {key: rewire(value) for key, value in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(rewire(value) for value in node)
        return node

    config["layers"] = [{**layer, "inbound_nodes": rewire(layer["inbound_nodes"])}
                        for layer in config["layers"] if layer["name"] not in skipped]
    inference = keras.Model.from_config(config)
    for layer in inference.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return inference


def _first_input(layer_config: dict[str, Any]) -> list[Any]:
    """The ``keras_history`` of a single-input layer's input in a functional config."""
    history: list[Any] = layer_config["inbound_nodes"][0]["args"][0]["config"]["keras_history"]
    return history


def _name_graph_io(proto: onnx.ModelProto) -> None:
    """Call the output ``probabilities`` and the batch dimension ``batch`` on both ends."""
    graph = proto.graph
    old_output = graph.output[0].name
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if name == old_output else name for name in node.output]
    graph.output[0].name = OUTPUT_NAME
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"


INSERTED_NAME = re.compile(r"__\d+")  # tf2onnx numbers the ops it inserts from a counter kept per process


def _number_inserted_names(proto: onnx.ModelProto) -> None:
    """Name the values and ops tf2onnx inserted (``NAME__COUNTER``) by where they are first used, list the
    initializers by name, and drop the graph's note naming the traced TensorFlow function: the counters
    behind those run on across conversions in one process, and the same network must always convert to
    the same bytes."""
    graph = proto.graph
    graph.doc_string = ""
    names: dict[str, str] = {}

    def renamed(name: str) -> str:
        if not INSERTED_NAME.search(name):
            return name
        return names.setdefault(name, f"inserted_{len(names) + 1}")

    for node in graph.node:
        node.input[:] = [renamed(name) for name in node.input]
        node.output[:] = [renamed(name) for name in node.output]
        node.name = renamed(node.name)
    initializers = sorted(graph.initializer, key=lambda tensor: renamed(tensor.name))
    for tensor in initializers:
        tensor.name = renamed(tensor.name)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    for value in (*graph.value_info, *graph.input, *graph.output):
        value.name = renamed(value.name)


def onnx_probabilities(session: ort.InferenceSession, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Run (N, H, W) uint8 images through an ONNX session in batches."""
    input_name = session.get_inputs()[0].name
    outputs = [session.run(None, {input_name: to_model_input(images[i:i + batch_size]).astype(np.float32)})[0]
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs)


def keras_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    return np.asarray(model.predict(to_model_input(images).astype(np.float32), batch_size=batch_size, verbose=0))


def measure_parity(session: ort.InferenceSession, model: keras.Model, images: np.ndarray,
                   labels: np.ndarray) -> ParityReport:
    """Compare onnxruntime with Keras on the same images."""
    return compare_probabilities(onnx_probabilities(session, images), keras_probabilities(model, images), labels)


def session_from_proto(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def export_versions() -> dict[str, str]:
    """The versions of the tools that wrote an export."""
    import tensorflow as tf
    import tf2onnx

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "onnx": onnx.__version__, "onnxruntime": ort.__version__, "tf2onnx": tf2onnx.__version__}


def publish(proto: onnx.ModelProto, card: dict[str, Any], keras_model: keras.Model, exports_dir: Path,
            source: str) -> dict[str, Any]:
    """Write a verified model to ``exports_dir`` as one set: the Keras reference, the ONNX file with its
    card embedded, and the card with the file's sha256. A reader finds the previous set or this one, never
    a mix, even if the export is killed (see :func:`~kmnist_search.base.files.staged_set`). Returns the card as
    written. An interrupted export of the same name is completed, and temporary files of a killed one
    removed, first."""
    onnx_path = exports_dir / card["onnx_file"]
    keras_path = exports_dir / card["keras_file"]
    card_path = card_path_for(onnx_path)
    finish_publication(onnx_path)
    for target in (onnx_path, card_path, keras_path):
        remove_leftovers_of(target)
    proto.producer_name = "kmnist-search"
    proto.doc_string = f"KMNIST classifier exported by kmnist-search from {source}"
    onnx.helper.set_model_props(proto, {MODEL_CARD_KEY: embedded_text(card)})
    with staged_set(publication_marker(onnx_path), [keras_path, onnx_path, card_path]) as staged:
        save_inference_copy(keras_model, staged[keras_path])
        staged[onnx_path].write_bytes(proto.SerializeToString())
        card = {**card, "onnx_sha256": file_digest(staged[onnx_path], "sha256")}
        write_card(staged[card_path], card)
    return card


def export_winner(run_dir: RunDir | Path, dataset: Dataset, exports_dir: Path,
                  name: str | None = None) -> dict[str, Any]:
    """Export a run's winner to ``exports_dir/NAME.onnx`` with its model card, after proving parity.

    Raises ParityError (and writes nothing to ``exports_dir``) if onnxruntime disagrees with Keras.
    """
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    results = run_dir.require_results()
    name = name or results.run_name
    trained = load_keras_model(run_dir.winner_model_path)
    model = without_augmentation(trained)
    proto = convert_to_onnx(model, dataset.spec.image_shape)
    parity = measure_parity(session_from_proto(proto), trained, dataset.test_images, dataset.test_labels)
    if not parity.passes(EXACT):
        raise ParityError(f"the ONNX export does not reproduce Keras ({parity.describe(EXACT)}): nothing was "
                          f"written to {exports_dir}; report this with --debug output")
    card = single_model_card(results, dataset.spec, parity, EXACT, name, export_versions())
    card = publish(proto, card, model, exports_dir, f"run {results.run_name}")
    run_dir.record_export(ExportRecord(onnx=str(exports_dir / card["onnx_file"]),
                                       model_card=str(card_path_for(exports_dir / card["onnx_file"])),
                                       onnx_sha256=card["onnx_sha256"]))
    return card


def load_keras_model(path: Path, missing: str = "the run has no winner yet; finish the search first",
                     fix: str = "rerun the search") -> keras.Model:
    """A saved Keras model; one line saying ``missing`` or ending in ``fix`` when it cannot be had."""
    if not path.is_file():
        raise ModelFileError(f"{path} is missing: {missing}")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file
        raise ModelFileError(f"{path} cannot be loaded as a Keras model ({error}): {fix}") from None


EXPORT_REFERENCE_MISSING = ("the export's Keras reference, which verification compares the ONNX file with, is "
                            "gone; export the model again")


def save_inference_copy(model: keras.Model, path: Path) -> None:
    """Save the weights without optimizer state (the Keras reference for later parity checks) at ``path``,
    a staged path of :func:`publish`."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.save(path)
