"""The whole job as library calls: search, evaluate, export, verify, quantize, summarise.

The commands (``python -m kmnist_search.run`` and the rest) are thin layers over these functions, and a
notebook can call them directly::

    from kmnist_search import pipeline

    outcome = pipeline.run("quick", strategy="grid", data_dir="data/kmnist")   # search + export + report
    print(outcome.search.winner.test_accuracy, outcome.export.onnx_path)
    pipeline.verify(outcome.export.onnx_path, data_dir="data/kmnist")

Every function takes a dataset by name (found or downloaded as the commands do) or as a loaded
:class:`~kmnist_search.data.datasets.Dataset`, and returns typed results.

The commands reach the package through this module alone (besides the base: errors, files, names and
formatting; and inference, which predicts without TensorFlow): the other names they use are re-exported
here as ``import NAME as NAME``. An import contract holds them to it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmnist_search.base.errors import ModelFileError, RunError
from kmnist_search.base.files import check_writable_directory, exclusive_lock
from kmnist_search.base.names import MAX_NAME_LENGTH, check_name, check_seed
from kmnist_search.data import run_guard
from kmnist_search.data.datasets import DATA_DIR_ENV as DATA_DIR_ENV
from kmnist_search.data.datasets import DATASETS as DATASETS
from kmnist_search.data.datasets import Dataset, Split, check_split_sizes, load_dataset
from kmnist_search.data.datasets import DatasetSpec as DatasetSpec
from kmnist_search.data.datasets import default_cache_dir as default_cache_dir
from kmnist_search.data.datasets import download as download
from kmnist_search.data.datasets import get_spec as get_spec
from kmnist_search.data.datasets import with_mirror as with_mirror
from kmnist_search.data.record import Budget, ExportRecord, RunRecord, TrainingSettings, Trial
from kmnist_search.data.rundir import HTML_PAGE as HTML_PAGE
from kmnist_search.data.rundir import RunDir
from kmnist_search.data.spaces import PRUNERS as PRUNERS
from kmnist_search.data.spaces import SearchSpace, load_space, parse_space
from kmnist_search.data.spaces import builtin_space_names as builtin_space_names
from kmnist_search.export.card import (
    card_path_for,
    describe_export,
    describe_quantized,
    read_card,
    read_member_cards,
    read_quantizable_card,
)
from kmnist_search.export.distillation import DEFAULT_TEACHER_TEMPERATURE as DEFAULT_TEACHER_TEMPERATURE
from kmnist_search.export.distillation import DEFAULT_TEACHER_WEIGHT as DEFAULT_TEACHER_WEIGHT
from kmnist_search.export.distillation import load_teacher as load_teacher
from kmnist_search.export.parity import INT8_CALIBRATION_IMAGES
from kmnist_search.report.rankings import STATUS_NAMES as STATUS_NAMES
from kmnist_search.search.confirm import DEFAULT_CONFIRM
from kmnist_search.search.confirm import RUNS_PER_CONFIGURATION as RUNS_PER_CONFIGURATION
from kmnist_search.search.distributed import DEFAULT_ORACLE as DEFAULT_ORACLE
from kmnist_search.search.distributed import ROLES as ROLES
from kmnist_search.search.distributed import configure as configure_distribution  # noqa: F401  (for the commands)
from kmnist_search.search.distributed import current_role as current_role
from kmnist_search.search.distributed import tuner_id as tuner_id
from kmnist_search.search.plan import STRATEGIES as STRATEGIES
from kmnist_search.search.plan import describe_plan as describe_plan
from kmnist_search.search.progress import TrialEnd as TrialEnd
from kmnist_search.search.progress import TrialStart as TrialStart

DatasetLike = Dataset | str
GLOB_CHARACTERS = "[]*?"
INT8_SUFFIX = "-int8"  # the int8 copy of export NAME is NAME-int8
SpaceLike = SearchSpace | str | Path | dict[str, Any]


@dataclass(frozen=True)
class Winner:
    """The best trial of a search, evaluated once on the test set."""

    trial_id: str
    hyperparameters: dict[str, Any]
    settings: TrainingSettings  # how it was trained, every default resolved (as in the model card)
    validation_accuracy: float
    test_accuracy: float
    model_path: Path


@dataclass(frozen=True)
class SearchResult:
    """A finished search: its directory, trials and winner (``results`` is its whole record, results.json)."""

    run_dir: RunDir
    trials: list[Trial]
    winner: Winner
    results: RunRecord = field(repr=False)
    resumed_finished: bool = False  # True when the run had already finished and nothing was trained


@dataclass(frozen=True)
class ExportResult:
    """A verified model in ``exports/``: its ONNX file and its model card."""

    onnx_path: Path
    card: dict[str, Any] = field(repr=False)

    @property
    def card_path(self) -> Path:
        return card_path_for(self.onnx_path)

    @property
    def test_accuracy(self) -> float:
        return float(self.card["metrics"]["test_accuracy"])

    def describe(self) -> str:
        """What was written and how it was verified (for int8, also how faithful and how much smaller)."""
        if self.card.get("quantization"):
            return describe_quantized(self.card, self.onnx_path.parent)
        return describe_export(self.card, self.onnx_path.parent)


@dataclass(frozen=True)
class Evaluation:
    """An exported model's accuracy on a dataset's test set, computed with onnxruntime."""

    onnx_path: Path
    test_accuracy: float
    test_images: int
    per_class_accuracy: list[float]


@dataclass(frozen=True)
class RunOutcome:
    """What :func:`run` did: the search, its verified exports (written now, or by the run that finished it
before; None where there is none) and the report."""

    search: SearchResult
    export: ExportResult | None
    quantized: ExportResult | None
    report_path: Path | None


def quiet_keras_tuner() -> None:
    """Keras Tuner prints a failed trial's traceback itself; a search says it in one line instead."""
    from kmnist_search.search.keras_tuner_patches import quiet_failed_trials

    quiet_failed_trials()


