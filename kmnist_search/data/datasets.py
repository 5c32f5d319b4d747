"""Registry of the Kuzushiji datasets: files, checksums, shapes and class names; download,
verify and load them.

This module imports no TensorFlow at import time (the ONNX inference path reads class names
from here); Keras is imported only when a file has to be downloaded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kmnist_search.base.arrays import read_bounded_array
from kmnist_search.base.errors import DataError
from kmnist_search.base.files import file_digest, staged_path

BASE_URL = "http://codh.rois.ac.jp/kmnist/dataset"
DATA_DIR_ENV = "KMNIST_SEARCH_DATA_DIR"
CACHE_DIR_ENV = "KMNIST_SEARCH_CACHE_DIR"
ROLES = ("train_images", "train_labels", "test_images", "test_labels")
TEST_ROLES = ("test_images", "test_labels")  # what measuring a trained model needs


@dataclass(frozen=True)
class DataFile:
    """One official file of a dataset release."""

    name: str
    url: str
    size_bytes: int | None
    md5: str
    sha256: str | None = None

    @property
    def pinned_hash(self) -> tuple[str, str]:
        """The strongest checksum we pin for this file, as (algorithm, hex digest)."""
        return ("sha256", self.sha256) if self.sha256 else ("md5", self.md5)


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: its files, image shape and classes."""

    name: str
    title: str
    files: dict[str, DataFile]
    image_shape: tuple[int, int]
    characters: tuple[str, ...]
    romanized: tuple[str, ...]
    trainable: bool
    note: str = ""
    objective: str = "accuracy"  # the validation metric searches maximise ("balanced_accuracy" for K49)
    train_size: int = 0  # images in the official training set (0: no training set)

    @property
    def num_classes(self) -> int:
        return len(self.characters)

    @property
    def array_byte_limit(self) -> int:
        """The most data any of the dataset's files may hold: the training images at their official
        count (what a file of this dataset can hold; more is refused before it is unpacked)."""
        return max(self.train_size, 70_000) * math.prod(self.image_shape)

    @property
    def codepoints(self) -> tuple[str, ...]:
        return tuple(f"U+{ord(c):04X}" for c in self.characters)



def _npz(subdir: str, name: str, size_bytes: int | None, md5: str, sha256: str | None = None) -> DataFile:
    return DataFile(name, f"{BASE_URL}/{subdir}/{name}", size_bytes, md5, sha256)


KMNIST = DatasetSpec(
    name="kmnist",
    title="Kuzushiji-MNIST (10 classes, 28x28, 70,000 images)",
    files={
        "train_images": _npz("kmnist", "kmnist-train-imgs.npz", 18384171, "a183fbc01ed9a345513b145673d3d0bb",
                             "11d69e17c8fd294905864aef177fd10c2185e5a3655f4da03d72ea5a64c17a72"),
        "train_labels": _npz("kmnist", "kmnist-train-labels.npz", 29700, "b0e1d240e8afec72b50437fc3bc5908a",
                             "a325c877035602cb9b9ba54f4194a2a1b5f718026a463db5b5e0cdc124c03720"),
        "test_images": _npz("kmnist", "kmnist-test-imgs.npz", 3079479, "dace6de62ca8b90843cc45366337d02e",
                            "692d824896bec8f3c357ebf7a0fe904ed67ac632ce953d0b58f7fbef7bb27d87"),
        "test_labels": _npz("kmnist", "kmnist-test-labels.npz", 5304, "3ae489a79983d0fe386152684e3b5412",
                            "660f13a4705431ea2a6391c41ecbe384cd0d932c595a101ec4f3b8989e785046"),
    },
    image_shape=(28, 28),
    characters=tuple("おきすつなはまやれを"),
    romanized=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    trainable=True,
    train_size=60000,
)

