"""onnxruntime-only inference: the Classifier API, image conversion, the predict CLI and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from PIL import Image

from kmnist_search.base.errors import InputImageError, ModelFileError
from kmnist_search.export.inference import Classifier, predict_files, prepare_image, read_array, read_image
from tests.cli import assert_one_line_error, run_cli
from tests.conftest import FinishedRun

REPO = Path(__file__).resolve().parents[1]


def test_inference_path_imports_no_tensorflow() -> None:
    code = ("import sys, kmnist_search.export.inference, kmnist_search.predict; "
            "heavy = [m for m in ('tensorflow', 'keras', 'keras_tuner', 'tf2onnx') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_classifier_matches_the_model_card_accuracy(exported: Path, finished_run: FinishedRun) -> None:
    _, dataset, _ = finished_run
    classifier = Classifier(exported)
    assert classifier.image_size == (28, 28) and len(classifier.classes) == 10
    predictions = classifier.predict(dataset.test_images)
    accuracy = np.mean([p.label.index == y for p, y in zip(predictions, dataset.test_labels, strict=True)])
    assert accuracy == pytest.approx(classifier.card["parity"]["onnx_accuracy"])
    first = predictions[0]
    assert first.top[0][0] == first.label and first.probability == pytest.approx(first.top[0][1])
    assert first.probability >= first.top[1][1] >= first.top[2][1]


def test_prepare_image_converts_and_says_so() -> None:
    ink = np.zeros((28, 28), np.uint8)
    ink[8:20, 10:14] = 255
    same, notes = prepare_image(Image.fromarray(ink))
    assert notes == [] and np.array_equal(same, ink)
    paper = Image.fromarray(255 - ink).convert("RGB").resize((56, 56), Image.Resampling.NEAREST)
    converted, notes = prepare_image(paper)
    assert notes[:2] == ["converted RGB to grayscale", "inverted (dark ink on light paper; KMNIST is white on black)"]
    assert len(notes) == 3 and notes[2].startswith("resized 56x56 to 28x28 as KMNIST's images were made")
    assert converted.shape == (28, 28) and converted[2, 2] < 30
    rows, columns = np.nonzero(converted > 128)  # the 24x8 bar, scaled to fill the frame's height, centred
    assert rows.max() - rows.min() + 1 >= 27 and 8 <= columns.max() - columns.min() + 1 <= 11
    assert abs((columns.min() + columns.max()) / 2 - 13.5) <= 1


def test_predict_cli_on_pngs_and_arrays(exported: Path, finished_run: FinishedRun,
                                        tmp_path: Path) -> None:
    _, dataset, _ = finished_run
    Image.fromarray(dataset.test_images[0]).save(tmp_path / "a.png")
    np.save(tmp_path / "two.npy", dataset.test_images[:2])
    result = run_cli("kmnist_search.predict", str(exported), str(tmp_path / "a.png"), str(tmp_path / "two.npy"),
                     "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["source"] for r in rows] == [str(tmp_path / "a.png"), f"{tmp_path / 'two.npy'}[0]",
                                           f"{tmp_path / 'two.npy'}[1]"]
    assert rows[0]["index"] == rows[1]["index"]  # the PNG and the array hold the same image
    assert len(rows[0]["top"]) == 3 and rows[0]["character"] in "おきすつなはまやれを"
    text = run_cli("kmnist_search.predict", str(exported), str(tmp_path / "a.png"), cwd=tmp_path)
    assert text.returncode == 0 and f"a.png: {rows[0]['character']} (" in text.stdout


@pytest.mark.slow
def test_bad_inputs_give_one_line_errors(exported: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    np.save(tmp_path / "wide.npy", np.zeros((2, 28, 30), np.uint8))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported.read_bytes()[:5000])
    cases = [
        ((str(exported),), "no inputs"),
        ((str(exported), str(tmp_path / "notes.png")), "not a readable image"),
        ((str(exported), str(tmp_path)), "is a directory"),
        ((str(exported), str(tmp_path / "wide.npy")), "shape (2, 28, 30)"),
        ((str(truncated), str(tmp_path / "notes.png")), "not a readable ONNX model"),
        ((str(tmp_path / "absent.onnx"), str(tmp_path / "notes.png")), "does not exist"),
    ]
    for args, fragment in cases:
        assert_one_line_error(run_cli("kmnist_search.predict", *args, cwd=tmp_path), fragment)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    Image.new("L", (5000, 5000)).save(path)
    with pytest.raises(InputImageError, match="decompression bomb"):
        read_image(path)
    Image.new("L", (20000, 20000)).save(path)  # so large that Pillow itself refuses to open it
    with pytest.raises(InputImageError, match=r"too many pixels to open, over the 16,777,216-pixel limit .*shrink"):
        read_image(path)


def test_array_checks() -> None:
    with pytest.raises(InputImageError, match=r"values in -1\.\.-1"):
        _check_array(np.full((1, 28, 28), -1, np.int16))
    assert _check_array(np.zeros((28, 28), np.uint8)).shape == (1, 28, 28)
    assert _check_array(np.zeros((3, 28, 28, 1), np.float32)).shape == (3, 28, 28)


def _check_array(array: np.ndarray) -> np.ndarray:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "a.npy"
        np.save(path, array)
        return read_array(path, (28, 28))


def test_model_with_another_input_shape_is_refused(tmp_path: Path) -> None:
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph(
        [node], "rgb",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3, 32, 32])])
    path = tmp_path / "rgb.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelFileError, match=r"not \(batch, height, width, 1\) grayscale"):
        Classifier(path)


def test_predict_files_keeps_order(exported: Path, finished_run: FinishedRun, tmp_path: Path) -> None:
    _, dataset, _ = finished_run
    for index in range(3):
        Image.fromarray(dataset.test_images[index]).save(tmp_path / f"{index}.png")
    classifier = Classifier(exported)
    by_file = predict_files(classifier, [tmp_path / f"{i}.png" for i in range(3)])
    direct = classifier.predict(dataset.test_images[:3])
    assert [p.label.index for p in by_file] == [p.label.index for p in direct]


def photo_of(character: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A 300x220 'photo' of a test character: dark ink on grey paper with noise, enlarged, off centre."""
    ink = np.asarray(Image.fromarray(character).resize((150, 150), Image.Resampling.BICUBIC), dtype=np.float32)
    paper = 200 + rng.normal(0, 6, (220, 300))
    paper[30:180, 120:270] -= ink * 0.7
    return Image.fromarray(np.uint8(np.clip(paper, 0, 255)))