def resolve_space(space: SpaceLike) -> SearchSpace:
    """A search space from a built-in name, a .toml path, a parsed dict or a SearchSpace."""
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):
        return parse_space(space)
    return load_space(str(space))


def resolve_dataset(dataset: DatasetLike, data_dir: Path | str | None = None, cache_dir: Path | str | None = None,
                    verify_checksums: bool = True, test_only: bool = False) -> Dataset:
    """A loaded dataset, or load one by name (local files with ``data_dir``, else the download cache); with
    ``test_only``, only its test set is read (or downloaded)."""
    if isinstance(dataset, Dataset):
        return dataset
    return load_dataset(dataset, Path(data_dir) if data_dir else None, Path(cache_dir) if cache_dir else None,
                        verify_checksums=verify_checksums, test_only=test_only)


def search_result(run_dir: RunDir, results: RunRecord, resumed_finished: bool = False) -> SearchResult:
    """A finished run's record, with its winner's headline figures."""
    winner = results.winner
    return SearchResult(
        run_dir=run_dir, trials=results.trials, results=results, resumed_finished=resumed_finished,
        winner=Winner(trial_id=winner.trial_id, hyperparameters=winner.hyperparameters, settings=winner.settings,
                      validation_accuracy=winner.val_accuracy or 0.0, test_accuracy=winner.test_accuracy,
                      model_path=run_dir.winner_model_path))


def open_run(run_dir: Path | str) -> SearchResult:
    """A finished run directory as a SearchResult (one-line error if it has not finished)."""
    directory = RunDir.existing(run_dir)
    return search_result(directory, directory.require_results())


