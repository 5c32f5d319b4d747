"""An export's model card as a page people read: ``exports/NAME.md``, generated, never written by hand.

Two sources, both files beside the model: the card JSON (:mod:`kmnist_search.cards`: what the model is,
how it was trained and verified) and the evaluation record ``NAME.evaluation.json`` that this module
writes and owns: the test set run through the ONNX file with onnxruntime alone (overall and per-class
accuracy, the most-confused pairs) and its size and speed (:mod:`kmnist_search.latency`). The page
follows the model-card sections of Mitchell et al. (2019) and the Hugging Face layout: intended and
out-of-scope use, training and evaluation data, results, size and speed, quantization, limitations,
how to reproduce, citation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kmnist_search import latency
from kmnist_search.cards import card_path_for, read_card
from kmnist_search.errors import ModelFileError
from kmnist_search.files import atomic_write_text, file_digest
from kmnist_search.inference import Classifier
from kmnist_search.record import Budget, TrainingSettings

EVALUATION_SUFFIX = ".evaluation.json"
PAGE_SUFFIX = ".md"
CONFUSED_PAIRS = 5
MAX_EVALUATION_BYTES = 1_000_000
CITATION = """@online{clanuwat2018deep,
  author       = {Tarin Clanuwat and Mikel Bober-Irizar and Asanobu Kitamoto and Alex Lamb and Kazuaki Yamamoto
                  and David Ha},
  title        = {Deep Learning for Classical Japanese Literature},
  date         = {2018-12-03},
  year         = {2018},
  eprintclass  = {cs.CV},
  eprinttype   = {arXiv},
  eprint       = {cs.CV/1812.01718},
}"""


@dataclass(frozen=True)
class ConfusedPair:
    """Test images of class ``actual`` that the model called ``predicted``."""

    actual: int
    predicted: int
    count: int


@dataclass(frozen=True)
class ModelEvaluation:
    """An export measured with onnxruntime alone: the test set, and its size and speed."""

    onnx_sha256: str
    onnx_bytes: int
    test_images: int
    test_accuracy: float
    per_class_accuracy: list[float]
    per_class_images: list[int]
    confused: list[ConfusedPair]
    latency: dict[str, Any]
    measured_at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


def evaluation_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.stem + EVALUATION_SUFFIX)


def page_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.stem + PAGE_SUFFIX)


def evaluate(onnx_path: Path, test_images: np.ndarray, test_labels: np.ndarray) -> ModelEvaluation:
    """Run the test set through ``onnx_path`` with onnxruntime, and time it by the latency protocol."""
    classifier = Classifier(onnx_path)
    predicted = classifier.predict_proba(test_images).argmax(axis=1)
    labels = np.asarray(test_labels).astype(int)
    classes = len(classifier.classes)
    counts = np.zeros((classes, classes), dtype=int)
    np.add.at(counts, (labels, predicted), 1)
    pairs = [(a, p) for a in range(classes) for p in range(classes) if a != p and counts[a, p]]
    confused = [ConfusedPair(a, p, int(counts[a, p])) for a, p in sorted(pairs, key=lambda pair: -counts[pair])]
    per_class_images = counts.sum(axis=1)
    return ModelEvaluation(
        onnx_sha256=file_digest(onnx_path, "sha256"), onnx_bytes=onnx_path.stat().st_size, test_images=len(labels),
        test_accuracy=round(float(np.trace(counts) / len(labels)), 6),
        per_class_accuracy=[round(float(counts[c, c] / max(per_class_images[c], 1)), 6) for c in range(classes)],
        per_class_images=[int(n) for n in per_class_images], confused=confused[:CONFUSED_PAIRS],
        latency=latency.measure(str(onnx_path), test_images[:100]).to_dict(),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def read_evaluation(path: Path) -> ModelEvaluation | None:
    """The evaluation record at ``path``; None when it is missing or belongs to no file it can describe."""
    if not path.is_file() or path.stat().st_size > MAX_EVALUATION_BYTES:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ModelEvaluation(**{**data, "confused": [ConfusedPair(**pair) for pair in data["confused"]]})
    except (ValueError, TypeError, KeyError):
        return None


def write_model_card(onnx_path: Path, test_images: np.ndarray, test_labels: np.ndarray) -> Path:
    """Measure the export, then write ``NAME.evaluation.json`` and the page ``NAME.md`` beside it (each
    atomically); return the page's path."""
    card = read_card(card_path_for(onnx_path))
    evaluation = evaluate(onnx_path, test_images, test_labels)
    if evaluation.onnx_sha256 != card.get("onnx_sha256"):
        raise ModelFileError(f"{onnx_path}'s sha256 differs from its model card: the files do not belong together; "
                             f"export the model again")
    atomic_write_text(evaluation_path(onnx_path), evaluation.to_json())
    path = page_path(onnx_path)
    atomic_write_text(path, render(card, evaluation))
    return path


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.2f}%"


