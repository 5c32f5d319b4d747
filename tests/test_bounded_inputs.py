"""Every input checked before work starts, with bounded memory and time: space files, data files,
prediction inputs, ONNX models, and run directories whose state files were damaged from outside."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kmnist_search import pipeline
from kmnist_search.base.errors import DataError, InputImageError, ModelFileError, RunError, SpaceError
from kmnist_search.base.files import PARTIAL_PREFIX
from kmnist_search.data import run_guard
from kmnist_search.data.contract import MODEL_CARD_KEY
from kmnist_search.data.datasets import KMNIST, load_dataset
from kmnist_search.data.rundir import RunDir
from kmnist_search.data.spaces import MAX_CONFIGURATIONS, load_space, parse_space
from kmnist_search.export.inference import Classifier, predict_files, read_image
from kmnist_search.report.summarize import load_run
from kmnist_search.search.plan import describe_plan
from tests.conftest import EXPORT_TEST_SPACE, FinishedRun, write_kmnist_files

SHIPPED = Path(__file__).resolve().parents[1] / "exports" / "kmnist-reference.onnx"


def space_with(**hyperparameters: object) -> dict[str, object]:
    return {"name": "bounded", "hyperparameters": {"learning_rate": [0.1], "batch_size": [32],
                                                   "loss": ["categorical_crossentropy"], **hyperparameters},
            "training": {"epochs": 1}}


def test_a_space_of_a_billion_configurations_is_refused_at_once(tmp_path: Path) -> None:
    values = list(range(1, 1001))
    huge = tmp_path / "huge.toml"
    huge.write_text(f'name = "huge"\n[hyperparameters]\nlearning_rate = {[v / 1000 for v in values]}\n'
                    f"batch_size = {values}\ndense_units = {values}\nloss = [\"categorical_crossentropy\"]\n"
                    "[training]\nepochs = 1\n")
    assert huge.stat().st_size < 20_000
    with pytest.raises(SpaceError, match=f"1,000,000,000 configurations, over the limit of {MAX_CONFIGURATIONS:,}"):
        load_space(str(huge))


def test_the_dry_run_lists_a_bounded_number_of_rows() -> None:
    space = parse_space(space_with(dense_units=list(range(1, 1001)), batch_size=[8, 16, 32, 64]))
    text = describe_plan(space, "grid", None, 50_000)
    assert "and 3,800 more configurations" in text and len(text.splitlines()) < 220


def test_an_oversized_space_file_or_a_pipe_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * 1_100_000)
    with pytest.raises(SpaceError, match="over the 1,000,000-byte limit"):
        load_space(str(big))
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(SpaceError, match="is not a regular file"):
        load_space(str(fifo))


@pytest.mark.parametrize(("hyperparameter", "value", "message"), [
    ("conv_layers", "32-p-p-p-p-p", "leaves a 28x28 image at least 1 pixel wide"),
    ("dense_units", 1_000_000_000, "from 1 to 65,536"),
    ("batch_size", 10**12, "from 1 to 65,536"),
    ("resnet_width", 10**9, "from 1 to 1,024"),
    ("resnet_depth", 6 * 10**6 + 2, "up to 200"),
])
def test_architectures_that_cannot_be_built_are_refused_with_key_and_value(hyperparameter: str, value: object,
                                                                           message: str) -> None:
    with pytest.raises(SpaceError, match=f"{hyperparameter} has invalid value {value!r}.*{message}"):
        parse_space(space_with(**{hyperparameter: [value]}))


def zip_bomb(path: Path, shape: tuple[int, ...]) -> None:
    """An npz whose arr_0 unpacks to far more than the file's size."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.zeros(shape, dtype=np.uint8))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("arr_0.npy", buffer.getvalue())