K49 = DatasetSpec(
    name="k49",
    title="Kuzushiji-49 (49 classes, 28x28, 270,912 images, imbalanced)",
    files={
        "train_images": _npz("k49", "k49-train-imgs.npz", None, "7ac088b20481cf51dcd01ceaab89d821"),
        "train_labels": _npz("k49", "k49-train-labels.npz", None, "44a8e1b893f81e63ff38d73cad420f7a"),
        "test_images": _npz("k49", "k49-test-imgs.npz", None, "d352e201d846ce6b94f42c990966f374"),
        "test_labels": _npz("k49", "k49-test-labels.npz", None, "4da6f7a62e67a832d5eb1bd85c5ee448"),
    },
    image_shape=(28, 28),
    characters=tuple("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわゐゑをんゝ"),
    romanized=("a", "i", "u", "e", "o", "ka", "ki", "ku", "ke", "ko", "sa", "shi", "su", "se", "so",
               "ta", "chi", "tsu", "te", "to", "na", "ni", "nu", "ne", "no", "ha", "hi", "fu", "he", "ho",
               "ma", "mi", "mu", "me", "mo", "ya", "yu", "yo", "ra", "ri", "ru", "re", "ro", "wa", "wi",
               "we", "wo", "n", "iter"),
    trainable=True,
    note="md5s as published by third-party loaders; not yet checked against a download here",
    objective="balanced_accuracy",  # imbalanced classes: the public benchmark reports balanced accuracy
    train_size=232365,
)

KKANJI = DatasetSpec(
    name="kkanji",
    title="Kuzushiji-Kanji (3,832 classes, 64x64, 140,424 images, a tar of PNGs)",
    files={
        "archive": DataFile("kkanji.tar", f"{BASE_URL}/kkanji/kkanji.tar", None, "",
                            "6c65024b7b79de6661a049c89decfddae8bb908f71fcd7fdf1bd9a7f220a1cda"),
    },
    image_shape=(64, 64),
    characters=(),
    romanized=(),
    trainable=False,
    note="download only: no official train/test split, so the search does not train on it",
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (KMNIST, K49, KKANJI)}


@dataclass(frozen=True)
class Dataset:
    """Loaded, validated arrays: images uint8 (N, H, W), labels uint8 (N,)."""

    spec: DatasetSpec
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    checksums: dict[str, str]

    def split(self, validation_images: int, seed: int, train_images: int | None = None) -> Split:
        """The training/validation split a model of this dataset was trained and selected on: the one
        derivation of it from (validation size, seed), see :func:`split_train_validation`."""
        if not len(self.train_labels):
            raise DataError(f"{self.spec.name} was loaded without its training images (test set only): load it "
                            f"whole to split it")
        return split_train_validation(self.train_images, self.train_labels, validation_images, seed, train_images)


def get_spec(name: str) -> DatasetSpec:
    """Look a dataset up by name, with a clear error for an unknown one."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}") from None


def default_cache_dir() -> Path:
    """Where downloads are cached: ``$KMNIST_SEARCH_CACHE_DIR`` or Keras's ``~/.keras/datasets``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".keras" / "datasets")


def verify_file(path: Path, data_file: DataFile) -> str:
    """Check a local file against the registry; return its pinned digest or raise DataError."""
    if not path.is_file():
        raise DataError(f"{path} is missing: {_fix_hint(path, data_file)}")
    algorithm, expected = data_file.pinned_hash
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise DataError(
            f"{path} has {algorithm} {actual[:12]}..., expected {expected[:12]}...: the file is corrupt "
            f"or not the official release; delete it and download again, or pass --no-checksum "
            f"for a deliberately different file"
        )
    return f"{algorithm}:{actual}"


def _fix_hint(path: Path, data_file: DataFile) -> str:
    """How to get a missing file into the folder that was read, or to read another folder."""
    folder = path.parent
    dataset = data_file.url.rstrip("/").split("/")[-2]  # the release's folder: .../DATASET/FILE
    download = f"python -m kmnist_search.download {dataset} --cache-dir {folder.parent}"
    into = (f"`{download}` downloads the official files into it" if folder.name == dataset
            else f"`{download}` downloads the official files into {folder.parent / dataset} (then pass that)")
    return (f"{into} (or fetch {data_file.url}), or point --data-dir or ${DATA_DIR_ENV} at a folder that "
            f"holds {data_file.name}")


