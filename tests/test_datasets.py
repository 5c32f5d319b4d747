"""Registry, download, verification, loading and splitting of datasets."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kmnist_search.base.errors import DataError
from kmnist_search.base.files import PARTIAL_PREFIX
from kmnist_search.data import datasets
from kmnist_search.data.datasets import DATASETS, KMNIST, DataFile, DatasetSpec, load_dataset, split_train_validation
from tests.conftest import write_kmnist_files

# The official md5s, as listed in shared/data/PROVENANCE.md.
OFFICIAL_MD5 = {
    "kmnist-train-imgs.npz": "a183fbc01ed9a345513b145673d3d0bb",
    "kmnist-train-labels.npz": "b0e1d240e8afec72b50437fc3bc5908a",
    "kmnist-test-imgs.npz": "dace6de62ca8b90843cc45366337d02e",
    "kmnist-test-labels.npz": "3ae489a79983d0fe386152684e3b5412",
}


def test_registry_pins_official_kmnist_checksums_and_classes() -> None:
    assert {f.name: f.md5 for f in KMNIST.files.values()} == OFFICIAL_MD5
    assert all(f.sha256 and len(f.sha256) == 64 for f in KMNIST.files.values())
    assert all(f.url.startswith("http://codh.rois.ac.jp/kmnist/dataset/kmnist/") for f in KMNIST.files.values())
    assert KMNIST.codepoints == ("U+304A", "U+304D", "U+3059", "U+3064", "U+306A", "U+306F", "U+307E",
                                 "U+3084", "U+308C", "U+3092")
    assert DATASETS["k49"].num_classes == 49 and len(DATASETS["k49"].romanized) == 49
    assert DATASETS["kkanji"].image_shape == (64, 64) and not DATASETS["kkanji"].trainable


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        datasets.get_spec("mnist")


def test_loads_synthetic_files_without_checksums(synthetic_data_dir: Path) -> None:
    data = load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)
    assert data.train_images.shape == (600, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_labels.shape == (200,)
    assert set(np.unique(data.train_labels)) == set(range(10))


def test_wrong_checksum_is_refused(synthetic_data_dir: Path) -> None:
    with pytest.raises(DataError, match=r"kmnist-train-imgs.npz has sha256 .*expected 11d69e17c8fd"):
        load_dataset("kmnist", synthetic_data_dir)


def test_missing_directory_and_missing_file(tmp_path: Path, synthetic_data_dir: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("kmnist", tmp_path / "nowhere")
    (synthetic_data_dir / "kmnist-test-labels.npz").unlink()
    missing = (r"kmnist-test-labels.npz is missing: `python -m kmnist_search.download kmnist --cache-dir .*` "
               r"downloads the official files into .* or point --data-dir or \$KMNIST_SEARCH_DATA_DIR at a folder")
    with pytest.raises(DataError, match=missing):
        load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)


def test_truncated_npz_is_reported(synthetic_data_dir: Path) -> None:
    path = synthetic_data_dir / "kmnist-train-imgs.npz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)


def test_pickled_object_array_is_refused_not_loaded(synthetic_data_dir: Path) -> None:
    np.savez(synthetic_data_dir / "kmnist-train-labels.npz", np.array([{"x": 1}], dtype=object))
    with pytest.raises(DataError, match="pickled object array"):
        load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)


def test_npz_without_arr_0(synthetic_data_dir: Path) -> None:
    np.savez(synthetic_data_dir / "kmnist-train-labels.npz", labels=np.zeros(600, np.uint8))
    with pytest.raises(DataError, match="no array 'arr_0'"):
        load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)


@pytest.mark.parametrize(
    ("file", "array", "message"),
    [
        ("kmnist-train-imgs.npz", np.zeros((600, 32, 32), np.uint8), r"shape \(600, 32, 32\)"),
        ("kmnist-train-imgs.npz", np.zeros((600, 28, 28), np.float32), "dtype float32, expected uint8"),
        ("kmnist-train-labels.npz", np.full(600, 10, np.uint8), r"labels range over 10\.\.10, expected 0\.\.9"),
        ("kmnist-train-labels.npz", np.zeros(599, np.uint8), "600 images but 599 labels"),
        ("kmnist-test-labels.npz", np.zeros((200, 1), np.uint8), "expected a 1-D integer array"),
    ],
)
def test_bad_arrays_are_refused(synthetic_data_dir: Path, file: str, array: np.ndarray, message: str) -> None:
    np.savez_compressed(synthetic_data_dir / file, array)
    with pytest.raises(DataError, match=message):
        load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)


def test_split_is_stratified_seeded_and_disjoint() -> None:
    labels = np.repeat(np.arange(10, dtype=np.uint8), 100)
    images = np.arange(1000 * 28 * 28, dtype=np.int64).reshape(1000, 28, 28).astype(np.uint8)
    images[:, 0, 0] = np.arange(1000) % 256
    images[:, 0, 1] = np.arange(1000) // 256
    first = split_train_validation(images, labels, validation_images=200, seed=7, train_images=500)
    again = split_train_validation(images, labels, validation_images=200, seed=7, train_images=500)
    other = split_train_validation(images, labels, validation_images=200, seed=8, train_images=500)
    assert np.bincount(first.validation_labels).tolist() == [20] * 10
    assert np.bincount(first.train_labels).tolist() == [50] * 10
    assert np.array_equal(first.validation_images, again.validation_images)
    assert not np.array_equal(first.validation_images, other.validation_images)
    ids = lambda x: set((x[:, 0, 0].astype(int) + 256 * x[:, 0, 1].astype(int)).tolist())  # noqa: E731
    assert not ids(first.train_images) & ids(first.validation_images)


def test_split_rejects_impossible_sizes() -> None:
    labels = np.repeat(np.arange(10, dtype=np.uint8), 10)
    images = np.zeros((100, 28, 28), np.uint8)
    with pytest.raises(DataError, match="validation_images=100"):
        split_train_validation(images, labels, validation_images=100, seed=0)
    with pytest.raises(DataError, match="cannot split"):
        split_train_validation(images, labels, validation_images=5, seed=0)


# --- downloading, against a real HTTP server on loopback -------------------------------------------------


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def served_spec(base_url: str, root: Path, corrupt: str | None = None) -> DatasetSpec:
    """KMNIST's registry entry re-pointed at synthetic files served from ``root``."""
    write_kmnist_files(root)
    files = {}
    for role in datasets.ROLES:
        name = KMNIST.files[role].name
        data = (root / name).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if corrupt == role:
            sha = "0" * 64
        files[role] = DataFile(name, f"{base_url}/{name}", len(data), hashlib.md5(data).hexdigest(), sha)
    return replace(KMNIST, files=files)