def _model_lines(model: dict[str, Any]) -> list[str]:
    training = model["training"]
    values = ", ".join(f"{name} {value}" for name, value in training["hyperparameters"].items())
    return [f"- From run `{model['run_name']}` ({model['strategy']} search over the `{training['search_space']}` "
            f"space): {values}."]


def _training_lines(model: dict[str, Any]) -> list[str]:
    settings = TrainingSettings.model_validate(model["training"])  # a card copies the record's settings
    trial, retraining = settings.search_trial, settings.retraining
    lines = [f"- Searched on {trial.train_images:,} training images for {trial.epochs_trained} epochs "
             f"(best epoch {trial.best_epoch})."]
    if retraining:
        hours = f", {retraining.wall_time_s / 3600:.1f} h" if retraining.wall_time_s else ""
        lines.append(f"- Retrained on {retraining.train_images:,} images for {retraining.epochs_trained} epochs "
                     f"(best epoch {retraining.best_epoch}{hours}).")
    return lines


def _for_each_model(card: dict[str, Any], lines_of: Callable[[dict[str, Any]], list[str]]) -> list[str]:
    """The lines ``lines_of`` gives for every network in the card, in order."""
    return [line for model in card["models"] for line in lines_of(model)]


def _budget_lines(model: dict[str, Any]) -> list[str]:
    measured = model.get("deployment")
    if not measured:
        return []
    budget = measured["budget"]
    limits = Budget.model_validate(budget).describe() if budget else ""
    return [f"- In the search, its trial measured {measured['single_image_ms']:.3f} ms per image "
            f"({measured['ratio_to_reference']:.2f}x the reference) and {measured['onnx_bytes']:,} bytes "
            f"({measured['precision']})" + (f"; it was chosen as the most accurate trial within the budget of "
                                            f"{limits}." if limits else ".")]


