"""The run record: results.json and the per-trial files, typed. The one module that reads or writes them.

==============================  =================  ====================================================
file (in a run directory)       model              written
==============================  =================  ====================================================
``results.json``                :class:`RunRecord`  last, when the winner has been evaluated
``trial_*/trial_log.json``      :class:`TrainingLog`  after every epoch of a trial
``retrain_log.json``            :class:`TrainingLog`  after every epoch of the winner's retraining
``confirm/*/trial_log.json``    :class:`TrainingLog`  after every epoch of a confirmation training
``trial_*/pruned.json``         :class:`PruneRecord`  when a pruning rule stops a trial
``confirm/*/ended.json``        :class:`TrainingEnded`  when a confirmation training has ended
==============================  =================  ====================================================

Every file is strict JSON: a figure that is NaN or infinite (a diverging trial's loss) is written as
null, and the epoch names it in ``nonfinite``. Reading checks every field's type (pydantic, strict) and
a file's size and nesting, and any problem is one :class:`~kmnist_search.base.errors.RunError` line naming
the file and the fix. results.json of every schema this package has written is read (:func:`upgrade`);
its JSON Schema ships beside this module as ``run_record.schema.json`` (:func:`json_schema`).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    model_serializer,
    model_validator,
)

from kmnist_search.base.errors import RunError
from kmnist_search.base.files import atomic_write_text
from kmnist_search.base.formatting import counted
from kmnist_search.data.spaces import BOOLEAN_HYPERPARAMETERS, SGD_MOMENTUM, SearchSpace, parse_space, used_by_network

RECORD_SCHEMA_VERSION = 3
RESULTS_FILE = "results.json"
TRIAL_LOG_FILE = "trial_log.json"
PRUNED_FILE = "pruned.json"
ENDED_FILE = "ended.json"
DEPLOYMENT_FILE = "deployment.json"
SCHEMA_PATH = Path(__file__).with_name("run_record.schema.json")
MAX_RECORD_BYTES = 64 * 2**20  # results.json of a 1,000-trial, 100-epoch search is about 40 MB
HYPERBAND_BOOKKEEPING = "tuner/"  # Hyperband's own entries (bracket, round, epochs), not hyperparameters
SCORED_STATUSES = ("COMPLETED", "PRUNED")  # pruned trials count with the score they had reached
TrialStatus = Literal["RUNNING", "IDLE", "INVALID", "STOPPED", "COMPLETED", "FAILED", "PRUNED", "UNKNOWN"]
Value = bool | int | float | str  # a hyperparameter's value


def trial_number_of(trial_id: str | None) -> int | None:
    """Keras Tuner's trial id ("0", "1", ...) as people count trials, from 1; None for another id."""
    return int(trial_id) + 1 if trial_id is not None and trial_id.isdigit() else None


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


Figure = Annotated[float | None, BeforeValidator(_finite_or_none)]  # a measured number; null if not finite


class Record(BaseModel):
    """A part of the run record: unknown fields are refused, and it serialises to strict JSON."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _without_computed_fields(cls, data: Any) -> Any:
        """A written record carries its computed fields (such as ``trial``); reading leaves them out."""
        if isinstance(data, dict) and cls.model_computed_fields:
            return {k: v for k, v in data.items() if k not in cls.model_computed_fields}
        return data

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """As plain JSON values (for the model card, which copies parts of the record)."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data


# --- the per-training files ----------------------------------------------------------------------------


class Epoch(BaseModel):
    """One epoch of a training: its number, Keras's metrics (any names) and its wall and CPU seconds."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Figure] = Field(init=False)

    epoch: int = Field(ge=1)
    seconds: float | None = None
    cpu_seconds: float | None = None  # this process's, all threads
    nonfinite: list[str] = Field(default_factory=list)  # metrics that were NaN or infinite, written as null

    @model_validator(mode="before")
    @classmethod
    def _name_nonfinite(cls, data: Any) -> Any:
        if isinstance(data, dict):
            bad = [k for k, v in data.items() if isinstance(v, float) and not math.isfinite(v)]
            if bad:
                data = {**data, **dict.fromkeys(bad, None), "nonfinite": sorted({*data.get("nonfinite", []), *bad})}
        return data

    @property
    def metrics(self) -> dict[str, float | None]:
        """Keras's metrics of this epoch (``accuracy``, ``val_loss``, ...)."""
        return dict(self.__pydantic_extra__ or {})

    @model_serializer(mode="wrap")
    def _leave_out_what_is_absent(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if not (k in ("seconds", "cpu_seconds", "nonfinite") and not v
                                                      and v != 0)}

    def metric(self, name: str) -> float | None:
        """A metric's value; None where the epoch lacks it or it was not finite."""
        return self.metrics.get(name)

    def value(self, name: str, missing: float = float("-inf")) -> float:
        """A metric's value for ranking epochs: ``missing`` where there is none."""
        value = self.metrics.get(name)
        return missing if value is None else value