def search(space: SpaceLike = "report", strategy: str = "grid", *, dataset: DatasetLike = "kmnist",
           data_dir: Path | str | None = None, cache_dir: Path | str | None = None, verify_checksums: bool = True,
           project_dir: Path | str = "runs", name: str | None = None, seed: int = 42, init_seed: int | None = None,
           max_trials: int | None = None, epochs: int | None = None, prune: str | None = None,
           prune_warmup: int | None = None, prune_min_trials: int | None = None, overwrite: bool = False,
           tensorboard: bool = False, teacher: Any = None, progress: Any = None,
           deterministic: bool = False, confirm: int = DEFAULT_CONFIRM, measure: bool | None = None,
           measure_int8: bool = False, budget_ms: float | None = None,
           budget_mb: float | None = None, hypermodel: Any = None,
           hyperparameters: Any = None) -> SearchResult | None:
    """Run (or resume) a search and evaluate its winner once on the test set.

    ``hypermodel`` searches a model of your own (a Keras Tuner HyperModel or a ``build(hp)`` function; see
    :mod:`kmnist_search.search.user_model`) over ``hyperparameters`` (name -> values, or Keras Tuner
    HyperParameters; default: those its build declares), with the space's training settings and batch sizes.

    Each completed trial is measured as it would ship (ONNX size and onnxruntime latency; ``measure_int8``:
    its int8 copy's too) unless ``measure`` is False (default: on, unless ``$KMNIST_SEARCH_MEASURE`` is 0).
    With ``budget_ms`` and/or ``budget_mb`` the winner is the most accurate trial within them.
    A run that has already finished is returned as it is (``resumed_finished``) unless ``overwrite``.
    Returns None for a worker of a distributed search (the chief finishes the run).
    """
    resolved_space = resolve_space(space)
    if epochs is not None:
        resolved_space = resolved_space.with_epochs(epochs)
    resolved_space = resolved_space.with_pruning(prune, prune_warmup, prune_min_trials)
    build = None
    if hypermodel is not None:
        if teacher is not None:
            raise RunError("a teacher distils into the package's networks: leave out the teacher or the hypermodel")
        from kmnist_search.search.user_model import declared_hyperparameters, user_build

        model_name, build = user_build(hypermodel)
        resolved_space = resolved_space.with_model(model_name, declared_hyperparameters(build, hyperparameters))
    elif resolved_space.model:
        raise RunError(f"space {resolved_space.name} searches a model of your own ({resolved_space.model}): pass "
                       f"its build(hp) as hypermodel=")
    if max_trials is not None and max_trials < 1:
        raise RunError(f"--max-trials {max_trials}: must be at least 1")
    check_seed(seed, "seed")
    if init_seed is not None:
        check_seed(init_seed, "init seed")
    run_dir = run_dir_for(resolved_space, strategy, project_dir, name)
    from kmnist_search.search.runner import SearchOptions, run_record, run_search

    budget = deployment_budget(budget_ms, budget_mb)
    measured = measuring(measure) or budget is not None
    options = SearchOptions(strategy=strategy, project_dir=Path(project_dir), name=run_dir.name, seed=seed,
                            max_trials=max_trials, overwrite=overwrite, tensorboard=tensorboard, teacher=teacher,
                            init_seed=init_seed, progress=progress, deterministic=deterministic, confirm=confirm,
                            measurement=trial_measurement(measure_int8, seed) if measured else None, budget=budget,
                            model=build)
    loaded = None
    if overwrite or not run_dir.is_finished():  # inputs checked before anything is created
        loaded = resolve_dataset(dataset, data_dir, cache_dir, verify_checksums)
        check_split_sizes(resolved_space.validation_images, len(loaded.train_labels), resolved_space.train_images)
    with held(run_dir):
        if run_dir.is_finished() and not overwrite:
            run_guard.check_same_search(run_dir, run_record(resolved_space, options))
            return search_result(run_dir, run_dir.require_results(), resumed_finished=True)
        loaded = loaded or resolve_dataset(dataset, data_dir, cache_dir, verify_checksums)
        results = run_search(loaded, resolved_space, options)
        if results is None:
            return None
        return search_result(run_dir, results)


