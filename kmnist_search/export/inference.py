"""Prediction with onnxruntime alone: no TensorFlow, no Keras.

Needs only onnxruntime, numpy and Pillow, so it runs in a small install::

    from kmnist_search.export.inference import Classifier
    classifier = Classifier("exports/kmnist-reference.onnx")
    for prediction in classifier.predict(images):   # (N, 28, 28) uint8, or PIL images
        print(prediction.character, prediction.probability)

Every image goes through :func:`prepare_image`, the one conversion used by every caller: to 8-bit
grayscale, inverted if it is dark ink on a light background (KMNIST is white on black), and, unless
it already has the model's size, framed as KMNIST's images were made (cropped to the character,
scaled to fill the 28x28 frame keeping its aspect ratio, centred by mass). Each conversion is reported in
``Prediction.notes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps, UnidentifiedImageError

from kmnist_search.base.arrays import read_bounded_array
from kmnist_search.base.errors import InputImageError, ModelFileError
from kmnist_search.base.files import file_digest
from kmnist_search.data.contract import MODEL_CARD_KEY
from kmnist_search.export.card import card_from_metadata, card_path_for, finish_publication, read_card

MAX_IMAGE_PIXELS = 4096 * 4096  # larger inputs are refused as possible decompression bombs
MAX_IMAGE_FILE_BYTES = 64 * 2**20
MAX_MODEL_BYTES = 256 * 2**20  # kmnist-search's exports are a few MB
MAX_ARRAY_BYTES = 256 * 2**20  # an .npy/.npz input: 42,000 float64 28x28 images, 342,000 uint8 ones
BATCH = 256  # images per onnxruntime call: memory stays flat however many images are passed
ARRAY_SUFFIXES = (".npy", ".npz")
BLANK_NOTE = "blank (no ink to read): the prediction means nothing"
ImageInput = Union[np.ndarray, Image.Image, str, Path]  # noqa: UP007 (a runtime alias)


@dataclass(frozen=True)
class ClassInfo:
    index: int
    character: str
    codepoint: str
    romanized: str


@dataclass
class Prediction:
    """One image's prediction: the best class, its probability, the top k and any conversions made."""

    source: str
    label: ClassInfo
    probability: float
    top: list[tuple[ClassInfo, float]]
    notes: list[str] = field(default_factory=list)

    @property
    def character(self) -> str:
        return self.label.character

    @property
    def blank(self) -> bool:
        """True for an image with no ink: the model answers anyway, but the answer means nothing."""
        return BLANK_NOTE in self.notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "index": self.label.index, "character": self.label.character,
            "codepoint": self.label.codepoint, "romanized": self.label.romanized, "probability": self.probability,
            "top": [{"index": c.index, "character": c.character, "codepoint": c.codepoint, "romanized": c.romanized,
                     "probability": p} for c, p in self.top],
            "notes": self.notes, "blank": self.blank,
        }


PROBABILITY_SUM_TOLERANCE = 1e-3  # softmax in float32, averaged over ensemble members, or behind int8 layers


def are_probabilities(outputs: np.ndarray, images: int) -> bool:
    """True for one row per image of finite values in [0, 1] that sum to 1 (within the tolerance)."""
    return (outputs.ndim == 2 and len(outputs) == images and bool(np.isfinite(outputs).all())
            and bool(((outputs >= 0) & (outputs <= 1 + PROBABILITY_SUM_TOLERANCE)).all())
            and bool((np.abs(outputs.sum(axis=1) - 1) <= PROBABILITY_SUM_TOLERANCE).all()))


MAX_IMAGE_SIDE = 512  # KMNIST is 28 pixels a side, Kuzushiji-Kanji 64