class TrainingLog(Record):
    """Every epoch of one training so far (a trial, a retraining, a confirmation training)."""

    epochs: list[Epoch] = Field(default_factory=list)
    tuner_id: str | None = None
    steps_per_epoch: int = Field(default=1, ge=1)
    wall_time_s: float = 0.0

    def curve(self, monitor: str) -> tuple[float, ...]:
        """The monitored metric per epoch (minus infinity where an epoch lacks it or it was not finite)."""
        return tuple(e.value(monitor) for e in self.epochs)


class PruneRecord(Record):
    """Why a pruning rule stopped a trial."""

    epoch: int = Field(ge=1)
    value: float
    threshold: float
    trials_compared: int = Field(ge=0)
    rule: str = "median"
    reach: float | None = None  # catch-up: the best score the trial could reach at its recent pace
    reach_by: str | None = None  # how it was extrapolated, when not by the recent pace held to the end

    @model_validator(mode="before")
    @classmethod
    def _first_format(cls, data: Any) -> Any:
        """The first pruned.json files (median stopping only) called the threshold ``median``."""
        if isinstance(data, dict) and "median" in data and "threshold" not in data:
            data = {**{k: v for k, v in data.items() if k != "median"}, "threshold": data["median"]}
        return data

    def message(self) -> str:
        if self.reach is not None:
            return (f"at epoch {self.epoch}: best {self.value * 100:.2f}%, and at most {self.reach * 100:.2f}% at "
                    f"{self.reach_by or 'its recent pace'}, below the {self.rule} {self.threshold * 100:.2f}% of "
                    f"{counted(self.trials_compared, 'trial')}")
        return (f"at epoch {self.epoch}: best {self.value * 100:.2f}% below the {self.rule} "
                f"{self.threshold * 100:.2f}% of {counted(self.trials_compared, 'trial')}")


class TrainingEnded(Record):
    """A confirmation training that has ended: its seed and its best epoch's validation score."""

    weights_seed: int
    val_accuracy: float
    best_epoch: int = Field(ge=1)


# --- results.json --------------------------------------------------------------------------------------


class Speed(Record):
    """A model's speed by the latency protocol (:mod:`kmnist_search.export.latency`), the reference's beside it."""

    single_image_ms: float
    single_image_p90_ms: float
    images_per_second: float
    reference_single_image_ms: float
    reference_images_per_second: float
    ratio_to_reference: float
    protocol: str
    machine: str


class Deployment(Record):
    """A trial measured as it would ship: its best weights exported to ONNX, checked against Keras on the
    validation images, and timed with onnxruntime; ``int8`` the same for its int8 copy where asked."""

    onnx_bytes: int = Field(ge=1)
    parity_label_agreement: float
    parity_passed: bool
    speed: Speed
    measure_seconds: float  # what measuring cost, export and quantization included
    int8: Deployment | None = None

    @property
    def megabytes(self) -> float:
        return self.onnx_bytes / 1_000_000

    def shipped(self) -> Deployment:
        """The form that ships: the int8 copy where there is one."""
        return self.int8 or self