MAX_PATH = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096
RUN_FILE_PATH_ALLOWANCE = 200  # the longest path inside a run folder: confirm/trial_ID-seed_J/resume/... and locks
MEASURE_ENV = "KMNIST_SEARCH_MEASURE"  # 0: do not measure trials unless asked (a budget always measures)


def measuring(measure: bool | None) -> bool:
    """Whether trials are measured: as asked, else as ``$KMNIST_SEARCH_MEASURE`` says (on unless 0)."""
    return measure if measure is not None else os.environ.get(MEASURE_ENV, "1") != "0"


def deployment_budget(max_ms: float | None, max_mb: float | None) -> Budget | None:
    """The budget asked for, checked; None without one."""
    for value, option in ((max_ms, "--budget-ms"), (max_mb, "--budget-mb")):
        if value is not None and not (isinstance(value, (int, float)) and 0 < value < float("inf")):
            raise RunError(f"{option} {value}: must be a finite number above 0")
    return None if max_ms is None and max_mb is None else Budget(max_ms=max_ms, max_mb=max_mb)


def trial_measurement(int8: bool, seed: int) -> Callable[[Split], Any]:
    """What measures each completed trial, on its split's validation images (and int8 calibrated on its
    training images)."""
    from kmnist_search.export.deployment import CALIBRATION_IMAGES, TrialMeasurer
    from kmnist_search.export.int8 import calibration_images

    def measurer(split: Split) -> TrialMeasurer:
        calibration = calibration_images(split, seed, CALIBRATION_IMAGES) if int8 else None
        return TrialMeasurer(split.validation_images, split.validation_labels,
                             split.validation_images.shape[1:3], calibration)

    return measurer


def run_dir_for(space: SearchSpace, strategy: str, project_dir: Path | str, name: str | None) -> RunDir:
    """The run directory of a search: ``--name`` (checked), else SPACE-STRATEGY, in the project directory
    (refused if its path holds a glob character: Keras Tuner finds trial folders by pattern, so a run
    there could never resume)."""
    run_name = (check_name(name, "run name") if name is not None else
                check_name(f"{space.name}-{strategy}", f"the run name made of the space's name and the strategy "
                                                       f"(too long for space {space.name[:20]}...? pass --name)"))
    run_dir = RunDir(Path(project_dir) / run_name)
    special = sorted(set(GLOB_CHARACTERS) & set(str(run_dir.path.absolute())))
    if special:
        raise RunError(f"the run folder {run_dir.path.absolute()} contains {' '.join(special)}: Keras Tuner finds "
                       f"trial folders by pattern and could never resume there; choose a --project-dir without "
                       f"{' '.join(GLOB_CHARACTERS)}")
    room = MAX_PATH - RUN_FILE_PATH_ALLOWANCE
    if len(str(run_dir.path.absolute())) > room:
        raise RunError(f"the run folder's path is {len(str(run_dir.path.absolute())):,} characters: the run's files "
                       f"need up to {RUN_FILE_PATH_ALLOWANCE} more, over the system's {MAX_PATH:,}; choose a shorter "
                       f"--project-dir")
    return run_dir


def held(run_dir: RunDir) -> contextlib.AbstractContextManager[None]:
    """The run's lock for this process; a distributed worker shares its chief's run and takes none."""
    from kmnist_search.search.distributed import current_role

    return contextlib.nullcontext() if current_role() == "worker" else run_guard.locked(run_dir)