class Classifier:
    """An exported kmnist-search model, run with onnxruntime."""

    def __init__(self, model_path: str | Path) -> None:
        path = Path(model_path)
        finish_publication(path)
        if not path.exists():
            raise ModelFileError(f"{path} does not exist: pass an exported .onnx file (e.g. exports/*.onnx)")
        if not path.is_file():
            raise ModelFileError(f"{path} is not a regular file (a directory, pipe or device): pass an exported "
                                 f".onnx file")
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise ModelFileError(f"{path} is {path.stat().st_size:,} bytes, over the {MAX_MODEL_BYTES:,}-byte limit "
                                 f"for a model: it is not a kmnist-search export")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelFileError(f"{path} is not a readable ONNX model ({first[:160]}): it may be truncated; "
                                 f"export or download it again") from None
        self.path = path
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(f"{path} takes {len(inputs)} inputs, not one batch of images: it is not a "
                                 f"kmnist-search model")
        model_input = inputs[0]
        if model_input.type != "tensor(float)":
            raise ModelFileError(f"{path} takes input of type {model_input.type}, not float32 pixels: it is not a "
                                 f"kmnist-search model")
        self.input_name = model_input.name
        shape = model_input.shape
        if len(shape) != 4 or shape[3] != 1 or not all(isinstance(d, int) for d in shape[1:3]):
            raise ModelFileError(f"{path} takes input of shape {shape}, not (batch, height, width, 1) grayscale: "
                                 f"it is not a kmnist-search model")
        self.image_size: tuple[int, int] = (int(shape[1]), int(shape[2]))
        if max(self.image_size) > MAX_IMAGE_SIDE:
            raise ModelFileError(f"{path} takes {shape[1]}x{shape[2]} images, over the {MAX_IMAGE_SIDE}-pixel side a "
                                 f"character classifier here takes: it is not a kmnist-search model")
        self.card = self._read_card()
        self.classes = [ClassInfo(c["index"], c["character"], c["codepoint"], c["romanized"])
                        for c in self.card.get("classes", [])]
        outputs = self.session.get_outputs()[0].shape[-1]
        if not self.classes and isinstance(outputs, int):
            self.classes = [ClassInfo(i, str(i), "", str(i)) for i in range(outputs)]

    def _read_card(self) -> dict[str, Any]:
        """The model card embedded in the file, checked against the schema ({} for a model without one)."""
        text = self.session.get_modelmeta().custom_metadata_map.get(MODEL_CARD_KEY)
        return card_from_metadata(text, str(self.path)) if text else {}

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for raw-pixel images of the model's size: (H, W), (N, H, W) or (N, H, W, 1),
        run :data:`BATCH` images at a time."""
        batch = image_batch(images, self.image_size, "images")
        return np.concatenate([self._run(batch[start:start + BATCH]) for start in range(0, len(batch), BATCH)])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            pixels = batch.astype(np.float32)[..., np.newaxis]
            outputs = np.asarray(self.session.run(None, {self.input_name: pixels})[0])
        except Exception as error:  # onnxruntime raises its own exception types for a model that cannot run
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelFileError(f"{self.path} failed in onnxruntime ({first[:160]}): it is not a kmnist-search "
                                 f"classifier, or it is broken; export it again") from None
        if not are_probabilities(outputs, len(batch)):
            raise ModelFileError(f"{self.path} returned values that are not class probabilities (one row per image, "
                                 f"each finite, from 0 to 1, summing to 1): it is not a kmnist-search classifier, or "
                                 f"it is broken; export it again")
        return outputs

    def predict(self, images: ImageInput | Sequence[ImageInput], sources: Sequence[str] | None = None,
                top_k: int = 3) -> list[Prediction]:
        """Predict the class of each image, however it is given: a PIL image, an image file's path, a raw-pixel
        array ((H, W), (N, H, W) or (N, H, W, 1)) or an .npy/.npz file of them, or a list mixing these.
        Every image goes through :func:`prepare_inputs`, as the CLI's do."""
        if top_k < 1:
            raise InputImageError(f"top_k={top_k}: must be at least 1")
        prepared = prepare_inputs(images, self.image_size)
        if sources is not None and len(sources) != len(prepared):
            raise InputImageError(f"{len(sources)} source names for {len(prepared)} images: pass one name per image")
        probabilities = self.predict_proba(np.stack([p.pixels for p in prepared]))
        predictions = []
        for index, (item, row) in enumerate(zip(prepared, probabilities, strict=True)):
            order = np.argsort(row)[::-1][:min(top_k, len(self.classes))]
            top = [(self.classes[i], float(row[i])) for i in order]
            name = sources[index] if sources is not None else item.source
            predictions.append(Prediction(name, top[0][0], top[0][1], top, item.notes))
        return predictions