class Budget(Record):
    """The most a shipped model may take: milliseconds for one image and megabytes on disk (either may be
    absent)."""

    max_ms: float | None = Field(default=None, gt=0)
    max_mb: float | None = Field(default=None, gt=0)

    def fits(self, deployment: Deployment) -> bool:
        shipped = deployment.shipped()  # its int8 copy must pass its own parity rule too
        return (deployment.parity_passed and shipped.parity_passed
                and (self.max_ms is None or shipped.speed.single_image_ms <= self.max_ms)
                and (self.max_mb is None or shipped.megabytes <= self.max_mb))

    def excess(self, deployment: Deployment) -> float:
        """How far over the budget, as the largest ratio of a measured value to its limit (<= 1 fits)."""
        shipped = deployment.shipped()
        ratios = [shipped.speed.single_image_ms / self.max_ms if self.max_ms else 0.0,
                  shipped.megabytes / self.max_mb if self.max_mb else 0.0]
        return max(ratios)

    def describe(self) -> str:
        limits = [*([f"{self.max_ms:g} ms per image"] if self.max_ms else []),
                  *([f"{self.max_mb:g} MB"] if self.max_mb else [])]
        return " and ".join(limits)


class Trial(Record):
    """One trial of the search, as results.json and the summaries give it."""

    trial_id: str
    hyperparameters: dict[str, Value]
    status: TrialStatus
    best_val_accuracy: Figure
    best_val_loss: Figure
    best_epoch: int | None
    epochs_run: int = Field(ge=0)
    wall_time_s: float | None
    message: str | None
    history: list[Epoch] = Field(default_factory=list)
    best_val_balanced_accuracy: Figure = None  # tracked when it is the objective (K49)
    deployment: Deployment | None = None  # measured as it would ship (completed trials)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def trial(self) -> int | None:
        """The trial as the console, the report and the summaries number it (Keras Tuner's id + 1)."""
        return trial_number_of(self.trial_id)

    @property
    def score(self) -> float | None:
        """What the search maximised: balanced accuracy where tracked, else accuracy."""
        return self.best_val_balanced_accuracy if self.best_val_balanced_accuracy is not None \
            else self.best_val_accuracy

    def to_dict(self, with_history: bool = True) -> dict[str, Any]:
        data = super().to_dict()
        if not with_history:
            data.pop("history")
        return data

    @classmethod
    def from_keras_tuner(cls, state: dict[str, Any], log: TrainingLog | None, pruned: PruneRecord | None,
                         where: Path, deployment: Deployment | None = None) -> Trial:
        """Combine Keras Tuner's trial state (its trial.json) with our epoch log, the pruning record and the
        deployment measurement."""
        try:
            return cls._combine(state, log, pruned).model_copy(update={"deployment": deployment})
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            raise RunError(f"{where} is not a Keras Tuner trial state ({_gist(error)}): restore it, or pass "
                           f"--overwrite to start the run afresh") from None

    @classmethod
    def _combine(cls, state: dict[str, Any], log: TrainingLog | None, pruned: PruneRecord | None) -> Trial:
        metrics = state.get("metrics", {}).get("metrics", {})
        history = list(log.epochs) if log else []
        val_accuracy = _best(metrics, "val_accuracy", max)
        val_loss = _best(metrics, "val_loss", min)
        best_epoch = None
        if history:
            best = max(history, key=lambda e: e.value("val_accuracy"))
            best_epoch = best.epoch
            if val_accuracy is None and state.get("status") != "FAILED":
                val_accuracy, val_loss = best.metric("val_accuracy"), best.metric("val_loss")
        status = str(state.get("status", "UNKNOWN"))
        message = message_gist(state.get("message"))
        if pruned and status == "COMPLETED":
            status, message = "PRUNED", pruned.message()
        return cls(
            trial_id=str(state.get("trial_id")),
            hyperparameters={name: bool(value) if name in BOOLEAN_HYPERPARAMETERS else value
                             for name, value in state.get("hyperparameters", {}).get("values", {}).items()
                             if not name.startswith(HYPERBAND_BOOKKEEPING)},
            status=status,  # type: ignore[arg-type]
            best_val_accuracy=val_accuracy, best_val_loss=val_loss, best_epoch=best_epoch,
            epochs_run=len(history), wall_time_s=log.wall_time_s if log else None, message=message,
            history=history, best_val_balanced_accuracy=_best(metrics, "val_balanced_accuracy", max),
        )


def _best(metrics: dict[str, Any], name: str, pick: Any) -> float | None:
    observations = metrics.get(name, {}).get("observations", [])
    values = [float(value) for obs in observations for value in obs.get("value", [])]
    finite = [value for value in values if math.isfinite(value)]
    return float(pick(finite)) if finite else None