@pytest.mark.slow
def test_a_zip_bomb_in_the_data_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    data_dir = write_kmnist_files(tmp_path / "data")
    bomb = data_dir / KMNIST.files["train_images"].name
    zip_bomb(bomb, (600_000, 28, 28))  # 470 MB of zeros in well under 1 MB
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(DataError, match="unpacks to 470,400,128 bytes, over the 54,880,000-byte limit"):
        load_dataset("kmnist", data_dir, verify_checksums=False)


def npy_claiming(path: Path, shape: tuple[int, ...]) -> None:
    """An .npy whose header claims ``shape`` but holds (almost) no data."""
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False, "shape": shape})
        handle.write(b"\0" * 16)


def test_a_header_claiming_a_trillion_items_is_refused(tmp_path: Path) -> None:
    data_dir = write_kmnist_files(tmp_path / "data")
    fake = tmp_path / "arr_0.npy"
    npy_claiming(fake, (10**12,))
    target = data_dir / KMNIST.files["test_labels"].name
    with zipfile.ZipFile(target, "w") as archive:
        archive.write(fake, "arr_0.npy")
    with pytest.raises(DataError, match="claims 1,000,000,000,000 items"):
        load_dataset("kmnist", data_dir, verify_checksums=False)
    with pytest.raises(InputImageError, match="claims 1,000,000,000,000 items"):
        predict_files(Classifier(SHIPPED), [fake])


def test_an_empty_test_set_is_refused_before_any_training(tmp_path: Path) -> None:
    data_dir = write_kmnist_files(tmp_path / "data", test_per_class=0)
    with pytest.raises(DataError, match="the test set holds no images"):
        load_dataset("kmnist", data_dir, verify_checksums=False)


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((0, 28, 28), np.uint8), "holds no images"),
    (np.full((1, 28, 28), np.nan, np.float32), "NaN or infinite"),
    (np.zeros((1, 28, 28), np.complex64), "complex64 values"),
])
def test_predict_refuses_empty_nan_and_complex_arrays(array: np.ndarray, message: str, tmp_path: Path) -> None:
    path = tmp_path / "input.npy"
    np.save(path, array)
    classifier = Classifier(SHIPPED)
    with pytest.raises(InputImageError, match=message):
        predict_files(classifier, [path])
    with pytest.raises(InputImageError, match=message):
        classifier.predict_proba(array)


@pytest.mark.parametrize("name", ["input.npy", "input.png"])
def test_predict_refuses_a_pipe_instead_of_hanging(name: str, tmp_path: Path) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)
    with pytest.raises(InputImageError, match="not a regular file"):
        predict_files(Classifier(SHIPPED), [fifo])
    with pytest.raises(InputImageError, match="not a regular file"):
        read_image(fifo)


def onnx_model(path: Path, inputs: list[tuple[str, int]], card_text: str | None = None) -> Path:
    graph_inputs = [helper.make_tensor_value_info(n, t, ["batch", 28, 28, 1]) for n, t in inputs]
    output = helper.make_tensor_value_info("out", inputs[0][1], ["batch", 28, 28, 1])
    node = helper.make_node("Identity", [inputs[0][0]], ["out"])
    model = helper.make_model(helper.make_graph([node], "g", graph_inputs, [output]),
                              opset_imports=[helper.make_opsetid("", 17)])
    if card_text is not None:
        helper.set_model_props(model, {MODEL_CARD_KEY: card_text})
    onnx.save(model, str(path))
    return path


def test_a_model_path_that_is_a_pipe_or_too_large_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="is not a regular file"):
        Classifier(fifo)
    huge = tmp_path / "huge.onnx"
    with huge.open("wb") as handle:
        handle.truncate(300 * 2**20)  # sparse: no disk used
    with pytest.raises(ModelFileError, match="over the 268,435,456-byte limit"):
        Classifier(huge)


