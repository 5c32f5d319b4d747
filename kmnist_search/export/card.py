"""The model card: one versioned schema for every exported model, built, read and checked here.

A card (``exports/NAME.json``, and embedded in ``NAME.onnx`` under the metadata key ``model_card``)
says what the model takes and returns, how every network in it was trained with every default
resolved (one entry in ``models`` for a single or distilled network, one per member for an
ensemble), its validation and test accuracy, how it was verified against Keras and, for an int8
model, how it was quantized. The schema is ``model_card.schema.json`` beside this module; a card is
checked against it when it is written and whenever it is read (no TensorFlow).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmnist_search.base.errors import ModelFileError
from kmnist_search.base.files import atomic_write_json, file_digest, finish_staged_set
from kmnist_search.base.names import check_name
from kmnist_search.data.contract import (
    INPUT_LAYOUT,
    INPUT_NAME,
    INPUT_SCALING,
    INPUT_VALUE_RANGE,
    OPSET,
    OUTPUT_NAME,
)
from kmnist_search.data.record import RunRecord
from kmnist_search.data.spaces import used_by_network
from kmnist_search.export.parity import ParityReport, ParityRule

if TYPE_CHECKING:
    from kmnist_search.data.datasets import DatasetSpec

CARD_SCHEMA_VERSION = 2
SCHEMA_PATH = Path(__file__).with_name("model_card.schema.json")
MAX_CARD_BYTES = 1 << 20  # a card is a few kilobytes; refuse anything that could exhaust memory
LICENCE = ("CC BY-SA 4.0: trained on KMNIST, \"KMNIST Dataset\" (created by CODH), adapted from \"Kuzushiji "
           "Dataset\" (created by NIJL and others), doi:10.20676/00000341")


@cache
def card_schema() -> dict[str, Any]:
    """The JSON Schema every card must satisfy."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def validate_card(card: Any, where: str) -> dict[str, Any]:
    """Return ``card`` if it satisfies the schema; otherwise raise a one-line ModelFileError."""
    import jsonschema

    version = card.get("schema_version") if isinstance(card, dict) else None
    if isinstance(version, int) and version != CARD_SCHEMA_VERSION:
        newer = version > CARD_SCHEMA_VERSION
        raise ModelFileError(f"{where} is a model card of schema version {version}, "
                             f"{'newer' if newer else 'older'} than this kmnist-search reads ({CARD_SCHEMA_VERSION}): "
                             + ("upgrade kmnist-search" if newer else
                                "export the model again with `python -m kmnist_search.export RUN_DIR`"))
    validator = jsonschema.Draft202012Validator(card_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(card))
    if error is not None:
        location = "/".join(str(part) for part in error.absolute_path) or "the top level"
        message = " ".join(error.message.split())[:200]
        raise ModelFileError(f"{where} is not a valid model card (at {location}: {message}): export the model again")
    return dict(card)


def read_card(path: Path) -> dict[str, Any]:
    """Read and check the card at ``path`` (one-line errors for every way it can be wrong)."""
    finish_publication(path)
    if not path.is_file():
        raise ModelFileError(f"{path} is missing: an export without its model card was never verified; "
                             f"export it again with `python -m kmnist_search.export RUN_DIR`")
    if path.stat().st_size > MAX_CARD_BYTES:
        raise ModelFileError(f"{path} is {path.stat().st_size:,} bytes, too large for a model card: pass the .json "
                             f"written beside an exported .onnx")
    try:
        card = strict_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path} is not valid JSON ({error}): export the model again") from None
    except (ValueError, RecursionError) as error:
        raise ModelFileError(f"{path} is not a model card ({error}): export the model again") from None
    return validate_card(card, str(path))


def strict_json(text: str) -> Any:
    """Parse JSON as the standard defines it: NaN and Infinity (which Python accepts) are refused, since no
    figure of a card may be one; so is nesting too deep to parse."""
    def refuse(constant: str) -> None:
        raise ValueError(f"it holds {constant}, not a number")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None


def card_path_for(onnx_path: Path) -> Path:
    """Where the card of an exported ONNX file lives."""
    return onnx_path.with_suffix(".json")


def publication_marker(path: Path) -> Path:
    """The marker an export of NAME (``path``: its .onnx, .json or .keras) leaves while it replaces the set."""
    return path.with_name(f".{path.stem}.publishing.json")


def finish_publication(path: Path) -> None:
    """Complete an export of ``path``'s set that a kill interrupted, so that it is read whole (see
    :func:`~kmnist_search.base.files.staged_set`)."""
    try:
        finish_staged_set(publication_marker(path))
    except OSError as error:
        raise ModelFileError(f"an export of {path} was interrupted and cannot be completed here "
                             f"({error.strerror or error}): export it again") from None


def card_from_metadata(text: str, where: str) -> dict[str, Any]:
    """The card embedded in an ONNX file's metadata, checked."""
    if len(text) > MAX_CARD_BYTES:
        raise ModelFileError(f"{where} embeds a model card of {len(text):,} characters: not a kmnist-search model")
    try:
        card = strict_json(text)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{where} embeds a model card that is not valid JSON ({error}): export it again") from None
    except ValueError as error:
        raise ModelFileError(f"{where} embeds a model card that is not one ({error}): export it again") from None
    return validate_card(card, f"the model card embedded in {where}")