def export(run: SearchResult | Path | str, *, dataset: DatasetLike | None = None, data_dir: Path | str | None = None,
           cache_dir: Path | str | None = None, verify_checksums: bool = True, exports_dir: Path | str = "exports",
           name: str | None = None) -> ExportResult:
    """Export a finished run's winner to ONNX, verified against Keras on every test image."""
    if name is not None:
        check_name(name, "export name")
    result = run if isinstance(run, SearchResult) else open_run(run)
    refuse_overlap(result.run_dir, Path(exports_dir))
    check_writable_directory(Path(exports_dir), "exports directory")
    refuse_foreign_files(Path(exports_dir), name or result.run_dir.name)
    loaded = resolve_dataset(dataset or result.results.dataset.name, data_dir, cache_dir, verify_checksums)
    from kmnist_search.export.convert import export_winner

    with held(result.run_dir), export_lock(Path(exports_dir), name or result.run_dir.name):
        card = export_winner(result.run_dir, loaded, Path(exports_dir), name)
        return _with_model_card(ExportResult(Path(exports_dir) / card["onnx_file"], card), loaded)


def _with_model_card(exported: ExportResult, dataset: Dataset) -> ExportResult:
    """Every export writes its model card page (NAME.md) beside it, measured on the test set."""
    from kmnist_search.export.card_page import write_model_card

    write_model_card(exported.onnx_path, dataset.test_images, dataset.test_labels)
    return exported


def write_model_card(model: ExportResult | Path | str, *, dataset: DatasetLike | None = None,
                     data_dir: Path | str | None = None, cache_dir: Path | str | None = None,
                     verify_checksums: bool = True) -> Path:
    """(Re)write an export's model card page from its card and a fresh onnxruntime measurement; return its path."""
    from kmnist_search.export.card_page import page_path
    from kmnist_search.export.inference import checked_export

    onnx_path = model.onnx_path if isinstance(model, ExportResult) else Path(model)
    with export_lock(onnx_path.parent, onnx_path.stem):  # not while an export of that name replaces the model
        _, card = checked_export(onnx_path)
        refuse_foreign_files(onnx_path.parent, onnx_path.stem)
        loaded = resolve_dataset(dataset or card["dataset"]["name"], data_dir, cache_dir, verify_checksums,
                                 test_only=True)
        _with_model_card(ExportResult(onnx_path, card), loaded)
    return page_path(onnx_path)


def refuse_overwriting_sources(card_paths: Sequence[Path], exports_dir: Path, name: str) -> None:
    """Refuse a new export whose files would replace one of the exports it is made from."""
    targets = {(exports_dir / f"{name}{suffix}").resolve() for suffix in (".json", ".onnx", ".keras")}
    for card_path in card_paths:
        sources = {card_path.with_suffix(suffix).resolve() for suffix in (".json", ".onnx", ".keras")}
        if targets & sources:
            raise RunError(f"--name {name} in {exports_dir} would overwrite its own source {card_path}: choose "
                           f"another --name or --exports-dir")


def refuse_foreign_files(exports_dir: Path, name: str) -> None:
    """Refuse an export name whose files in the exports folder are someone's own, not an earlier export of
    this package: an export replaces only its own files."""
    from kmnist_search.export.card_page import foreign_files

    found = foreign_files(exports_dir, name)
    if found:
        raise RunError(f"{found[0]} is not part of a kmnist-search export named {name}, and exporting would replace "
                       f"it: choose another --name or --exports-dir, or move the file")


def refuse_overlap(run_dir: RunDir, exports_dir: Path) -> None:
    """Refuse an exports directory that is the run's folder, inside it or around it: an export would
    overwrite the run's files, or the run its exports."""
    run, exports = run_dir.path.resolve(), exports_dir.resolve()
    if run == exports or run in exports.parents or exports in run.parents:
        raise RunError(f"--exports-dir {exports_dir} overlaps the run folder {run_dir.path}: keep exports apart "
                       f"from runs (the default is exports/)")


def export_lock(exports_dir: Path, name: str) -> contextlib.AbstractContextManager[None]:
    """The lock on one export name in an exports directory, held while its files are written."""
    return exclusive_lock(exports_dir / f".{name}.lock", f"export {exports_dir / name}")