@dataclass(frozen=True)
class PreparedImage:
    """One image as the model takes it (uint8, white ink on black, the model's size) and what was done to it."""

    source: str
    pixels: np.ndarray
    notes: list[str]


def prepare_inputs(images: ImageInput | Sequence[ImageInput], size: tuple[int, int]) -> list[PreparedImage]:
    """Every image of ``images`` (see :meth:`Classifier.predict`) as the model's input, in order."""
    items: Sequence[ImageInput] = [images] if isinstance(images, (np.ndarray, Image.Image, str, Path)) else images
    prepared: list[PreparedImage] = []
    for index, item in enumerate(items):
        if isinstance(item, Image.Image):
            pixels, notes = prepare_image(item, size)
            prepared.append(_flagged(PreparedImage(f"image {len(prepared)}", pixels, notes)))
        elif isinstance(item, (str, Path)):
            prepared.extend(_flagged(p) for p in prepare_file(Path(item), size))
        elif isinstance(item, np.ndarray):
            prepared.extend(_flagged(p) for p in prepare_array(item, size, f"image {index}", len(prepared)))
        else:
            raise InputImageError(f"item {index} is a {type(item).__name__}: pass PIL images, image file paths or "
                                  f"raw-pixel numpy arrays")
    if not prepared:
        raise InputImageError("no images: pass at least one")
    return prepared


def _flagged(image: PreparedImage) -> PreparedImage:
    """The image, with the blank note if it has no ink (every pixel the same)."""
    if int(image.pixels.max()) - int(image.pixels.min()) < 1:
        return PreparedImage(image.source, image.pixels, [*image.notes, BLANK_NOTE])
    return image


def prepare_file(path: Path, size: tuple[int, int]) -> list[PreparedImage]:
    """An image file, or every image of an .npy/.npz array file."""
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return prepare_array(read_array(path, size), size, f"{path} holds an array that", 0, str(path))
    pixels, notes = prepare_image(read_image(path), size)
    return [PreparedImage(str(path), pixels, notes)]


def prepare_array(array: np.ndarray, size: tuple[int, int], what: str, first: int,
                  source: str | None = None) -> list[PreparedImage]:
    """Raw-pixel images of the model's size (KMNIST's convention: white ink on black, 0..255); an array of
    fractions (floats, none above 1) is scaled to 0..255 and said so."""
    batch = image_batch(array, size, what)
    notes = []
    if batch.dtype == np.bool_ or (np.issubdtype(batch.dtype, np.floating) and float(batch.max()) <= 1.0):
        batch = batch.astype(np.float64) * 255
        notes.append("scaled from 0..1 to 0..255")
    pixels = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
    if source is not None:
        names = [f"{source}[{i}]" for i in range(len(pixels))] if len(pixels) > 1 else [source]
    else:
        names = [f"image {first + i}" for i in range(len(pixels))]
    return [PreparedImage(name, image, list(notes)) for name, image in zip(names, pixels, strict=True)]