def test_download_verifies_and_caches(file_server: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = file_server
    spec = served_spec(base_url, root)
    target = datasets.download(spec, tmp_path / "cache")
    assert sorted(p.name for p in target.iterdir()) == sorted(f.name for f in spec.files.values())
    for data_file in spec.files.values():
        assert datasets.verify_file(target / data_file.name, data_file).startswith("sha256:")
    # A second call reuses the verified cache: it works with the server gone.
    (root / spec.files["train_images"].name).unlink()
    assert datasets.download(spec, tmp_path / "cache") == target


def test_download_with_wrong_checksum_leaves_no_file(file_server: tuple[str, Path], tmp_path: Path) -> None:
    base_url, root = file_server
    spec = served_spec(base_url, root, corrupt="test_labels")
    with pytest.raises(DataError, match="checksum is wrong"):
        datasets.download(spec, tmp_path / "cache")
    leftovers = [p.name for p in (tmp_path / "cache" / "kmnist").iterdir()]
    assert "kmnist-test-labels.npz" not in leftovers
    assert not [name for name in leftovers if name.endswith(".part") or name.startswith(PARTIAL_PREFIX)]


def test_a_download_never_writes_through_a_link_planted_in_the_cache(file_server: tuple[str, Path],
                                                                     tmp_path: Path) -> None:
    base_url, root = file_server
    spec = served_spec(base_url, root)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    cache = tmp_path / "cache" / "kmnist"
    cache.mkdir(parents=True)
    for data_file in spec.files.values():  # the names earlier versions downloaded to
        (cache / f"{data_file.name}.part").symlink_to(victim)
    datasets.download(spec, tmp_path / "cache")
    assert victim.read_text() == "precious"


def test_offline_without_data_names_both_fixes(tmp_path: Path) -> None:
    unreachable = {role: replace(f, url=f"http://127.0.0.1:9/{f.name}") for role, f in KMNIST.files.items()}
    spec = replace(KMNIST, files=unreachable)
    with pytest.raises(DataError) as error:
        datasets.download(spec, tmp_path / "cache")
    message = str(error.value)
    assert "could not download kmnist-" in message and "--data-dir" in message and "\n" not in message


def test_cache_is_used_without_network_once_complete(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not found in"):
        datasets.locate(KMNIST, None, cache, allow_download=False)
    write_kmnist_files(cache / "kmnist")
    assert datasets.locate(KMNIST, None, cache, allow_download=False) == cache / "kmnist"



def test_the_test_set_alone_is_enough_to_measure_a_model(synthetic_data_dir: Path, tmp_path: Path) -> None:
    only_test = tmp_path / "test-only"
    only_test.mkdir()
    for name in ("kmnist-test-imgs.npz", "kmnist-test-labels.npz"):
        (only_test / name).write_bytes((synthetic_data_dir / name).read_bytes())
    with pytest.raises(DataError, match=r"kmnist-train-imgs\.npz is missing"):
        load_dataset("kmnist", only_test, verify_checksums=False)
    test_set = load_dataset("kmnist", only_test, verify_checksums=False, test_only=True)
    assert len(test_set.test_labels) > 0 and test_set.train_images.shape == (0, 28, 28)
    with pytest.raises(DataError, match="loaded without its training images"):
        test_set.split(100, 42)