def _card_path(model: ExportResult | Path | str) -> Path:
    """The model card an export is named by (an ExportResult's, or a path as given)."""
    return model.card_path if isinstance(model, ExportResult) else Path(model)


def quantize(model: ExportResult | Path | str, name: str, *, dataset: DatasetLike | None = None,
             data_dir: Path | str | None = None, cache_dir: Path | str | None = None, verify_checksums: bool = True,
             exports_dir: Path | str = "exports", calibration_images: int = INT8_CALIBRATION_IMAGES) -> ExportResult:
    """Write an int8 copy of an export, verified against its Keras model within the int8 tolerance."""
    from kmnist_search.export.int8 import export_quantized

    if calibration_images < 1:
        raise RunError(f"--calibration-images must be at least 1, got {calibration_images}")
    check_name(name, "export name")
    check_writable_directory(Path(exports_dir), "exports directory")
    card_path = _card_path(model)
    refuse_overwriting_sources([card_path], Path(exports_dir), name)
    refuse_foreign_files(Path(exports_dir), name)
    card = read_quantizable_card(card_path)
    loaded = resolve_dataset(dataset or card["dataset"]["name"], data_dir, cache_dir, verify_checksums)
    with export_lock(Path(exports_dir), name):
        written = export_quantized(card_path, loaded, Path(exports_dir), name, calibration_images)
        return _with_model_card(ExportResult(Path(exports_dir) / written["onnx_file"], written), loaded)


def ensemble(members: Sequence[ExportResult | Path | str], name: str, *, dataset: DatasetLike | None = None,
             data_dir: Path | str | None = None, cache_dir: Path | str | None = None, verify_checksums: bool = True,
             exports_dir: Path | str = "exports") -> ExportResult:
    """Average exported models into one ONNX model, verified against the Keras ensemble."""
    from kmnist_search.export.ensemble_graph import export_ensemble

    check_name(name, "export name")
    check_writable_directory(Path(exports_dir), "exports directory")
    card_paths = [_card_path(member) for member in members]
    resolved = [path.resolve() for path in card_paths]
    repeated = next((path for index, path in enumerate(card_paths) if resolved[index] in resolved[:index]), None)
    if repeated is not None:
        raise RunError(f"{repeated} is listed twice: an ensemble averages different models, so list each once")
    refuse_overwriting_sources(card_paths, Path(exports_dir), name)
    refuse_foreign_files(Path(exports_dir), name)
    first = read_member_cards(card_paths)[0]
    loaded = resolve_dataset(dataset or first["dataset"]["name"], data_dir, cache_dir, verify_checksums)
    with export_lock(Path(exports_dir), name):
        written = export_ensemble(card_paths, loaded, Path(exports_dir), name)
        return _with_model_card(ExportResult(Path(exports_dir) / written["onnx_file"], written), loaded)


def verify(model: ExportResult | Path | str, *, dataset: DatasetLike | None = None,
           data_dir: Path | str | None = None, cache_dir: Path | str | None = None, verify_checksums: bool = True,
           keras_model: Path | str | None = None, raise_on_failure: bool = True) -> Any:
    """Re-verify an export: sha256 against its card, then onnxruntime against Keras on every test image,
    under the rule its card records. Returns a :class:`~kmnist_search.export.reverify.Verification`."""
    from kmnist_search.export.inference import checked_export
    from kmnist_search.export.reverify import verify_export

    onnx_path = model.onnx_path if isinstance(model, ExportResult) else Path(model)
    classifier, card = checked_export(onnx_path)
    loaded = resolve_dataset(dataset or card["dataset"]["name"], data_dir, cache_dir, verify_checksums,
                             test_only=True)
    return verify_export(classifier, card, loaded, Path(keras_model) if keras_model else None, raise_on_failure)