def write_card(path: Path, card: dict[str, Any]) -> None:
    """Check the card, then write it atomically."""
    atomic_write_json(path, validate_card(card, str(path)))


NOT_EMBEDDED = ("onnx_sha256", "created_at")  # the file's own digest, which it cannot know, and the time,
# which would make two exports of the same weights differ


def embedded_text(card: dict[str, Any]) -> str:
    """The card as embedded in its ONNX file: everything but the file's digest and the creation time, so
    the same weights and settings always give the same bytes."""
    return json.dumps({k: v for k, v in card.items() if k not in NOT_EMBEDDED}, ensure_ascii=False)


def interface(spec: DatasetSpec, name: str) -> dict[str, Any]:
    """The files, input, output and classes of an export named ``name`` for a dataset."""
    check_name(name, "export name")
    return {
        "name": name,
        "onnx_file": f"{name}.onnx",
        "keras_file": f"{name}.keras",
        "input": {"name": INPUT_NAME, "shape": ["batch", *spec.image_shape, 1], "dtype": "float32",
                  "value_range": list(INPUT_VALUE_RANGE), "scaling": INPUT_SCALING, "layout": INPUT_LAYOUT},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", spec.num_classes], "meaning": "softmax probabilities"},
        "classes": [{"index": i, "character": c, "codepoint": cp, "romanized": r}
                    for i, (c, cp, r) in enumerate(zip(spec.characters, spec.codepoints, spec.romanized,
                                                       strict=True))],
    }


def parity_section(report: ParityReport, rule: ParityRule) -> dict[str, Any]:
    return {**report.to_dict(), "rule": rule.to_dict()}


def parity_of(card: dict[str, Any]) -> tuple[ParityReport, ParityRule]:
    """The parity figures a card records and the rule they were held to."""
    figures = {k: v for k, v in card["parity"].items() if k != "rule"}
    return ParityReport(**figures), ParityRule(**card["parity"]["rule"])


def model_entry(results: RunRecord) -> dict[str, Any]:
    """One trained network as a card lists it: the run it came from and its effective settings, with the
    hyperparameters its network uses (also when the run's results.json lists every hyperparameter)."""
    winner = results.winner
    return {
        "run_name": results.run_name,
        "strategy": results.strategy,
        "training": {**winner.settings.to_dict(), "hyperparameters": used_by_network(winner.settings.hyperparameters)},
        "metrics": {"validation_accuracy": winner.val_accuracy, "test_accuracy": winner.test_accuracy,
                    "test_balanced_accuracy": winner.test_balanced_accuracy,
                    "test_images": results.dataset.test_images},
        **({"confirmation": winner.confirmed.to_dict()} if winner.confirmed else {}),
        **({"deployment": deployment_section(results)} if deployment_section(results) else {}),
    }