def test_onnx_models_of_another_kind_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="takes input of type tensor\\(uint8\\)"):
        Classifier(onnx_model(tmp_path / "u8.onnx", [("x", TensorProto.UINT8)]))
    with pytest.raises(ModelFileError, match="takes 2 inputs"):
        Classifier(onnx_model(tmp_path / "two.onnx", [("x", TensorProto.FLOAT), ("y", TensorProto.FLOAT)]))
    for text in ("{not json", "[1, 2]", json.dumps({"schema_version": 2})):
        with pytest.raises(ModelFileError, match="model card"):
            Classifier(onnx_model(tmp_path / "card.onnx", [("x", TensorProto.FLOAT)], card_text=text))


@pytest.mark.parametrize("file", ["space.json", "oracle.json", "trial_0/trial.json", "results.json"])
def test_damaged_state_files_are_named_not_tracebacks(file: str, finished_run: FinishedRun, tmp_path: Path) -> None:
    source, dataset, _ = finished_run
    run_dir = tmp_path / "runs" / source.name
    shutil.copytree(source, run_dir)
    damaged = run_dir / file
    damaged.write_text(damaged.read_text()[:40])
    with pytest.raises(RunError, match=f"{damaged.name} is truncated or not a JSON object"):
        load_run(run_dir)
    if file == "results.json":
        with pytest.raises(RunError, match=r"results.json is truncated or not a JSON object: delete it"):
            pipeline.export(run_dir, dataset=dataset, exports_dir=tmp_path / "exports")
    else:
        (run_dir / "results.json").unlink()
        with pytest.raises(RunError, match=f"{damaged.name} is truncated or not a JSON object"):
            pipeline.search(EXPORT_TEST_SPACE, "grid", dataset=dataset, project_dir=run_dir.parent,
                            name=run_dir.name)


def test_leftovers_of_killed_writes_are_removed_on_resume(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run_guard.prepare(run, {"space": {}, "strategy": "grid", "seed": 42}, overwrite=False)
    (run.path / "trial_0").mkdir()
    (run.path / "trial_0" / "trial.json").write_text("{}")
    kept = [run.path / "space.json", run.path / "trial_0" / "trial.json", run.path / "notes.txt.tmp",
            run.path / "trial_photos" / "holiday.jpg", run.path / ".partial-config"]
    leftovers = [run.path / f"{PARTIAL_PREFIX}results.json-k2j4", run.path / "trial_0" / f"{PARTIAL_PREFIX}x-1",
                 run.path / "report" / f"{PARTIAL_PREFIX}confusion.png-4k2" / "confusion.png"]
    for path in [*kept[2:], *leftovers]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("cut short")
    (run.path / "trial_1").mkdir()  # created, then killed before its trial.json
    removed = run_guard.remove_run_leftovers(run)
    assert sorted(removed) == sorted([*leftovers[:2], leftovers[2].parent, run.path / "trial_1"])
    assert all(path.exists() for path in kept) and not any(path.exists() for path in removed)


def test_a_model_whose_outputs_are_not_probabilities_is_an_error_not_500_percent(tmp_path: Path) -> None:
    pixels = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 28, 28, 1])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10])
    constants = [numpy_helper.from_array(np.array([value], dtype=np.int64), name)
                 for name, value in (("starts", 0), ("ends", 10), ("axes", 1))]
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["scores"])]
    model = helper.make_model(helper.make_graph(nodes, "raw", [pixels], [scores], initializer=constants),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "raw.onnx"))
    classifier = Classifier(tmp_path / "raw.onnx")
    with pytest.raises(ModelFileError, match="returned values that are not class probabilities"):
        classifier.predict_proba(np.full((2, 28, 28), 5.0))