@pytest.mark.real_data
def test_photos_are_framed_as_kmnist_and_beat_squashing(real_data_dir: Path) -> None:
    from kmnist_search.data.datasets import load_dataset

    data = load_dataset("kmnist", real_data_dir)
    classifier = Classifier(Path(__file__).resolve().parents[1] / "exports" / "kmnist-reference.onnx")
    rng = np.random.default_rng(0)
    framed_right = squashed_right = 0
    framed_confidence, squashed_confidence = [], []
    for index in range(40):
        photo, label = photo_of(data.test_images[index], rng), int(data.test_labels[index])
        framed = classifier.predict([photo])[0]
        squashed = 255 - np.asarray(photo.resize((28, 28), Image.Resampling.LANCZOS), dtype=np.uint8)
        squashed_p = classifier.predict_proba(squashed)[0]
        framed_right += framed.label.index == label
        squashed_right += int(squashed_p.argmax()) == label
        framed_confidence.append(dict((c.index, p) for c, p in framed.top).get(label, 0.0))
        squashed_confidence.append(float(squashed_p[label]))
    assert framed_right >= 36 and framed_right > squashed_right
    assert np.mean(framed_confidence) > np.mean(squashed_confidence) + 0.1


def test_the_api_accepts_what_the_cli_accepts(exported: Path, finished_run: FinishedRun, tmp_path: Path) -> None:
    _, dataset, _ = finished_run
    classifier = Classifier(exported)
    one = dataset.test_images[0]
    assert classifier.predict_proba(one).shape == (1, 10)  # (28, 28), as a .npy file may hold it
    assert np.allclose(classifier.predict_proba(one), classifier.predict_proba(one[np.newaxis, ..., np.newaxis]))
    assert classifier.predict(one)[0].label.index == int(classifier.predict_proba(one).argmax())
    np.save(tmp_path / "one.npy", one)
    from_file = predict_files(classifier, [tmp_path / "one.npy"])
    assert from_file[0].label == classifier.predict(one)[0].label
    with pytest.raises(InputImageError) as error:
        classifier.predict_proba(np.zeros((2, 28, 30)))
    message = str(error.value)
    assert "(28, 28), (N, 28, 28) and (N, 28, 28, 1)" in message and "prepare_image" not in message
    entry = from_file[0].to_dict()["top"][0]
    assert set(entry) == {"index", "character", "codepoint", "romanized", "probability"}