def prepare_image(image: Image.Image, size: tuple[int, int] = (28, 28)) -> tuple[np.ndarray, list[str]]:
    """Convert any PIL image to the model's input: 8-bit grayscale, white ink on black, H x W.

    The image is first turned as its EXIF orientation says, a transparent background becomes paper, and
    16-bit or floating-point grayscale is scaled to 8 bits (not clipped). An image of the model's size is
    then taken as it is (it is already a KMNIST-style image). A photo or a scan of another size is framed
    the way KMNIST's images were made: its contrast stretched from the paper to the darkest ink, cropped
    to the character, scaled to fill the frame keeping its aspect ratio, and centred by its centre of
    mass. Returns the uint8 array and a list of the conversions made, to tell the user.
    """
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise InputImageError(f"the image has {frames} frames (an animation or a multi-page file): pass one "
                              f"image per file")
    notes = []
    orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
        notes.append("turned upright as its EXIF orientation says")
    array, note = _grayscale(image)
    if note:
        notes.append(note)
    if array.mean() > 127:
        notes.append("inverted (dark ink on light paper; KMNIST is white on black)")
        array = 255 - array
    if array.shape == size:
        return array, notes
    notes.append(f"resized {image.size[0]}x{image.size[1]} to {size[1]}x{size[0]} as KMNIST's images were made: "
                 f"cropped to the character, scaled to fill the frame keeping its aspect ratio, centred by mass")
    return frame_character(array, size), notes


def _grayscale(image: Image.Image) -> tuple[np.ndarray, str | None]:
    """The image as 8-bit grayscale, and what that took (None for an 8-bit grayscale image)."""
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8), None
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 or image.mode.startswith("I;16") else 255.0
        note = f"converted {image.mode} to 8-bit grayscale (scaled, not clipped)"
        return np.clip(np.rint(values * 255 / top), 0, 255).astype(np.uint8), note
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InputImageError("the image holds NaN or infinite values: pass an image of finite pixels")
        scale = 255.0 if values.max() <= 1.0 else 1.0
        return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "converted floating-point pixels to 8 bits"
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba, dtype=np.float64)[..., 3] / 255
        if alpha.min() == 1.0:  # nothing is transparent
            return np.asarray(image.convert("L"), dtype=np.uint8), f"converted {image.mode} to grayscale"
        gray = np.asarray(rgba.convert("L"), dtype=np.float64)
        opaque = alpha > 0.5
        dark_ink = not opaque.any() or float(gray[opaque].mean()) < 128
        paper = 255.0 if dark_ink else 0.0  # the background that shows the ink
        blended = gray * alpha + paper * (1 - alpha)
        return (np.clip(np.rint(blended), 0, 255).astype(np.uint8),
                f"converted {image.mode} to grayscale, its transparent background as paper")
    return np.asarray(image.convert("L"), dtype=np.uint8), f"converted {image.mode} to grayscale"


