"""Winner -> ONNX (+ model card), verified against Keras with onnxruntime.

The export goes through Keras's own ONNX exporter (``model.export(format="onnx")``, which drives
``tf2onnx.convert.from_function``; ``tf2onnx.convert.from_keras`` fails on Keras 3 models). The graph
gets a meaningful input and output name, a dynamic batch dimension, a pinned opset, and passes
``onnx.checker`` (full check). It is written to ``exports/`` only after onnxruntime reproduces
Keras on the full test set; the model card beside it records the parity figures and the file's sha256.
"""

from __future__ import annotations

import json
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import onnxruntime as ort

from kmnist_search.cli import OneLineArgumentParser, run_main
from kmnist_search.datasets import Dataset, DatasetSpec, file_digest, load_dataset
from kmnist_search.errors import ModelFileError, ParityError
from kmnist_search.files import atomic_write_bytes, atomic_write_json
from kmnist_search.hypermodel import AUGMENTATION_PREFIX, INPUT_NAME, OUTPUT_NAME, to_model_input
from kmnist_search.inference import MODEL_CARD_KEY

OPSET = 17
MAX_ABS_PROBABILITY_DIFF = 1e-5
CARD_SCHEMA_VERSION = 1
LICENCE = ("CC BY-SA 4.0: trained on KMNIST, \"KMNIST Dataset\" (created by CODH), adapted from \"Kuzushiji "
           "Dataset\" (created by NIJL and others), doi:10.20676/00000341")


@dataclass(frozen=True)
class ParityReport:
    """How closely onnxruntime reproduces Keras on a set of images."""

    images: int
    label_agreement: float
    max_abs_probability_diff: float
    onnx_accuracy: float
    keras_accuracy: float

    @property
    def passed(self) -> bool:
        return (self.label_agreement == 1.0 and self.max_abs_probability_diff <= MAX_ABS_PROBABILITY_DIFF
                and self.onnx_accuracy == self.keras_accuracy)

    def describe(self) -> str:
        return (f"parity on {self.images} test images: predicted labels identical on "
                f"{self.label_agreement * 100:.2f}%, max |p_onnx - p_keras| = {self.max_abs_probability_diff:.2e} "
                f"(limit {MAX_ABS_PROBABILITY_DIFF:.0e}), test accuracy onnx {self.onnx_accuracy * 100:.2f}% vs "
                f"keras {self.keras_accuracy * 100:.2f}%")


def convert_to_onnx(model: keras.Model, image_shape: tuple[int, int]) -> onnx.ModelProto:
    """Export a Keras model to a checked ONNX graph: input ``image`` (batch, H, W, 1) float32,
    output ``probabilities`` (batch, classes)."""
    import tensorflow as tf

    signature = [tf.TensorSpec((None, *image_shape, 1), tf.float32, name=INPUT_NAME)]
    try:
        with tempfile.TemporaryDirectory() as temp_dir:
            path = Path(temp_dir) / "model.onnx"
            model.export(str(path), format="onnx", input_signature=signature, opset_version=OPSET, verbose=False)
            proto = onnx.load(str(path))
        _name_graph_io(proto)
        onnx.checker.check_model(proto, full_check=True)
    except Exception as error:  # tf2onnx and the checker raise many types
        gist = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"ONNX conversion failed ({gist[:200]}): nothing was exported; rerun with --debug "
                             f"and report it") from None
    return proto