def download(spec: DatasetSpec, cache_dir: Path | None = None, roles: tuple[str, ...] = ROLES) -> Path:
    """Download (or reuse from the cache) the files of a dataset (those of ``roles``), verifying checksums.

    Each file is fetched by ``keras.utils.get_file`` (progress bar, hash check) into
    ``NAME.part`` and renamed to ``NAME`` only once its checksum matches.
    """
    target_dir = (cache_dir or default_cache_dir()) / spec.name
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        where = ("--cache-dir" if cache_dir else f"the download cache (${CACHE_DIR_ENV}, else ~/.keras/datasets "
                                                 f"under $HOME)")
        raise DataError(f"cannot create {target_dir} ({error.strerror or error}): point {where} at a writable "
                        f"folder, or pass --data-dir DIR with the official files") from None
    for data_file in (spec.files[role] for role in roles):
        final_path = target_dir / data_file.name
        if final_path.is_file():
            try:
                verify_file(final_path, data_file)
                continue
            except DataError:
                final_path.unlink()
        _fetch(data_file, target_dir, final_path)
    return target_dir


def _fetch(data_file: DataFile, target_dir: Path, final_path: Path) -> None:
    """Download one file into a private temporary folder in ``target_dir`` (no planted link can redirect
    it) and rename it into place once its checksum matches."""
    from keras.utils import get_file  # heavy import, only when downloading

    algorithm, expected = data_file.pinned_hash
    try:
        with staged_path(final_path) as staged:
            get_file(fname=staged.name, origin=data_file.url, file_hash=expected, hash_algorithm=algorithm,
                     cache_dir=str(staged.parent.parent), cache_subdir=staged.parent.name)
    except ValueError as error:  # get_file's checksum mismatch after download
        raise DataError(f"downloaded {data_file.name} but its checksum is wrong ({error}); try again") from None
    except Exception as error:  # network failures surface as plain Exceptions from get_file
        raise DataError(
            f"could not download {data_file.name} from {data_file.url} ({_first_line(error)}): "
            f"connect to the internet and retry (or download from a mirror with `python -m kmnist_search.download "
            f"--base-url URL`), or pass --data-dir DIR (or set ${DATA_DIR_ENV}) with a folder of the official files"
        ) from None


def _first_line(error: BaseException) -> str:
    """The gist of an error message: its first line, without get_file's "URL fetch failure on URL" prefix."""
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return first.rsplit(" -- ", 1)[-1]


def locate(spec: DatasetSpec, data_dir: Path | None, cache_dir: Path | None, allow_download: bool,
           roles: tuple[str, ...] = ROLES) -> Path:
    """Find the directory holding a dataset's files.

    ``data_dir`` (or ``$KMNIST_SEARCH_DATA_DIR``) is used as is and never touches the network;
    otherwise the cache is used, downloading what is missing when ``allow_download``.
    """
    explicit = data_dir or (Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else None)
    if explicit is not None:
        if not explicit.is_dir():
            raise DataError(f"data directory {explicit} does not exist: pass --data-dir DIR (or set "
                            f"${DATA_DIR_ENV}) with the official {spec.name} files, or leave both out to "
                            f"download them")
        return explicit
    cached = (cache_dir or default_cache_dir()) / spec.name
    needed = [spec.files[role] for role in roles]
    if all((cached / f.name).is_file() for f in needed):
        return cached
    if not allow_download:
        missing = [f.name for f in needed if not (cached / f.name).is_file()]
        raise DataError(f"{', '.join(missing)} not found in {cached}: run `python -m kmnist_search.download "
                        f"{spec.name}` with internet access, or pass --data-dir DIR (or set ${DATA_DIR_ENV}) with "
                        f"the official files")
    return download(spec, cache_dir, roles)


def load_array(path: Path, data_file: DataFile, max_bytes: int) -> np.ndarray:
    """Read ``arr_0`` from an official-format npz holding at most ``max_bytes`` of data, never unpickling
    anything and never unpacking more than the limit."""
    if not path.exists():
        raise DataError(f"{path} is missing: {_fix_hint(path, data_file)}")
    return read_bounded_array(path, max_bytes, DataError, member="arr_0",
                              fix=": it is not an official KMNIST-format file; download it again")


def validate_split(spec: DatasetSpec, images: np.ndarray, labels: np.ndarray, split: str) -> None:
    """Check shapes, dtype, lengths and label range of one split."""
    expected = (-1, *spec.image_shape)
    if images.ndim != 3 or images.shape[1:] != spec.image_shape:
        raise DataError(f"{split} images have shape {images.shape}, expected {expected} for {spec.name}: "
                        f"use the official files")
    if images.dtype != np.uint8:
        raise DataError(f"{split} images have dtype {images.dtype}, expected uint8: use the official files")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{split} labels have shape {labels.shape} and dtype {labels.dtype}, expected a 1-D "
                        f"integer array: use the official files")
    if len(images) == 0:
        raise DataError(f"the {split} set holds no images: use the official files")
    if len(labels) != len(images):
        raise DataError(f"{split} has {len(images)} images but {len(labels)} labels: the files do not belong "
                        f"together; download them again")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{split} labels range over {labels.min()}..{labels.max()}, expected 0.."
                        f"{spec.num_classes - 1} for {spec.name}: use the official files")