def frame_character(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """White-on-black ink of any size -> the character cropped to its ink, scaled to fill the frame
    along its longer side (as KMNIST's characters fill theirs), and placed by its centre of mass along
    the shorter side, kept inside the frame (a blank image stays blank)."""
    background, peak = float(np.median(array)), float(array.max())
    if peak - background < 1:
        return np.zeros(size, dtype=np.uint8)
    ink = np.clip((array.astype(np.float32) - background) / (peak - background), 0.0, 1.0)
    rows, columns = np.nonzero(ink > 0.5)
    crop = ink[rows.min():rows.max() + 1, columns.min():columns.max() + 1]
    scale = min(size[0] / crop.shape[0], size[1] / crop.shape[1])
    width, height = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    resized = Image.fromarray((crop * 255).astype(np.uint8)).resize((width, height), Image.Resampling.LANCZOS)
    fitted = np.asarray(resized, dtype=np.float32)
    top = _offset_by_mass(fitted.sum(axis=1), size[0])
    left = _offset_by_mass(fitted.sum(axis=0), size[1])
    frame = np.zeros(size, dtype=np.float32)
    frame[top:top + height, left:left + width] = fitted
    return np.clip(frame, 0, 255).astype(np.uint8)


def _offset_by_mass(profile: np.ndarray, length: int) -> int:
    """Where to place ``profile`` in ``length`` pixels so its centre of mass sits at the middle, as far
    as the frame allows."""
    total = float(profile.sum())
    centre = float((profile * np.arange(len(profile))).sum() / total) if total > 0 else (len(profile) - 1) / 2
    return int(np.clip(round((length - 1) / 2 - centre), 0, length - len(profile)))


def read_image(path: Path) -> Image.Image:
    """Open an image file safely, with one-line errors for the ways it can fail."""
    if path.is_dir():
        raise InputImageError(f"{path} is a directory: pass image files (or .npy/.npz arrays)")
    if not path.exists():
        raise InputImageError(f"{path} does not exist")
    if not path.is_file():
        raise InputImageError(f"{path} is not a regular file (a pipe or a device): pass image files")
    if path.stat().st_size > MAX_IMAGE_FILE_BYTES:
        raise InputImageError(f"{path} is {path.stat().st_size:,} bytes, over the {MAX_IMAGE_FILE_BYTES:,}-byte "
                              f"limit for an image file: shrink it first")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InputImageError(f"{path} is {width}x{height} pixels, over the {MAX_IMAGE_PIXELS:,}-pixel "
                                      f"limit (a possible decompression bomb): crop or shrink it first")
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise InputImageError(f"{path} has {frames} frames (an animation or a multi-page file): pass one "
                                      f"image per file")
            image.load()
            return image.copy()
    except InputImageError:
        raise
    except Image.DecompressionBombError:  # Pillow refuses to even open it: far over MAX_IMAGE_PIXELS
        raise InputImageError(f"{path} has too many pixels to open, over the {MAX_IMAGE_PIXELS:,}-pixel limit (a "
                              f"possible decompression bomb): crop or shrink it first") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputImageError(f"{path} is not a readable image ({type(error).__name__}): pass a PNG or JPEG, "
                              f"or a .npy/.npz array of 28x28 images") from None


def read_array(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Read (H, W), (N, H, W) or (N, H, W, 1) raw-pixel images from .npy or .npz (first array), no pickles,
    at most MAX_ARRAY_BYTES of data."""
    array = read_bounded_array(path, MAX_ARRAY_BYTES, InputImageError,
                               fix=": pass a .npy/.npz array of raw-pixel images (or image files)")
    return image_batch(array, size, f"{path} holds an array that")


def image_batch(images: Any, size: tuple[int, int], what: str) -> np.ndarray:
    """Raw-pixel images as an (N, H, W) array: accepts (H, W), (N, H, W) and (N, H, W, 1) of numbers
    in 0..255, the same from Python and from .npy/.npz files; one-line errors name what is accepted."""
    array = np.asarray(images)
    height, width = size
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1:] != size:
        raise InputImageError(f"{what} has shape {array.shape}: accepted are ({height}, {width}), "
                              f"(N, {height}, {width}) and (N, {height}, {width}, 1) raw pixels, or images of any "
                              f"size as PIL images or image files")
    if array.dtype.kind not in "buif":  # not timedelta, datetime, complex, text or objects
        raise InputImageError(f"{what} holds {array.dtype} values: accepted are numbers in 0..255")
    if len(array) == 0:
        raise InputImageError(f"{what} holds no images (shape {array.shape}): pass at least one")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputImageError(f"{what} holds NaN or infinite values: accepted are raw pixels in 0..255")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise InputImageError(f"{what} has values in {array.min()}..{array.max()}: accepted are raw pixels in 0..255")
    return array


def predict_files(classifier: Classifier, paths: list[Path], top_k: int = 3) -> list[Prediction]:
    """Predict every image file and every image in every array file, in order."""
    return classifier.predict(list(paths), top_k=top_k)


def checked_export(onnx_path: Path) -> tuple[Classifier, dict[str, Any]]:
    """An export whose ONNX file loads and matches the sha256 of its valid card (no dataset needed)."""
    classifier = Classifier(onnx_path)  # fails early, in one line, on a missing or truncated file
    card = read_card(card_path_for(onnx_path))
    digest = file_digest(onnx_path, "sha256")
    if digest != card.get("onnx_sha256"):
        raise ModelFileError(f"{onnx_path} has sha256 {digest[:12]}..., but its model card says "
                             f"{str(card.get('onnx_sha256'))[:12]}...: the file changed after it was verified")
    return classifier, card