def without_augmentation(model: keras.Model) -> keras.Model:
    """The same network, sharing its weights, without the training-only augmentation layers.

    Keras's random augmentation layers are identity at inference, but their random ops would still
    be traced into the ONNX graph; a chain without them computes exactly the same inference.
    """
    kept = [layer for layer in model.layers[1:] if not layer.name.startswith(AUGMENTATION_PREFIX)]
    if len(kept) == len(model.layers) - 1:
        return model
    inputs = keras.Input(shape=model.input_shape[1:], name=INPUT_NAME)
    x = inputs
    for layer in kept:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _name_graph_io(proto: onnx.ModelProto) -> None:
    """Call the output ``probabilities`` and the batch dimension ``batch`` on both ends."""
    graph = proto.graph
    old_output = graph.output[0].name
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if name == old_output else name for name in node.output]
    graph.output[0].name = OUTPUT_NAME
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"


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
    onnx_p = onnx_probabilities(session, images)
    keras_p = keras_probabilities(model, images)
    onnx_labels, keras_labels = onnx_p.argmax(axis=1), keras_p.argmax(axis=1)
    return ParityReport(
        images=len(images),
        label_agreement=float(np.mean(onnx_labels == keras_labels)),
        max_abs_probability_diff=float(np.abs(onnx_p - keras_p).max()),
        onnx_accuracy=float(np.mean(onnx_labels == labels)),
        keras_accuracy=float(np.mean(keras_labels == labels)),
    )


def session_from_proto(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def model_card_interface(spec: DatasetSpec, name: str) -> dict[str, Any]:
    """The card's description of the files and of the model's input, output and classes."""
    return {
        "schema_version": CARD_SCHEMA_VERSION,
        "name": name,
        "onnx_file": f"{name}.onnx",
        "keras_file": f"{name}.keras",
        "input": {
            "name": INPUT_NAME, "shape": ["batch", *spec.image_shape, 1], "dtype": "float32",
            "value_range": [0, 255],
            "scaling": "inside the model (Rescaling 1/255): feed raw pixel values",
            "layout": "NHWC grayscale, white ink on a black background as in KMNIST",
        },
        "output": {"name": OUTPUT_NAME, "shape": ["batch", spec.num_classes], "meaning": "softmax probabilities"},
        "classes": [{"index": i, "character": c, "codepoint": cp, "romanized": r}
                    for i, (c, cp, r) in enumerate(zip(spec.characters, spec.codepoints, spec.romanized,
                                                       strict=True))],
    }


def build_model_card(results: dict[str, Any], dataset: Dataset, parity: ParityReport, name: str) -> dict[str, Any]:
    """Everything a user of the .onnx file needs to know, as data."""
    winner = results["winner"]
    space = results["space"]
    return {
        **model_card_interface(dataset.spec, name),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training": {
            "run_name": results["run_name"], "strategy": results["strategy"], "seed": results["seed"],
            "init_seed": results.get("init_seed"),
            "search_space": space["name"], "hyperparameters": winner["hyperparameters"],
            "optimizer": winner["hyperparameters"].get("optimizer", space["optimizer"]), "epochs": space["epochs"],
            "best_epoch": winner["best_epoch"],
            "train_images": (winner.get("retrained") or results["dataset"])["train_images"],
            "retrained": winner.get("retrained"),
            "validation_images": results["dataset"]["validation_images"],
            "teacher": results.get("teacher"),
        },
        "dataset": {"name": dataset.spec.name, "checksums": dataset.checksums, "licence": LICENCE},
        "metrics": {"validation_accuracy": winner["val_accuracy"], "test_accuracy": winner["test_accuracy"],
                    "test_balanced_accuracy": winner.get("test_balanced_accuracy"),
                    "test_images": len(dataset.test_labels)},
        "parity": asdict(parity),
        "versions": results["versions"],
    }


def stamp_and_write(proto: onnx.ModelProto, card: dict[str, Any], exports_dir: Path, source: str) -> dict[str, Any]:
    """Embed the card in the ONNX file, write it, then write the card with the file's sha256 beside it
    (last, so a card on disk means a complete export)."""
    import tensorflow as tf
    import tf2onnx

    card = {**card, "opset": OPSET,
            "versions": {**card.get("versions", {}), "python": platform.python_version(),
                         "tensorflow": tf.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                         "tf2onnx": tf2onnx.__version__}}
    proto.producer_name = "kmnist-search"
    proto.doc_string = f"KMNIST classifier exported by kmnist-search from {source}"
    onnx.helper.set_model_props(proto, {MODEL_CARD_KEY: json.dumps(card, ensure_ascii=False)})
    onnx_path = exports_dir / card["onnx_file"]
    atomic_write_bytes(onnx_path, proto.SerializeToString())
    card["onnx_sha256"] = file_digest(onnx_path, "sha256")
    atomic_write_json(exports_dir / f"{card['name']}.json", card)
    return card