def message_gist(message: str | None) -> str | None:
    """The last line of a failed trial's traceback, without the exception's module path."""
    if not message or not message.strip():
        return None
    last = message.strip().splitlines()[-1]
    return re.sub(r"^[\w.]*(Error|Exception): ", "", last)


class TrainingRun(Record):
    """One training of the winner's configuration: the search's trial, or the retraining on more images."""

    trial_id: str | None = None  # the search's trial; absent for a retraining
    epochs_planned: int = Field(ge=1)
    epochs_trained: int | None
    best_epoch: int | None
    train_images: int = Field(ge=1)
    validation_accuracy: Figure
    validation_balanced_accuracy: Figure = None  # where it is the objective
    wall_time_s: float | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def trial(self) -> int | None:
        """The search's trial as the console numbers it; None for a retraining."""
        return trial_number_of(self.trial_id)

    @model_serializer(mode="wrap")
    def _leave_out_what_is_absent(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items()
                if not (v is None and k in ("trial_id", "trial", "validation_balanced_accuracy"))}


class Seeds(Record):
    split: int  # the validation split and the trial order
    weights: int  # initial weights, batch order, augmentation


class TrainingSettings(Record):
    """How a model was trained, every default resolved: what results.json keeps for the winner and every
    model card copies (a member's ``training`` section)."""

    search_space: str
    hyperparameters: dict[str, Value]  # every one the network uses
    optimizer: dict[str, Any]  # its name, learning rate and options
    learning_rate_schedule: dict[str, Any]
    early_stopping_patience: int | None
    validation_images: int
    seeds: Seeds
    search_trial: TrainingRun
    retraining: TrainingRun | None
    teacher: dict[str, Any] | None

    @classmethod
    def resolve(cls, space: SearchSpace, values: dict[str, Any], built: dict[str, Value],
                optimizer: dict[str, Any] | None,
                search_trial: TrainingRun, retraining: TrainingRun | None, seed: int, init_seed: int | None,
                teacher: dict[str, Any] | None) -> TrainingSettings:
        """The settings of a configuration of ``space``, with what only the built network knows (``built``: a
        model of your own's optimizer and loss); without the built optimizer's options, its name and learning
        rate (SGD's momentum)."""
        hyperparameters = {**space.effective_hyperparameters(values), **built}
        rate = hyperparameters["learning_rate"]
        return cls(
            search_space=space.name,
            hyperparameters=used_by_network(hyperparameters),
            optimizer=optimizer or {"name": hyperparameters["optimizer"], "learning_rate": rate,
                                    **({"momentum": SGD_MOMENTUM} if hyperparameters["optimizer"] == "sgd" else {})},
            learning_rate_schedule={
                **({"name": "cosine", "initial_learning_rate": rate, "final_learning_rate": 0.0,
                    "over": "each training's planned epochs after the warm-up, per epoch"}
                   if space.lr_schedule == "cosine" else {"name": "constant", "learning_rate": rate}),
                "warmup_epochs": hyperparameters.get("warmup_epochs", 0)},
            early_stopping_patience=space.early_stopping_patience or None,
            validation_images=space.validation_images,
            seeds=Seeds(split=seed, weights=seed if init_seed is None else init_seed),
            search_trial=search_trial, retraining=retraining, teacher=teacher,
        )


class ConfirmationRunRecord(Record):
    """One complete training of a confirmed configuration."""

    source: str  # "trial" (the search's own) or the folder name under RUN_DIR/confirm
    weights_seed: int
    val_accuracy: float
    best_epoch: int


class ConfirmedRecord(Record):
    trial_id: str
    hyperparameters: dict[str, Value]
    mean_val_accuracy: float
    sd_val_accuracy: float
    runs: list[ConfirmationRunRecord]


class ConfirmationRecord(Record):
    """``--confirm K``: the K best configurations, each trained with more seeds, best mean first."""

    runs_per_configuration: int
    configurations: list[ConfirmedRecord]
    winner_trial_id: str
    tied_trial_ids: list[str]


class WinnerConfirmation(Record):
    """What the winner's confirmation says of it."""

    mean_val_accuracy: float
    sd_val_accuracy: float
    runs: int
    tied_trial_ids: list[str]
    shipped_run: ConfirmationRunRecord


