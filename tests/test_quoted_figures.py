"""Figures the documents quote about files on disk agree with those files and their model cards.

Dated history (BENCHMARKS.md's Log) is left alone: it says what was measured then."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "exports" / "kmnist-reference.onnx"
INT8_KERNEL_POINTS = 1.0  # how far the int8 model's probabilities move between x86 instruction sets
CARD = json.loads(SHIPPED.with_suffix(".json").read_text(encoding="utf-8"))
DOCUMENTS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]


def current_text(path: Path) -> str:
    """A document without its dated log."""
    text = path.read_text(encoding="utf-8")
    return text.split("\n## Log\n")[0]


def quotes(pattern: str) -> list[tuple[str, str]]:
    """(document, match) for every match of ``pattern`` in the documents' current text."""
    return [(path.name, match) for path in DOCUMENTS for match in re.findall(pattern, current_text(path))]


def test_the_shipped_model_s_size_is_quoted_as_the_file_on_disk_has_it() -> None:
    size = SHIPPED.stat().st_size
    in_bytes = quotes(r"\b4[5-7]\d,\d{3}\b(?!,\d)")
    assert in_bytes and all(match == f"{size:,}" for _, match in in_bytes), (size, in_bytes)
    in_kilobytes = quotes(r"\b(4[5-7]\d) KB\b")
    assert in_kilobytes and all(int(match) == round(size / 1000) for _, match in in_kilobytes), in_kilobytes


def test_the_shipped_model_s_latency_is_the_one_its_evaluation_record_measured() -> None:
    evaluation = json.loads((ROOT / "exports" / "kmnist-reference.evaluation.json").read_text(encoding="utf-8"))
    quoted = quotes(r"in (\d+\.\d+) ms per single image")
    assert quoted and all(float(match) == round(evaluation["latency"]["single_image_ms"], 2) for _, match in quoted)


def test_the_float_model_s_size_is_quoted_as_the_int8_card_records_it() -> None:
    recorded = CARD["quantization"]["source_onnx_bytes"]
    quoted = quotes(r"\b1,5[0-9]{2},\d{3}\b")
    assert quoted and all(match == f"{recorded:,}" for _, match in quoted), (recorded, quoted)


def test_the_shipped_model_s_retraining_time_is_the_one_its_card_records() -> None:
    hours = CARD["models"][0]["training"]["retraining"]["wall_time_s"] / 3600
    quoted = quotes(r"retraining (?:took |about )?(\d+(?:\.\d+)?) ?h")
    assert quoted and all(float(match) == round(hours, 1) for _, match in quoted), (round(hours, 1), quoted)


def test_the_readme_s_prediction_is_what_the_command_prints() -> None:
    from kmnist_search.commands.predict import format_prediction
    from kmnist_search.export.inference import Classifier

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    command = "$ python -m kmnist_search.predict exports/kmnist-reference.onnx docs/images/character.png\n"
    quoted = text.split(command)[1].splitlines()[0]
    (prediction,) = Classifier(SHIPPED).predict([ROOT / "docs" / "images" / "character.png"])
    prediction.source = "docs/images/character.png"
    printed = format_prediction(prediction)
    # The shipped model is int8: onnxruntime's int8 kernels differ between x86 instruction sets (AVX2 against
    # AVX-512 VNNI), which moves its probabilities by under a point. Everything else is exact.
    percent = re.compile(r"\d+\.\d%")
    assert percent.sub("P", quoted) == percent.sub("P", printed)
    quoted_figures, printed_figures = (np.array([float(figure[:-1]) for figure in percent.findall(line)])
                                       for line in (quoted, printed))
    assert np.abs(quoted_figures - printed_figures).max() < INT8_KERNEL_POINTS, (quoted, printed)


def test_the_same_seed_repeat_is_as_the_reliability_page_says() -> None:
    import csv

    page = current_text(ROOT / "docs" / "reliability.md")
    rows = list(csv.DictReader((ROOT / "benchmarks" / "ground_truth" / "units.csv").open(encoding="utf-8")))
    runs: dict[tuple[str, ...], dict[str, float]] = {}
    for row in rows:
        if row["space"] == "report-small" and row["seed"] == "42":
            key = (row["learning_rate"], row["batch_size"], row["loss"])
            runs.setdefault(key, {})[row["repeat"]] = float(row["final_val_accuracy"])
    pairs = [r for r in runs.values() if {"0", "1"} <= r.keys()]
    assert len(pairs) == 40
    identical = all(r["0"] == r["1"] for r in pairs)
    assert ("every final validation accuracy came out identical" in " ".join(page.split())) == identical


def test_the_readme_quotes_the_shipped_model_s_card() -> None:
    text = current_text(ROOT / "README.md")
    quoted = re.findall(r"a residual network, (\d+\.\d+)% on", " ".join(text.split()))
    assert quoted and all(float(q) == round(CARD["metrics"]["test_accuracy"] * 100, 2) for q in quoted)


def test_no_document_names_a_machine_s_absolute_path() -> None:
    found = [(path.name, match) for path in [*DOCUMENTS, *sorted((ROOT / "exports").glob("*.md"))]
             for match in re.findall(r"(?<![\w.~])/(?:root|home|tmp|work|Users)/\S*", path.read_text(encoding="utf-8"))]
    assert found == []


def test_the_shipped_model_page_quotes_the_card() -> None:
    page = current_text(ROOT / "docs" / "shipped-model.md")
    retraining = CARD["models"][0]["training"]["retraining"]
    source = CARD["quantization"]["source_metrics"]
    test, float_test = CARD["metrics"]["test_accuracy"], source["test_accuracy"]
    assert f"with\n{test:.2%} accuracy (its float32 original: {float_test:.2%})" in page
    assert f"(epoch {retraining['best_epoch']}: {retraining['validation_accuracy']:.2%} on the " \
           f"{CARD['split']['validation_images']:,}\nheld-out images)" in page
    assert f"for {retraining['epochs_planned']} epochs on all {retraining['train_images']:,}\n" in page