def export_winner(run_dir: Path, dataset: Dataset, exports_dir: Path, name: str | None = None) -> dict[str, Any]:
    """Export a run's winner to ``exports_dir/NAME.onnx`` with its model card, after proving parity.

    Raises ParityError (and writes nothing to ``exports_dir``) if onnxruntime disagrees with Keras.
    """
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise ModelFileError(f"{results_path} is missing: finish the search first "
                             f"(`python -m kmnist_search.run ...` with the same --name)")
    results = json.loads(results_path.read_text())
    name = name or results["run_name"]
    trained = load_keras_model(run_dir / "winner.keras")
    model = without_augmentation(trained)
    proto = convert_to_onnx(model, dataset.spec.image_shape)
    parity = measure_parity(session_from_proto(proto), trained, dataset.test_images, dataset.test_labels)
    if not parity.passed:
        raise ParityError(f"the ONNX export does not reproduce Keras ({parity.describe()}): nothing was "
                          f"written to {exports_dir}; report this with --debug output")
    save_inference_copy(model, exports_dir / f"{name}.keras")
    card = stamp_and_write(proto, build_model_card(results, dataset, parity, name), exports_dir,
                           f"run {results['run_name']}")
    results["export"] = {"onnx": str(exports_dir / card["onnx_file"]), "model_card": str(exports_dir / f"{name}.json"),
                         "onnx_sha256": card["onnx_sha256"]}
    atomic_write_json(results_path, results)
    return card


def load_keras_model(path: Path) -> keras.Model:
    if not path.is_file():
        raise ModelFileError(f"{path} is missing: the run has no winner yet; finish the search first")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad file
        raise ModelFileError(f"{path} cannot be loaded as a Keras model ({error}): rerun the search") from None


def save_inference_copy(model: keras.Model, path: Path) -> None:
    """Save the weights without optimizer state: the Keras reference for later parity checks."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.keras")
    copy.save(partial)
    partial.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kmnist_search.export RUN_DIR``: export and verify a finished run's winner."""
    parser = OneLineArgumentParser(prog="python -m kmnist_search.export",
                                   description="Export a run's winner to ONNX and verify it with onnxruntime.")
    parser.add_argument("run_dir", type=Path, help="a finished run directory (with results.json)")
    parser.add_argument("--exports-dir", type=Path, default=Path("exports"), help="where to write (default exports/)")
    parser.add_argument("--name", help="file name stem (default: the run's name)")
    parser.add_data_arguments()
    args = parser.parse_args(argv)
    results_path = args.run_dir / "results.json"
    if not results_path.is_file():
        raise ModelFileError(f"{results_path} is missing: pass a finished run directory such as runs/quick-grid")
    dataset_name = json.loads(results_path.read_text())["dataset"]["name"]
    dataset = load_dataset(dataset_name, args.data_dir, args.cache_dir, verify_checksums=not args.no_checksum)
    card = export_winner(args.run_dir, dataset, args.exports_dir, args.name)
    print(describe_export(card, args.exports_dir))
    return 0


def describe_export(card: dict[str, Any], exports_dir: Path) -> str:
    parity = ParityReport(**card["parity"])
    return (f"exported {exports_dir / card['onnx_file']} (sha256 {card['onnx_sha256'][:12]}..., opset {card['opset']}) "
            f"and its model card {exports_dir / (card['name'] + '.json')}\n{parity.describe()}")


if __name__ == "__main__":
    run_main(main)