class Winner(Record):
    """The search's winner, evaluated once on the test set."""

    trial_id: str
    hyperparameters: dict[str, Value]
    settings: TrainingSettings
    objective: str  # the validation metric the search maximised
    val_accuracy: Figure  # of the model shipped (its retraining's, or its confirmation's best run)
    val_balanced_accuracy: Figure
    best_epoch: int | None
    search_val_accuracy: Figure  # of its trial in the search
    test_accuracy: float
    test_balanced_accuracy: Figure
    test_loss: Figure
    confirmed: WinnerConfirmation | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def trial(self) -> int | None:
        """The winner's trial as the console numbers it."""
        return trial_number_of(self.trial_id)


class SpaceRecord(BaseModel):
    """The searched space: its name, the file it came from and its fingerprint (see
    :meth:`~kmnist_search.data.spaces.SearchSpace.fingerprint`, which owns the fingerprint's fields)."""

    model_config = ConfigDict(extra="allow")
    name: str
    source: str
    epochs: int
    hyperparameters: dict[str, list[Value]]

    @property
    def fingerprint(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if k != "source"}


class DatasetRecord(Record):
    name: str
    checksums: dict[str, str]
    train_images: int
    validation_images: int
    test_images: int


class ExportRecord(Record):
    """Where the run's winner was exported, and the sha256 of that ONNX file."""

    onnx: str
    model_card: str
    onnx_sha256: str


class RunRecord(Record):
    """results.json: the search, its trials, its winner and the export of the winner."""

    schema_version: Literal[3] = 3  # RECORD_SCHEMA_VERSION
    run_name: str
    strategy: str
    seed: int
    init_seed: int | None
    teacher: dict[str, Any] | None
    space: SpaceRecord
    dataset: DatasetRecord
    started_at: str
    finished_at: str
    trials: list[Trial]
    confirmation: ConfirmationRecord | None = None
    budget: Budget | None = None  # the winner is the most accurate trial within it
    winner: Winner
    versions: dict[str, str]
    export: ExportRecord | None = None

    def trial(self, trial_id: str) -> Trial | None:
        return next((t for t in self.trials if t.trial_id == trial_id), None)


# --- reading and writing -------------------------------------------------------------------------------

ModelT = TypeVar("ModelT", bound=BaseModel)


def parse(model: type[ModelT], data: dict[str, Any], where: str, fix: str) -> ModelT:
    """``data`` as ``model``, every field's type checked; one line naming the first problem otherwise."""
    try:
        return model.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise RunError(f"{where}: {field}: {first['msg'].lower()}: {fix}") from None


