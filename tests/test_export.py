"""ONNX export of a real (small) winner, parity with onnxruntime, the model card, and re-verification."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import keras
import onnx
import pytest

from kmnist_search import pipeline
from kmnist_search.base.errors import ModelFileError, ParityError
from kmnist_search.base.files import PARTIAL_PREFIX, file_digest
from kmnist_search.data.contract import OPSET
from kmnist_search.export import convert as export
from kmnist_search.export.inference import Classifier
from kmnist_search.export.parity import EXACT, INT8, ParityRule, strictest
from kmnist_search.search.hypermodel import build_network
from tests.cli import Command, assert_one_line_error
from tests.conftest import FinishedRun


def test_export_writes_checked_self_describing_onnx(exported: Path) -> None:
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    assert graph_input.name == "image" and graph_output.name == "probabilities"
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims == ["batch", 28, 28, 1]
    embedded = json.loads({p.key: p.value for p in proto.metadata_props}["model_card"])
    card = json.loads(exported.with_suffix(".json").read_text())
    assert card["onnx_sha256"] == file_digest(exported, "sha256")
    assert embedded == {k: v for k, v in card.items() if k not in ("onnx_sha256", "created_at")}
    assert [c["character"] for c in card["classes"]] == list("おきすつなはまやれを")
    assert card["input"]["value_range"] == [0, 255] and "inside the model" in card["input"]["scaling"]
    training = card["models"][0]["training"]
    assert {k: training["hyperparameters"][k] for k in ("learning_rate", "batch_size", "loss")} == {
        "learning_rate": 1.0, "batch_size": 64, "loss": "categorical_crossentropy"}
    assert training["optimizer"]["name"] == "adadelta" and training["optimizer"]["learning_rate"] == 1.0
    assert card["parity"]["label_agreement"] == 1.0
    assert card["parity"]["max_abs_probability_diff"] <= 1e-5
    assert card["parity"]["onnx_accuracy"] == card["parity"]["keras_accuracy"]
    assert card["parity"]["keras_accuracy"] == pytest.approx(card["metrics"]["test_accuracy"], abs=1e-6)
    assert {"onnx", "onnxruntime", "tf2onnx", "keras", "tensorflow"} <= set(card["versions"])
    assert exported.with_suffix(".keras").is_file()


def test_onnx_predictions_match_keras_in_a_new_session(exported: Path, finished_run: FinishedRun) -> None:
    run_dir, dataset, _ = finished_run
    model = keras.models.load_model(run_dir / "winner.keras", compile=False)
    report = export.measure_parity(Classifier(exported).session, model, dataset.test_images, dataset.test_labels)
    assert report.passes() and report.images == 200


def test_parity_failure_writes_nothing(finished_run: FinishedRun, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, dataset, _ = finished_run
    other = build_network()  # untrained: a genuinely different network
    other(keras.ops.zeros((1, 28, 28, 1)))
    real_convert = export.convert_to_onnx
    monkeypatch.setattr(export, "convert_to_onnx", lambda model, shape: real_convert(other, shape))
    with pytest.raises(ParityError, match="does not reproduce Keras"):
        export.export_winner(run_dir, dataset, tmp_path / "exports")
    assert not (tmp_path / "exports").exists() or not list((tmp_path / "exports").iterdir())


@pytest.mark.slow
def test_verify_cli_passes_then_catches_tampering(exported: Path, finished_run: FinishedRun, tmp_path: Path,
                                                  command: Command) -> None:
    _, _, data_dir = finished_run
    copy_dir = tmp_path / "copy"
    shutil.copytree(exported.parent, copy_dir)
    model = copy_dir / exported.name
    ok = command("verify", str(model), "--data-dir", str(data_dir), "--no-checksum", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "predicted labels identical on 100.00%" in ok.stdout and "verified" in ok.stdout
    card = json.loads(model.with_suffix(".json").read_text())
    card["onnx_sha256"] = "0" * 64
    model.with_suffix(".json").write_text(json.dumps(card))
    assert_one_line_error(command("verify", str(model), "--data-dir", str(data_dir),
                                  "--no-checksum", cwd=tmp_path), "changed after it was verified")
    model.write_bytes(model.read_bytes()[:1000])
    assert_one_line_error(command("verify", str(model), cwd=tmp_path), "not a readable ONNX model")


@pytest.mark.slow
def test_export_cli_on_a_run_dir(finished_run: FinishedRun, tmp_path: Path, command: Command) -> None:
    run_dir, _, data_dir = finished_run
    out = tmp_path / "out"
    out.mkdir()
    killed_writes = [f"{PARTIAL_PREFIX}export-test.onnx-k1ll3d", f"{PARTIAL_PREFIX}export-test.json-k1ll3d"]
    for name in [*killed_writes, f"{PARTIAL_PREFIX}another.onnx-k1ll3d", ".export-test.onnx.notes.tmp"]:
        (out / name).write_bytes(b"half")  # left by killed exports of this name and another, and a user's file
    (out / f"{PARTIAL_PREFIX}export-test.keras-k1ll3d").mkdir()
    (out / f"{PARTIAL_PREFIX}export-test.keras-k1ll3d" / "export-test.keras").write_bytes(b"half")
    result = command("export", str(run_dir), "--exports-dir", str(tmp_path / "out"), "--data-dir",
                     str(data_dir), "--no-checksum", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "parity on 200 test images" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([  # the same name's leftovers swept, another's kept
        f"{PARTIAL_PREFIX}another.onnx-k1ll3d", ".export-test.lock", ".export-test.onnx.notes.tmp", "export-test.json",
        "export-test.keras", "export-test.onnx", "export-test.md", "export-test.evaluation.json"])
    assert_one_line_error(command("export", str(tmp_path / "nothing"), cwd=tmp_path),
                          "is not a run directory")
    (tmp_path / "unfinished").mkdir()
    assert_one_line_error(command("export", str(tmp_path / "unfinished"), cwd=tmp_path),
                          "results.json is missing")


def test_augmented_models_export_without_their_random_layers(finished_run: FinishedRun) -> None:
    """Regression: random augmentation ops used to be traced into the graph and fail the checker."""
    from kmnist_search.search.hypermodel import Architecture

    _, dataset, _ = finished_run
    trained = build_network(architecture=Architecture(augment=0.1, cutout=0.5, batch_norm=True))
    trained(keras.ops.zeros((1, 28, 28, 1)))
    inference = export.without_augmentation(trained)
    assert not [layer for layer in inference.layers if layer.name.startswith("augment_")]
    proto = export.convert_to_onnx(inference, (28, 28))
    assert not [node for node in proto.graph.node if "Random" in node.op_type]
    report = export.measure_parity(export.session_from_proto(proto), trained, dataset.test_images,
                                   dataset.test_labels)
    assert report.passes()


@pytest.mark.slow
def test_a_residual_network_with_augmentation_exports_exactly(finished_run: FinishedRun) -> None:
    """The augmentation layers are cut out of a non-sequential graph too, residual branches intact."""
    from kmnist_search.search.hypermodel import Architecture

    _, dataset, _ = finished_run
    trained = build_network(architecture=Architecture(network="preact_resnet", resnet_depth=8, resnet_width=4,
                                                      augment=0.1, cutout=0.5, cutout_area=0.25))
    trained.fit(dataset.test_images[..., None], keras.utils.to_categorical(dataset.test_labels, 10), epochs=1,
                verbose=0)
    inference = export.without_augmentation(trained)
    assert not [layer for layer in inference.layers if layer.name.startswith("augment_")]
    proto = export.convert_to_onnx(inference, (28, 28))
    report = export.measure_parity(export.session_from_proto(proto), trained, dataset.test_images,
                                   dataset.test_labels)
    assert report.passes()


def copied_export(exported: Path, tmp_path: Path) -> Path:
    copy_dir = tmp_path / "copy"
    shutil.copytree(exported.parent, copy_dir)
    return copy_dir / exported.name


def edit_card(model: Path, edit: Any) -> None:
    card = json.loads(model.with_suffix(".json").read_text())
    edit(card)
    model.with_suffix(".json").write_text(json.dumps(card))


def test_verify_measures_the_figures_again_and_catches_an_edited_card(exported: Path, finished_run: FinishedRun,
                                                                     tmp_path: Path) -> None:
    _, dataset, _ = finished_run
    model = copied_export(exported, tmp_path)
    assert pipeline.verify(model, dataset=dataset).passed
    edit_card(model, lambda card: card["metrics"].update(test_accuracy=card["metrics"]["test_accuracy"] - 0.05))
    with pytest.raises(ParityError, match=r"test accuracy measured .*, card says"):
        pipeline.verify(model, dataset=dataset)


def test_a_card_cannot_loosen_the_rule_verify_applies(exported: Path, finished_run: FinishedRun,
                                                      tmp_path: Path) -> None:
    _, dataset, _ = finished_run
    model = copied_export(exported, tmp_path)
    keras_path = model.with_suffix(".keras")
    swapped = keras.models.load_model(keras_path)
    swapped.set_weights([w[::-1].copy() if w.ndim else w for w in swapped.get_weights()])  # another model
    swapped.save(keras_path)
    edit_card(model, lambda card: card["parity"]["rule"].update(min_label_agreement=0.0, max_accuracy_drop=1.0,
                                                                max_abs_probability_diff=None))
    verification = pipeline.verify(model, dataset=dataset, raise_on_failure=False)
    assert not verification.passed
    assert verification.rule == EXACT  # the package's rule for float32, not the card's


def test_the_strictest_rule_wins() -> None:
    loose = ParityRule(min_label_agreement=0.5, max_accuracy_drop=0.5, max_abs_probability_diff=None)
    tight = ParityRule(min_label_agreement=0.999, max_accuracy_drop=0.001, max_abs_probability_diff=1e-6)
    assert strictest(INT8, loose) == INT8
    assert strictest(INT8, tight) == tight
    assert strictest(EXACT, loose) == EXACT


@pytest.mark.parametrize("edit, message", [
    (lambda card: card["metrics"].update(test_accuracy=float("nan")), "holds NaN, not a number"),
    (lambda card: card["parity"].update({key: float("nan") for key in card["parity"]
                                         if isinstance(card["parity"][key], float)}), "holds NaN, not a number"),
    (lambda card: card.update(classes=card["classes"][:3]), "lists 3 classes for a model with 10 outputs"),
    (lambda card: card.update(onnx_file="another.onnx"), "names 'another.onnx' as its file"),
    (lambda card: card["classes"][0].update(character="<script>"), "its classes are not kmnist's"),
])
def test_verify_believes_no_card_that_contradicts_its_model(exported: Path, finished_run: FinishedRun,
                                                            tmp_path: Path, edit: Any, message: str) -> None:
    for suffix in (".onnx", ".json", ".keras"):
        shutil.copy(exported.with_suffix(suffix), tmp_path / f"export-test{suffix}")
    card = json.loads((tmp_path / "export-test.json").read_text())
    edit(card)
    (tmp_path / "export-test.json").write_text(json.dumps(card))  # Python writes NaN as the bare word
    with pytest.raises(ModelFileError, match=re.escape(message)):
        pipeline.verify(tmp_path / "export-test.onnx", dataset=finished_run[1])


def test_a_card_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    from kmnist_search.export.card import read_card

    card = tmp_path / "deep.json"
    card.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFileError, match="is not a model card \\(it is nested too deeply\\)"):
        read_card(card)


@pytest.mark.slow  # two exports
def test_two_exports_of_the_same_weights_are_the_same_bytes(finished_run: FinishedRun, tmp_path: Path) -> None:
    run_dir, dataset, _ = finished_run
    copy = shutil.copytree(run_dir, tmp_path / "run")  # the session's run keeps its own export record
    first = pipeline.export(copy, dataset=dataset, exports_dir=tmp_path / "a", name="again")
    second = pipeline.export(copy, dataset=dataset, exports_dir=tmp_path / "b", name="again")
    assert file_digest(first.onnx_path) == file_digest(second.onnx_path)
    assert "created_at" in first.card and "created_at" not in Classifier(first.onnx_path).card
