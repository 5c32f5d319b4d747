"""Shared fixtures: seeded randomness, small synthetic KMNIST files in the official format, real data."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kmnist_search.data.datasets import DATA_DIR_ENV, KMNIST, Dataset, DatasetSpec, load_dataset
from kmnist_search.data.record import RunRecord
from kmnist_search.search.journal import STATES
from tests.cli import Command, command_in_process

REAL_DATA_ENV = "KMNIST_REAL_DATA_DIR"  # CI points this at ../shared/data/kmnist when it exists


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, each group in its collected order: with ``-n auto`` the workers end on short tests
    together instead of one of them finishing a long test while the others wait (longest first)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n``, an idle worker takes tests from a busy one's queue (pytest-xdist's work stealing):
    the default hands each worker a fixed first quarter of the tests, and the slow ones differ in length
    by minutes. Another ``--dist`` mode asked for is kept."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import WorkStealingScheduling

    return WorkStealingScheduling(config, log)


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28x28 uint8 images a small CNN can tell apart: a bright patch whose position encodes the class."""
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        row, column = 2 + (int(label) % 7) * 3, 2 + (int(label) // 7) * 3
        images[index, row:row + 3, column:column + 4] = 230
    return images


def write_dataset_files(directory: Path, spec: DatasetSpec, train_counts: list[int], test_counts: list[int],
                        seed: int = 0) -> Path:
    """Write a dataset's four official npz files (key ``arr_0``) with synthetic content."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, counts in (("train", train_counts), ("test", test_counts)):
        labels = rng.permutation(np.repeat(np.arange(len(counts), dtype=np.uint8), counts))
        np.savez_compressed(directory / spec.files[f"{split}_images"].name, make_images(labels, rng))
        np.savez_compressed(directory / spec.files[f"{split}_labels"].name, labels)
    return directory


def write_kmnist_files(directory: Path, train_per_class: int = 60, test_per_class: int = 20, seed: int = 0) -> Path:
    """Balanced synthetic KMNIST in the official format."""
    return write_dataset_files(directory, KMNIST, [train_per_class] * 10, [test_per_class] * 10, seed)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's data dir or download cache. Trials are measured as they would ship only where
    a test asks (``measure=True`` or a budget): it adds seconds to every trial."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KMNIST_SEARCH_MEASURE", "0")
    monkeypatch.setenv("KMNIST_SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session", autouse=True)
def _imports_frozen() -> None:
    """What the test modules imported stays, as the commands leave it once TensorFlow is loaded
    (kmnist_search.commands.tensorflow_start): the collections before every trial skip it."""
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    gc.freeze()


@pytest.fixture(autouse=True)
def _eager_training(request: pytest.FixtureRequest) -> Iterator[None]:
    """Keras trains the tests' tiny networks without tracing graphs: tracing costs about 2 CPU seconds a
    network, its few batches milliseconds. Tests of what the traced graphs compute (the fused optimizers,
    same-seed searches) are marked ``graph``."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(not request.node.get_closest_marker("graph"))
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture
def synthetic_data_dir(tmp_path: Path) -> Path:
    return write_kmnist_files(tmp_path / "kmnist")


@pytest.fixture
def real_data_dir() -> Path:
    directory = os.environ.get(REAL_DATA_ENV)
    if not directory or not Path(directory).is_dir():
        pytest.skip(f"real KMNIST data not available (set {REAL_DATA_ENV})")
    return Path(directory)


@pytest.fixture
def command(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Command:
    """A command run in this process (see ``tests.cli.command_in_process``)."""
    return command_in_process(capsys, monkeypatch)


@pytest.fixture
def seeded() -> None:
    import keras

    keras.utils.set_random_seed(1234)


FinishedRun = tuple[Path, Dataset, Path]  # run directory, its dataset, the data directory

# The network of test spaces whose trained models are not quantized: what those tests check is the machinery
# around the network, and the study's CNN (the default) costs about a hundred times the arithmetic per image.
SMALL_NETWORK = {"conv_layers": "16-p-32", "dense_units": 32}

# The export tests' network (and tests/cli.py's TINY_SPACE's), a quarter of the study's arithmetic: trained on
# 500 images, its int8 copy keeps its float32 labels as quantization requires, which SMALL_NETWORK's does not.
EXPORT_NETWORK = {"conv_layers": "16-32", "dense_units": 32}

EXPORT_TEST_SPACE = {
    "name": "export-test",
    "hyperparameters": {"learning_rate": [1.0], "batch_size": [64], "loss": ["categorical_crossentropy"],
                        **EXPORT_NETWORK},
    "training": {"epochs": 2, "validation_images": 100, "train_images": 500},
}


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """A small search on synthetic data, run once per test session."""
    from kmnist_search.data.spaces import parse_space
    from kmnist_search.search.runner import SearchOptions, run_search

    root = tmp_path_factory.mktemp("export")
    data_dir = write_kmnist_files(root / "data")
    dataset = load_dataset("kmnist", data_dir, verify_checksums=False)
    run_search(dataset, parse_space(EXPORT_TEST_SPACE), SearchOptions("grid", root / "runs", "export-test"))
    return root / "runs" / "export-test", dataset, data_dir


@pytest.fixture(scope="session")
def exported(finished_run: FinishedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished run's winner, exported and verified."""
    run_dir, dataset, _ = finished_run
    exports_dir = tmp_path_factory.mktemp("exports")
    from kmnist_search.export.convert import export_winner

    export_winner(run_dir, dataset, exports_dir)
    return exports_dir / "export-test.onnx"


# The four configurations (two learning rates by two losses, batch 64) of the kill tests' searches.
ALL_FOUR = sorted(json.dumps({"batch_size": 64, "learning_rate": lr, "loss": loss}, sort_keys=True)
                  for lr in (1.0, 0.1) for loss in ("categorical_crossentropy", "mean_squared_error"))


def searched_configurations(trials: list[dict[str, Any]]) -> list[str]:
    """The batch size, learning rate and loss each trial searched, as sorted JSON (fixed settings left out)."""
    return sorted(json.dumps({k: t["hyperparameters"][k] for k in ("batch_size", "learning_rate", "loss")},
                             sort_keys=True) for t in trials)


def as_dict(record: RunRecord | None, folder: Path | None = None) -> dict[str, Any]:
    """A finished search's record as results.json holds it (plus ``folder``, the run folder, if given)."""
    assert record is not None, "a chief's search returns its record"
    return {**record.to_dict(), **({"folder": folder} if folder else {})}


def load_journal(run: Path) -> Any:
    """The run's Optuna journal, opened as Optuna opens it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run / "optuna.log")))
    return optuna.load_study(study_name=run.name, storage=storage)


def assert_journal_is_the_record(run: Path) -> None:
    """The journal holds exactly the trials of results.json: values, epochs, states, scores."""
    results = json.loads((run / "results.json").read_text())
    journal = {t.user_attrs["trial_id"]: t for t in load_journal(run).trials}
    assert sorted(journal) == sorted(t["trial_id"] for t in results["trials"])
    for trial in results["trials"]:
        entry = journal[trial["trial_id"]]
        assert entry.params == trial["hyperparameters"] and entry.state.name == STATES[trial["status"]]
        assert entry.intermediate_values == {e["epoch"]: e["val_accuracy"] for e in trial["history"]}
        assert entry.user_attrs["epochs"] == trial["epochs_run"] and entry.user_attrs["trial"] == int(
            trial["trial_id"]) + 1
        if trial["status"] in ("COMPLETED", "PRUNED"):
            assert entry.value == trial["best_val_accuracy"]