def test_messages_name_what_is_wrong_and_the_folder_read(tmp_path: Path, exported: Path,
                                                         finished_run: FinishedRun) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    for name in ("export-test.onnx", "export-test.json"):
        shutil.copy(exported.with_name(name), exports / name)
    with pytest.raises(RunError, match=r"exports is not a kmnist-search run folder \(it has no space.json\)"):
        load_run(exports)
    _, dataset, _ = finished_run
    with pytest.raises(ModelFileError, match=r"export-test.keras is missing: the export's Keras reference, which "
                                             r"verification compares the ONNX file with, is gone; export the model"):
        pipeline.verify(exports / "export-test.onnx", dataset=dataset)
    empty = tmp_path / "my-data"
    empty.mkdir()
    with pytest.raises(DataError) as error:
        load_dataset("kmnist", empty)
    assert f"--cache-dir {tmp_path}` downloads the official files into {tmp_path / 'kmnist'} (then pass that)" \
        in str(error.value) and "$KMNIST_SEARCH_DATA_DIR" in str(error.value)


@pytest.mark.slow
def test_verify_reads_only_the_test_set(tmp_path: Path, exported: Path, finished_run: FinishedRun) -> None:
    _, _, data_dir = finished_run
    only_test = tmp_path / "test-only"
    only_test.mkdir()
    for name in ("kmnist-test-imgs.npz", "kmnist-test-labels.npz"):
        shutil.copy(data_dir / name, only_test / name)
    assert pipeline.verify(exported, data_dir=only_test, verify_checksums=False).passed
    assert pipeline.evaluate(exported, data_dir=only_test, verify_checksums=False).test_images > 0


def _model_file(path: Path, nodes: list[onnx.NodeProto], image: onnx.ValueInfoProto, output: onnx.ValueInfoProto,
                initializers: tuple[onnx.TensorProto, ...] = ()) -> Path:
    graph = helper.make_graph(nodes, path.stem, [image], [output], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_model_with_a_giant_input_or_one_that_fails_in_onnxruntime_is_one_line(tmp_path: Path) -> None:
    from tests.cli import assert_one_line_error, run_cli

    giant = _model_file(tmp_path / "giant.onnx", [helper.make_node("ReduceMean", ["image"], ["out"], keepdims=0)],
                        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 40000, 40000, 1]),
                        helper.make_tensor_value_info("out", TensorProto.FLOAT, []))
    shape = numpy_helper.from_array(np.array([400000, 1000000], dtype=np.int64), "shape")
    huge = _model_file(tmp_path / "huge.onnx", [
        helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
        helper.make_node("ReduceSum", ["zeros"], ["total"], keepdims=0),
        helper.make_node("Flatten", ["image"], ["flat"]), helper.make_node("Add", ["flat", "total"], ["out"])],
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 28, 28, 1]),
        helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 784]), (shape,))
    image = Path(__file__).resolve().parents[1] / "docs" / "images" / "character.png"
    assert_one_line_error(run_cli("kmnist_search.predict", str(giant), str(image), cwd=tmp_path),
                          "takes 40000x40000 images", "not a kmnist-search model")
    assert_one_line_error(run_cli("kmnist_search.predict", str(huge), str(image), cwd=tmp_path),
                          "failed in onnxruntime", "export it again")


def test_a_project_folder_too_deep_for_the_run_s_files_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    from kmnist_search.data.spaces import load_space
    from kmnist_search.pipeline import MAX_PATH, run_dir_for

    deep = tmp_path / "/".join(["d" * 200] * (MAX_PATH // 201))
    with pytest.raises(RunError, match="choose a shorter --project-dir"):
        run_dir_for(load_space("quick"), "grid", deep, None)
    assert not (tmp_path / ("d" * 200)).exists()


@pytest.mark.slow
def test_damaged_test_predictions_are_one_line(finished_run: FinishedRun, tmp_path: Path) -> None:
    from tests.cli import assert_one_line_error, run_cli

    copy = tmp_path / "run"
    shutil.copytree(finished_run[0], copy)
    predictions = copy / "winner_test_predictions.npz"
    predictions.write_bytes(predictions.read_bytes()[:1000])
    shutil.rmtree(copy / "report", ignore_errors=True)
    assert_one_line_error(run_cli("kmnist_search.summary", str(copy), "--format", "html", cwd=tmp_path),
                          "winner_test_predictions.npz is damaged", "delete it")