def test_one_input_path_for_every_kind_of_image(exported: Path, finished_run: FinishedRun, tmp_path: Path) -> None:
    """A PIL image, a path, an array, alone or in a list: each gives what the CLI gives for that image."""
    _, dataset, _ = finished_run
    classifier = Classifier(exported)
    image = dataset.test_images[0]
    expected = classifier.predict(image)[0]
    on_paper = Image.fromarray(255 - image)  # the same character, dark ink on white
    alone, listed = classifier.predict(on_paper)[0], classifier.predict([on_paper])[0]
    assert alone.label == listed.label == expected.label and alone.probability == listed.probability
    assert "inverted (dark ink on light paper; KMNIST is white on black)" in alone.notes
    Image.fromarray(image).save(tmp_path / "character.png")
    for given in (str(tmp_path / "character.png"), tmp_path / "character.png", [tmp_path / "character.png"],
                  [image], image[np.newaxis, ..., np.newaxis]):
        assert classifier.predict(given)[0].probability == pytest.approx(expected.probability)  # type: ignore[arg-type]
    assert classifier.predict(on_paper.resize((112, 112)))[0].notes[-1].startswith("resized 112x112 to 28x28")
    mixed = classifier.predict([on_paper, tmp_path / "character.png", dataset.test_images[:2]])
    assert [p.source for p in mixed] == ["image 0", str(tmp_path / "character.png"), "image 2", "image 3"]
    assert len(classifier.predict(image, top_k=100)[0].top) == 10
    for top_k in (0, -1):
        with pytest.raises(InputImageError, match=f"top_k={top_k}: must be at least 1"):
            classifier.predict(image, top_k=top_k)
    with pytest.raises(InputImageError, match="2 source names for 1 images"):
        classifier.predict(image, sources=["a", "b"])
    with pytest.raises(InputImageError, match="item 0 is a list"):
        classifier.predict([[[0] * 28] * 28])  # type: ignore[list-item]


def test_fractions_are_scaled_and_blank_images_are_flagged(exported: Path, finished_run: FinishedRun,
                                                           tmp_path: Path) -> None:
    _, dataset, _ = finished_run
    classifier = Classifier(exported)
    images = dataset.test_images[:5]
    as_bytes = classifier.predict(images)
    as_fractions = classifier.predict(images.astype(np.float32) / 255)
    assert [p.label for p in as_fractions] == [p.label for p in as_bytes]
    assert all(p.notes == ["scaled from 0..1 to 0..255"] for p in as_fractions)
    assert [p.probability for p in as_fractions] == pytest.approx([p.probability for p in as_bytes], abs=1e-5)
    blank = classifier.predict(np.stack([np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)]))
    assert all(p.blank and p.to_dict()["blank"] for p in blank) and not as_bytes[0].blank
    np.save(tmp_path / "blank.npy", np.zeros((1, 28, 28), np.uint8))
    result = run_cli("kmnist_search.predict", str(exported), str(tmp_path / "blank.npy"), "--json", cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout)[0]["blank"] is True


def _ink() -> np.ndarray:
    """White ink on black, 40x40, no symmetry (a turn shows)."""
    ink = np.zeros((40, 40), np.uint8)
    ink[5:35, 8:14] = 255
    ink[28:35, 8:30] = 255
    return ink


def test_image_files_are_read_as_a_viewer_shows_them(tmp_path: Path) -> None:
    upright = prepare_image(Image.fromarray(_ink()))[0]
    turned = Image.fromarray(_ink()).transpose(Image.Transpose.ROTATE_90)  # stored turned, shown upright
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show"
    turned.save(tmp_path / "turned.png", exif=exif)
    pixels, notes = prepare_image(read_image(tmp_path / "turned.png"))
    assert np.array_equal(pixels, upright) and "turned upright as its EXIF orientation says" in notes
    Image.fromarray(_ink().astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit grayscale
    deep = read_image(tmp_path / "deep.png")
    assert deep.mode.startswith("I")
    assert np.array_equal(prepare_image(deep)[0], upright)
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 3] = _ink()  # black ink on a transparent background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "transparent.png")
    pixels, notes = prepare_image(read_image(tmp_path / "transparent.png"))
    assert np.array_equal(pixels, upright) and notes[0].endswith("its transparent background as paper")
    frames = [Image.fromarray(_ink()), Image.fromarray(255 - _ink())]
    frames[0].save(tmp_path / "two.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(InputImageError, match=r"two.gif has 2 frames .*: pass one image per file"):
        read_image(tmp_path / "two.gif")
    np.save(tmp_path / "durations.npy", np.zeros((1, 28, 28), "timedelta64[s]"))
    with pytest.raises(InputImageError, match="holds timedelta64"):
        read_array(tmp_path / "durations.npy", (28, 28))


def test_predictions_run_in_bounded_batches(exported: Path, finished_run: FinishedRun) -> None:
    """Memory does not grow with the input: onnxruntime never sees more than BATCH images at once."""
    from kmnist_search.export.inference import BATCH

    _, dataset, _ = finished_run
    classifier = Classifier(exported)
    images = np.concatenate([dataset.test_images] * (2 * BATCH // len(dataset.test_images) + 2))[:2 * BATCH + 7]
    whole = classifier.session.run(None, {classifier.input_name: images.astype(np.float32)[..., np.newaxis]})[0]
    seen: list[int] = []
    session = classifier.session

    class Recording:
        def run(self, names: Any, feeds: dict[str, np.ndarray]) -> Any:
            seen.append(len(next(iter(feeds.values()))))
            return session.run(names, feeds)

    classifier.session = Recording()  # type: ignore[assignment]
    probabilities = classifier.predict_proba(images)
    assert seen == [BATCH, BATCH, 7] and np.allclose(probabilities, whole, atol=1e-6)