def evaluate(model: ExportResult | Path | str, *, dataset: DatasetLike | None = None,
             data_dir: Path | str | None = None, cache_dir: Path | str | None = None,
             verify_checksums: bool = True) -> Evaluation:
    """An exported model's test accuracy, overall and per class, with onnxruntime alone."""
    import numpy as np

    from kmnist_search.export.inference import Classifier

    onnx_path = model.onnx_path if isinstance(model, ExportResult) else Path(model)
    classifier = Classifier(onnx_path)
    loaded = resolve_dataset(dataset or classifier.card.get("dataset", {}).get("name", "kmnist"), data_dir, cache_dir,
                             verify_checksums, test_only=True)
    predicted = np.concatenate([classifier.predict_proba(loaded.test_images[i:i + 1000]).argmax(axis=1)
                                for i in range(0, len(loaded.test_images), 1000)])
    correct = predicted == loaded.test_labels
    per_class = [float(correct[loaded.test_labels == c].mean()) for c in range(loaded.spec.num_classes)]
    return Evaluation(onnx_path, float(correct.mean()), len(correct), per_class)


def summarise(run: SearchResult | Path | str, fmt: str = "table", top: int | None = None) -> str:
    """A run's summary (ranked trials, effects, winner) as table, markdown, csv or json text."""
    from kmnist_search.report.summarize import summarise as render_summary

    return render_summary(run.run_dir.path if isinstance(run, SearchResult) else Path(run), fmt, top)


def write_report(run: SearchResult | Path | str) -> Path:
    """Write the run's report (figures and pages) into RUN_DIR/report; return the page's path."""
    from kmnist_search.report.summarize import write_report as write

    return write(run.run_dir.path if isinstance(run, SearchResult) else Path(run))


def valid_card(path: Path) -> bool:
    """True when ``path`` holds a model card that satisfies the schema."""
    try:
        read_card(path)
    except ModelFileError:
        return False
    return True


def export_intact(card_path: Path) -> bool:
    """True when ``card_path`` is a valid model card and the ONNX file beside it matches its sha256."""
    from kmnist_search.base.files import file_digest

    if not valid_card(card_path):
        return False
    card = read_card(card_path)
    onnx_path = card_path.with_name(card["onnx_file"])
    return onnx_path.is_file() and file_digest(onnx_path) == card["onnx_sha256"]


def recorded_export(run_dir: RunDir) -> ExportResult:
    """The export of the run's winner that results.json records."""
    record = run_dir.require_results().export
    if record is None:
        raise RunError(f"{run_dir.path} records no export: export it with `python -m kmnist_search.export "
                       f"{run_dir.path}`")
    return existing_export(Path(record.onnx))


def existing_export(onnx_path: Path) -> ExportResult:
    """An export already written and verified (its card beside it)."""
    return ExportResult(onnx_path, read_card(card_path_for(onnx_path)))


def export_complete(result: SearchResult) -> bool:
    """True when the run's winner was exported and its files are still as written."""
    record = result.results.export
    if not record:
        return False
    card_path = Path(record.model_card)
    return export_intact(card_path) and read_card(card_path)["onnx_sha256"] == record.onnx_sha256


def adopt_written_export(result: SearchResult, exports_dir: Path) -> bool:
    """Record in results.json an export of this run's winner that was written whole (ONNX file and valid
    card, the file matching the card's sha256) but that a kill kept out of results.json; False if there
    is none, so it is exported again."""
    from kmnist_search.base.files import file_digest

    card_path = exports_dir / f"{result.run_dir.name}.json"
    if not valid_card(card_path):
        return False
    card = read_card(card_path)
    onnx_path = card_path.with_name(card["onnx_file"])
    models = card.get("models") or [{}]
    if (card["kind"] == "ensemble" or models[0].get("run_name") != result.results.run_name
            or models[0].get("metrics", {}).get("test_accuracy") != result.winner.test_accuracy
            or not onnx_path.is_file() or file_digest(onnx_path) != card["onnx_sha256"]):
        return False
    result.run_dir.record_export(ExportRecord(onnx=str(onnx_path), model_card=str(card_path),
                                              onnx_sha256=card["onnx_sha256"]))
    return True