def load_dataset(
    name: str = "kmnist",
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    allow_download: bool = True,
    verify_checksums: bool = True,
    test_only: bool = False,
) -> Dataset:
    """Locate (downloading if needed), verify and load a trainable dataset; with ``test_only``, only its test
    set (the training arrays are then empty: enough to measure a trained model, not to train one)."""
    spec = get_spec(name)
    if not spec.trainable:
        raise DataError(f"{spec.name} cannot be searched: {spec.note}")
    roles = TEST_ROLES if test_only else ROLES
    directory = locate(spec, data_dir, cache_dir, allow_download, roles)
    height, width = spec.image_shape[:2]
    arrays: dict[str, np.ndarray] = {"train_images": np.zeros((0, height, width), np.uint8),
                                     "train_labels": np.zeros((0,), np.uint8)}
    checksums: dict[str, str] = {}
    for role in roles:
        data_file = spec.files[role]
        path = directory / data_file.name
        if verify_checksums:
            checksums[data_file.name] = verify_file(path, data_file)
        else:
            checksums[data_file.name] = f"sha256:{file_digest(path, 'sha256')}" if path.is_file() else ""
        arrays[role] = load_array(path, data_file, spec.array_byte_limit)
    if not test_only:
        validate_split(spec, arrays["train_images"], arrays["train_labels"], "train")
    validate_split(spec, arrays["test_images"], arrays["test_labels"], "test")
    return Dataset(spec, arrays["train_images"], arrays["train_labels"].astype(np.uint8),
                   arrays["test_images"], arrays["test_labels"].astype(np.uint8), checksums)


@dataclass(frozen=True)
class Split:
    """Training and validation arrays carved from the official training set."""

    train_images: np.ndarray
    train_labels: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) integer labels -> (N, num_classes) float32 one-hot rows."""
    return np.eye(num_classes, dtype=np.float32)[labels]


def check_split_sizes(validation_images: int, training_set_images: int, train_images: int | None = None) -> None:
    """A validation set must leave training images behind, and a training subset must fit in what it leaves
    (checked before any work starts, so that no subset is silently cut to what exists)."""
    if not 0 < validation_images < training_set_images:
        raise DataError(f"validation_images={validation_images} must be between 1 and {training_set_images - 1} "
                        f"(the training set has {training_set_images} images)")
    left = training_set_images - validation_images
    if train_images is not None and train_images > left:
        raise DataError(f"train_images={train_images} is more than the {left:,} training images left after "
                        f"validation_images={validation_images}: lower it, or leave it out to train on all of them")


def split_train_validation(
    images: np.ndarray,
    labels: np.ndarray,
    validation_images: int,
    seed: int,
    train_images: int | None = None,
) -> Split:
    """Hold out a seeded, stratified validation set; optionally keep a stratified training subset.

    The official test set is never touched here: it is used once, for the winner.
    """
    from sklearn.model_selection import train_test_split

    check_split_sizes(validation_images, len(labels), train_images)
    try:
        rest_x, val_x, rest_y, val_y = train_test_split(
            images, labels, test_size=validation_images, stratify=labels, random_state=seed
        )
        if train_images is not None and train_images < len(rest_y):
            rest_x, _, rest_y, _ = train_test_split(
                rest_x, rest_y, train_size=train_images, stratify=rest_y, random_state=seed
            )
    except ValueError as error:  # e.g. fewer images than classes for a stratified split
        raise DataError(f"cannot split the training set: {_first_line(error)}") from None
    return Split(rest_x, rest_y, val_x, val_y)


def with_mirror(spec: DatasetSpec, base_url: str) -> DatasetSpec:
    """The same dataset fetched from a mirror that keeps the official layout (``BASE/NAME/FILE``)."""
    files = {role: replace(f, url=f"{base_url.rstrip('/')}/{spec.name}/{f.name}") for role, f in spec.files.items()}
    return replace(spec, files=files)