def read_object(path: Path, fix: str) -> dict[str, Any] | None:
    """The JSON object in ``path`` (NaN accepted: older files hold it), None when the file is missing;
    a one-line error ending in ``fix`` when it is too large, not JSON, nested too deeply or not an object."""
    try:
        size = path.stat().st_size
        if size > MAX_RECORD_BYTES:
            raise RunError(f"{path} holds {size:,} bytes, more than a kmnist-search record can: {fix}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise RunError(f"{path} is a folder, not a file: {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunError(f"{path} is truncated or not a JSON object: {fix}") from None
    except RecursionError:
        raise RunError(f"{path} is nested too deeply to be a kmnist-search record: {fix}") from None
    except OSError as error:
        raise RunError(f"{path} cannot be read ({error.strerror}): {fix}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} is truncated or not a JSON object: {fix}")
    return data


def read(path: Path, model: type[ModelT], fix: str) -> ModelT | None:
    """A record file as ``model``, or None when it is missing."""
    data = read_object(path, fix)
    return None if data is None else parse(model, data, str(path), fix)


def write(path: Path, record: Record) -> None:
    """Write a record atomically, as strict JSON."""
    atomic_write_text(path, record.to_json())


RERUN_FIX = "delete it and rerun the search's command to write it again (finished trials are kept)"
TRAINING_FIX = "delete that training's folder and rerun the search's command to train it again"


def read_results(path: Path) -> RunRecord | None:
    """results.json, upgraded to the current schema; None when it is missing."""
    data = read_object(path, RERUN_FIX)
    return None if data is None else parse(RunRecord, upgrade(data, path), str(path), RERUN_FIX)


def read_training_log(path: Path) -> TrainingLog | None:
    return read(path, TrainingLog, TRAINING_FIX)


def read_prune_record(path: Path) -> PruneRecord | None:
    return read(path, PruneRecord, TRAINING_FIX)


def read_deployment(path: Path) -> Deployment | None:
    return read(path, Deployment, "delete it and rerun the search's command to measure the trial again")


def read_training_ended(path: Path) -> TrainingEnded | None:
    return read(path, TrainingEnded, TRAINING_FIX)


# --- older schemas -------------------------------------------------------------------------------------


def upgrade(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A results.json of any schema this package has written, as the current schema's JSON.

    Version 1 had no effective settings for the winner: they are resolved from its recorded space, as the
    search resolved them. Version 2 also kept absolute paths (the run folder, the winner's model file),
    which a run folder moved elsewhere made wrong; where these files are is known from where results.json is.
    """
    version = data.get("schema_version", 1)
    if version == RECORD_SCHEMA_VERSION:
        return data
    if not isinstance(version, int) or version < 1 or version > RECORD_SCHEMA_VERSION:
        raise RunError(f"{path} has schema version {version}, which this kmnist-search does not read "
                       f"(it reads 1 to {RECORD_SCHEMA_VERSION}): upgrade kmnist-search")
    try:
        if version == 1:
            data = _from_version_1(data)
        upgraded = {k: v for k, v in data.items() if k != "run_dir"}
        upgraded["winner"] = {k: v for k, v in data["winner"].items() if k != "model_path"}
    except (TypeError, KeyError, AttributeError, StopIteration, ValueError) as error:
        raise RunError(f"{path} has schema version {version} but not its fields ({_gist(error)}): "
                       f"{RERUN_FIX}") from None
    return {**upgraded, "schema_version": RECORD_SCHEMA_VERSION}


def _from_version_1(data: dict[str, Any]) -> dict[str, Any]:
    space_record = dict(data["space"])
    space = parse_space(_space_file_from_fingerprint(space_record), source=space_record.get("source", "<results>"))
    winner = data["winner"]
    trial = next((t for t in data["trials"] if t["trial_id"] == winner["trial_id"]), None)
    retrained = winner.get("retrained")
    settings = TrainingSettings.resolve(
        space, winner["hyperparameters"], {}, optimizer=None,
        search_trial=TrainingRun(trial_id=winner["trial_id"], epochs_planned=space.epochs,
                                 epochs_trained=trial["epochs_run"] if trial else None,
                                 best_epoch=trial["best_epoch"] if trial else None,
                                 train_images=data["dataset"]["train_images"],
                                 validation_accuracy=winner.get("search_val_accuracy", winner["val_accuracy"])),
        retraining=None if not retrained else TrainingRun(
            epochs_planned=space.retrain_epochs, epochs_trained=retrained["epochs_run"],
            best_epoch=retrained["best_epoch"], train_images=retrained["train_images"],
            validation_accuracy=retrained["best_val_accuracy"], wall_time_s=retrained.get("wall_time_s")),
        seed=data["seed"], init_seed=data.get("init_seed"), teacher=data.get("teacher"),
    )
    winner = {k: v for k, v in winner.items() if k != "retrained"}
    return {**data, "winner": {**winner, "settings": settings.to_dict()}}


def _space_file_from_fingerprint(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A space fingerprint (as space.json and results.json keep it) as the TOML tables it came from."""
    keys = ("optimizer", "epochs", "validation_images", "early_stopping_patience", "lr_schedule", "retrain_epochs")
    training: dict[str, Any] = {key: fingerprint[key] for key in keys if key in fingerprint}
    if fingerprint.get("train_images") is not None:
        training["train_images"] = fingerprint["train_images"]
    file: dict[str, Any] = {"name": fingerprint["name"], "hyperparameters": fingerprint["hyperparameters"],
                            "training": training}
    if "pruning" in fingerprint:
        file["pruning"] = fingerprint["pruning"]
    return file


def _gist(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def json_schema() -> dict[str, Any]:
    """The JSON Schema of results.json, as generated from :class:`RunRecord` (shipped as SCHEMA_PATH)."""
    schema = RunRecord.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://github.com/kmnist-search/run_record.schema.json", **schema}


def write_json_schema() -> None:
    """Write the shipped JSON Schema from the models (after a change to the record)."""
    atomic_write_text(SCHEMA_PATH, json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n")