def run(space: SpaceLike = "report", strategy: str = "grid", *, dataset: DatasetLike = "kmnist",
        data_dir: Path | str | None = None, cache_dir: Path | str | None = None, verify_checksums: bool = True,
        exports_dir: Path | str = "exports", export_winner: bool = True, quantize_export: bool = False,
        report: bool = True, on_step: Callable[[str], None] | None = None, **search_options: Any) -> RunOutcome:
    """The main job: search, export the winner (verified), optionally quantize it, write the report.

    A run that had already finished keeps its export untouched (export it again with :func:`export`);
    an export interrupted before its card was written is completed.
    ``search_options`` are :func:`search`'s keyword arguments.
    """
    run_dir = run_dir_for(resolve_space(space), strategy, search_options.get("project_dir", "runs"),
                          search_options.get("name"))
    if quantize_export:  # the int8 copy's name, found out now rather than after the search
        longest = MAX_NAME_LENGTH - len(INT8_SUFFIX)
        check_name(f"{run_dir.name}{INT8_SUFFIX}", f"the int8 copy's name (the run's name and {INT8_SUFFIX}; use a "
                                                   f"--name of at most {longest} characters)")
    if export_winner:  # found out now, not after the search
        refuse_overlap(run_dir, Path(exports_dir))
        check_writable_directory(Path(exports_dir), "exports directory")
        for name in (run_dir.name, *([f"{run_dir.name}{INT8_SUFFIX}"] if quantize_export else [])):
            refuse_foreign_files(Path(exports_dir), name)
    loaded = resolve_dataset(dataset, data_dir, cache_dir, verify_checksums)
    search_options.setdefault("measure_int8", quantize_export)  # trials are measured as they will ship
    with held(run_dir):
        return _run_held(space, strategy, loaded, Path(exports_dir), export_winner, quantize_export, report, on_step,
                         **search_options)


def _run_held(space: SpaceLike, strategy: str, loaded: Dataset, exports: Path, export_winner: bool,
              quantize_export: bool, report: bool, on_step: Callable[[str], None] | None,
              **search_options: Any) -> RunOutcome:
    """:func:`run`'s steps, with the run held by this process."""
    result = search(space, strategy, dataset=loaded, **search_options)
    if result is None:
        raise RunError("a distributed worker does not finish the run: the chief exports and reports")
    exported = quantized = None
    name = result.run_dir.name
    recorded = result.results.export
    if export_winner and result.resumed_finished and recorded and Path(recorded.onnx).parent.resolve() != \
            exports.resolve():
        raise RunError(f"run {name} had finished and was exported to {Path(recorded.onnx).parent}, not {exports}: "
                       f"export it again there with `python -m kmnist_search.export {result.run_dir.path} "
                       f"--exports-dir {exports}`")
    written = None
    if export_winner and result.resumed_finished and (export_complete(result) or adopt_written_export(result, exports)):
        exported = recorded_export(result.run_dir)  # exported when the run finished before
    elif export_winner:
        if on_step:
            on_step("exporting the winner to ONNX and verifying it on every test image")
        exported = written = export(result, dataset=loaded, exports_dir=exports, name=name)
    int8_path = exports / f"{name}{INT8_SUFFIX}.onnx"
    if quantize_export and (written is not None or not export_intact(card_path_for(int8_path))):
        if on_step:
            on_step("quantizing the export to int8 and verifying it")
        quantized = quantize(exported or exports / f"{name}.json", f"{name}{INT8_SUFFIX}", dataset=loaded,
                             exports_dir=exports)
    elif quantize_export:
        quantized = existing_export(int8_path)
    report_path = None
    if report:
        if on_step:
            on_step("writing the report")
        report_path = write_report(result)
    return RunOutcome(result, exported, quantized, report_path)