def deployment_section(results: RunRecord) -> dict[str, Any] | None:
    """The winner's trial as the search measured it for shipping, and the budget it was chosen within."""
    trial = results.trial(results.winner.trial_id)
    if trial is None or trial.deployment is None:
        return None
    shipped = trial.deployment.shipped()
    return {"budget": results.budget.to_dict() if results.budget else None, "onnx_bytes": shipped.onnx_bytes,
            "single_image_ms": shipped.speed.single_image_ms, "ratio_to_reference": shipped.speed.ratio_to_reference,
            "precision": "int8" if trial.deployment.int8 else "float32"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _card(spec: DatasetSpec, name: str, kind: str, models: list[dict[str, Any]], combination: str | None,
          split: dict[str, int], dataset: dict[str, Any], metrics: dict[str, Any], parity: dict[str, Any],
          versions: dict[str, str], quantization: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema_version": CARD_SCHEMA_VERSION,
        **interface(spec, name),
        "kind": kind,
        "precision": "int8" if quantization else "float32",
        "created_at": _now(),
        "models": models,
        "combination": combination,
        "split": split,
        "dataset": dataset,
        "metrics": metrics,
        "parity": parity,
        "quantization": quantization,
        "opset": OPSET,
        "versions": versions,
    }


def single_model_card(results: RunRecord, spec: DatasetSpec, parity: ParityReport, rule: ParityRule,
                      name: str, versions: dict[str, str]) -> dict[str, Any]:
    """The card of a search's winner exported on its own."""
    entry = model_entry(results)
    settings = entry["training"]
    return _card(spec, name, "distilled" if settings["teacher"] else "single", [entry], None,
                 {"seed": settings["seeds"]["split"], "validation_images": settings["validation_images"]},
                 {"name": spec.name, "checksums": results.dataset.checksums, "licence": LICENCE},
                 dict(entry["metrics"]), parity_section(parity, rule), {**results.versions, **versions})


def ensemble_card(members: list[tuple[Path, dict[str, Any]]], spec: DatasetSpec, validation_accuracy: float,
                  parity: ParityReport, rule: ParityRule, name: str, versions: dict[str, str]) -> dict[str, Any]:
    """The card of the mean of several exported models (each given as its card path and card)."""
    models = []
    for path, card in members:
        for entry in card["models"]:
            models.append({**entry, "card": path.name, "onnx_sha256": card.get("onnx_sha256")})
    first = members[0][1]
    metrics = {"validation_accuracy": validation_accuracy, "test_accuracy": parity.keras_accuracy,
               "test_images": parity.images}
    return _card(spec, name, "ensemble", models, "mean of the members' softmax probabilities", dict(first["split"]),
                 dict(first["dataset"]), metrics, parity_section(parity, rule), versions)


def quantized_card(source: dict[str, Any], source_path: Path, source_bytes: int, spec: DatasetSpec,
                   validation_accuracy: float, parity: ParityReport, rule: ParityRule, name: str, method: str,
                   calibration_images: int, versions: dict[str, str]) -> dict[str, Any]:
    """The card of an int8 copy of an export: the source's models and split, its own figures."""
    quantization = {
        "method": method, "calibration_images": calibration_images,
        "calibration_source": "the model's training split (never its validation or test images)",
        "source_card": source_path.name, "source_onnx_sha256": source["onnx_sha256"],
        "source_onnx_bytes": source_bytes, "source_metrics": source["metrics"],
    }
    metrics = {"validation_accuracy": validation_accuracy, "test_accuracy": parity.onnx_accuracy,
               "test_images": parity.images}
    return _card(spec, name, source["kind"], source["models"], source["combination"], dict(source["split"]),
                 dict(source["dataset"]), metrics, parity_section(parity, rule),
                 {**source.get("versions", {}), **versions}, quantization)


def read_quantizable_card(card_path: Path) -> dict[str, Any]:
    """The card of the float32 export to quantize, checked against the ONNX file beside it."""
    if card_path.suffix != ".json":
        raise ModelFileError(f"{card_path} is not a model card: pass the .json written beside an exported .onnx")
    card = read_card(card_path)
    if card["precision"] != "float32":
        raise ModelFileError(f"{card_path} is already quantized: pass the float32 export it came from")
    onnx_path = card_path.with_name(card["onnx_file"])
    if not onnx_path.is_file():
        raise ModelFileError(f"{onnx_path} is missing: export the model again")
    if file_digest(onnx_path, "sha256") != card.get("onnx_sha256"):
        raise ModelFileError(f"{onnx_path} does not match the sha256 in {card_path}: the file changed after it "
                             f"was verified; export it again")
    return card


def read_member_cards(card_paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read the members' model cards; they must classify one dataset and hold out one validation split."""
    if len(card_paths) < 2:
        raise ModelFileError("an ensemble needs at least two member model cards")
    cards = []
    for path in card_paths:
        if path.suffix != ".json":
            raise ModelFileError(f"{path} is not a model card: pass the .json written beside an exported .onnx")
        card = read_card(path)
        if card["kind"] == "ensemble":
            raise ModelFileError(f"{path} is already an ensemble: pass its members' cards instead")
        if card["precision"] != "float32":
            raise ModelFileError(f"{path} is an {card['precision']} model: pass the float32 exports and quantize "
                                 f"the ensemble afterwards")
        cards.append(card)
    for path, card in zip(card_paths[1:], cards[1:], strict=True):
        for label, key in (("dataset", lambda c: c["dataset"]["name"]), ("split seed", lambda c: c["split"]["seed"]),
                           ("validation set size", lambda c: c["split"]["validation_images"])):
            if key(card) != key(cards[0]):
                raise ModelFileError(f"{path} and {card_paths[0]} differ in {label} ({key(card)} vs "
                                     f"{key(cards[0])}): ensemble members must share the dataset and validation "
                                     f"split; retrain with the same --seed")
    return cards


def describe_export(card: dict[str, Any], exports_dir: Path) -> str:
    """What was written and how it was verified, for people."""
    report, rule = parity_of(card)
    return (f"exported {exports_dir / card['onnx_file']} (sha256 {card['onnx_sha256'][:12]}..., opset {card['opset']}) "
            f"and its model card {card_path_for(exports_dir / card['onnx_file'])}\n{report.describe(rule)}")


def describe_quantized(card: dict[str, Any], exports_dir: Path) -> str:
    """What was written, how faithful it is, and what it saves."""
    quantization, metrics = card["quantization"], card["metrics"]
    size = (exports_dir / card["onnx_file"]).stat().st_size
    report, rule = parity_of(card)
    return "\n".join([
        describe_export(card, exports_dir).splitlines()[0],
        report.describe(rule),
        f"{size:,} bytes ({quantization['source_onnx_bytes'] / size:.1f}x smaller); validation accuracy "
        f"{metrics['validation_accuracy'] * 100:.2f}%, test accuracy {metrics['test_accuracy'] * 100:.2f}% "
        f"(float32: {quantization['source_metrics']['test_accuracy'] * 100:.2f}%)",
    ])