def render(card: dict[str, Any], evaluation: ModelEvaluation) -> str:
    """The page, from the card and the evaluation record alone."""
    name = card["name"]
    classes = card["classes"]
    split = card["split"]
    speed = evaluation.latency
    validation = card["metrics"].get("validation_accuracy")
    quantized = card.get("quantization")
    lines = [
        f"# Model card: {name}",
        "",
        f"Generated by `python -m kmnist_search model-card exports/{card['onnx_file']}` from `{name}.json` and "
        f"`{name}{EVALUATION_SUFFIX}`; do not edit it by hand.",
        "",
        "## Model",
        "",
        f"- `{card['onnx_file']}`: a KMNIST classifier ({card['kind']} model, {card['precision']}), ONNX opset "
        f"{card['opset']}, {evaluation.onnx_bytes:,} bytes, sha256 `{evaluation.onnx_sha256[:16]}...`.",
        f"- Input: {card['input']['layout']}, shape {card['input']['shape']}, {card['input']['scaling']}.",
        f"- Output: {card['output']['meaning']} over {len(classes)} classes.",
        *_for_each_model(card, _model_lines),
        "",
        "## Intended use",
        "",
        "Reading one of the ten KMNIST hiragana (" + ", ".join(f"{c['character']} {c['romanized']}" for c in classes)
        + ") from a single centred 28x28 grayscale image of a character cut from a classical Japanese book, as "
        "KMNIST prepares them: research, teaching, and a baseline for transcribing kuzushiji.",
        "",
        "## Out of scope",
        "",
        "- Any character outside these ten (the 49 of Kuzushiji-49, kanji): the model always answers one of the ten.",
        "- Whole pages or lines: it does not find or cut out characters.",
        "- Modern printed or handwritten hiragana, and images prepared unlike KMNIST's (dark ink on light paper "
        "must be inverted; `predict` does so and frames the character): not evaluated.",
        "- Any decision about a person.",
        "",
        "## Training data",
        "",
        f"KMNIST's 60,000 training images (checksums in the card). {split['validation_images']:,} of them, drawn "
        f"with seed {split['seed']} and stratified by class, are held out for validation and never trained on.",
        "",
        *_for_each_model(card, _training_lines),
        "",
        "## Evaluation data",
        "",
        f"KMNIST's {evaluation.test_images:,} test images, used once for the figures below and never to choose "
        "anything. The test pages come from other books than the training pages, so test accuracy is below "
        "validation accuracy, which is measured on images from the training books.",
        "",
        "## Results",
        "",
        f"Test accuracy **{_percent(evaluation.test_accuracy)}** with onnxruntime"
        + (f" (validation: {_percent(validation)})." if validation is not None else "."),
        "",
        "| class | character | codepoint | test images | accuracy |",
        "|---:|:---:|---|---:|---:|",
        *(f"| {c['index']} {c['romanized']} | {c['character']} | {c['codepoint']} | "
          f"{evaluation.per_class_images[c['index']]:,} | {_percent(evaluation.per_class_accuracy[c['index']])} |"
          for c in classes),
        "",
        "The most confused pairs (test images of the first class read as the second):",
        "",
        *(f"- {classes[p.actual]['character']} {classes[p.actual]['romanized']} read as "
          f"{classes[p.predicted]['character']} {classes[p.predicted]['romanized']}: {p.count} images"
          for p in evaluation.confused),
        "",
        "## Size and speed",
        "",
        f"- File: {evaluation.onnx_bytes:,} bytes.",
        f"- One image: {speed['single_image_ms']:.3f} ms median ({speed['single_image_p90_ms']:.3f} ms at the 90th "
        f"percentile), {speed['ratio_to_reference']:.2f}x the fixed reference model's "
        f"{speed['reference_single_image_ms']:.3f} ms measured beside it.",
        f"- Batches: {speed['images_per_second']:,.0f} images/s.",
        f"- Measured {evaluation.measured_at} on {speed['machine']}: {speed['protocol']}.",
        *_for_each_model(card, _budget_lines),
    ]
    if quantized:
        source = quantized["source_metrics"]
        lines += ["", "## Quantization", "",
                  f"{quantized['method']}; calibrated on {quantized['calibration_images']:,} images from "
                  f"{quantized['calibration_source']}. The float model it was made from is "
                  f"{quantized['source_onnx_bytes']:,} bytes with test accuracy {_percent(source['test_accuracy'])}; "
                  f"this file is {evaluation.onnx_bytes / quantized['source_onnx_bytes']:.2f}x that size with "
                  f"{_percent(evaluation.test_accuracy)}."]
    parity = card["parity"]
    lines += [
        "",
        "## Limitations",
        "",
        f"- Verified against its Keras model on {parity['images']:,} test images: label agreement "
        f"{_percent(parity['label_agreement'])}.",
        "- The weakest classes above are where it errs most; confidence is not calibrated against other books.",
        "- Trained once, from one seed: another seed lands somewhat differently.",
        "",
        "## How to reproduce",
        "",
        "```bash",
        *(f"python -m kmnist_search.run --strategy {model['strategy']} --space {model['training']['search_space']} "
          f"--name {model['run_name']}" for model in card["models"]),
        *([f"python -m kmnist_search.export runs/{card['models'][0]['run_name']} --name "
           f"{Path(quantized['source_card']).stem if quantized else name}"] if card["kind"] == "single" else []),
        *([f"python -m kmnist_search.quantize exports/{quantized['source_card']} --name {name}"] if quantized else []),
        f"python -m kmnist_search.verify exports/{card['onnx_file']}  # sha256, then onnxruntime against Keras",
        f"python -m kmnist_search model-card exports/{card['onnx_file']}  # this page, measured again",
        "```",
        "",
        "Versions: " + ", ".join(f"{tool} {version}" for tool, version in card["versions"].items()) + ".",
        "",
        "## Citation",
        "",
        f"Licence: {card['dataset']['licence']}. Cite KMNIST as:",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)
