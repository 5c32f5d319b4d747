"""Read and validate ``search_spaces/*.toml`` into a typed :class:`SearchSpace`.

A space file has three parts::

    name = "report"
    description = "The study's ranges"

    [hyperparameters]          # each a value or a non-empty list; every combination is one configuration
    learning_rate = [0.1, 0.01]
    batch_size = [8, 128]
    loss = ["categorical_crossentropy", "mean_squared_error"]
    conv_layers = ["32-64", "32-32-p-64-64"]   # optional architecture knobs, see HYPERPARAMETERS

    [training]                 # fixed for every trial
    optimizer = "adadelta"
    epochs = 12
    validation_images = 6000   # held out, stratified, from the official training set
    train_images = 12000       # optional: a stratified subset of the rest (default: all of it)

Every hyperparameter is declared once in :data:`HYPERPARAMETERS` (its validator and the study's
default: the one source of defaults), so a new knob is one table entry plus its use in the hypermodel.
Every error names the file, the key and the problem.
"""

from __future__ import annotations

import itertools
import math
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from kmnist_search.base.errors import SpaceError
from kmnist_search.base.names import NAME_PATTERN, NAME_RULE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOSSES = ("categorical_crossentropy", "mean_squared_error")
NETWORKS = ("cnn", "preact_resnet")
OPTIMIZERS = ("adadelta", "adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine")
# Used when a space searches the optimizer but not the learning rate (Adadelta: Keras 2's default).
DEFAULT_LEARNING_RATES = {"adadelta": 1.0, "adam": 0.001, "sgd": 0.01, "rmsprop": 0.001}
SGD_MOMENTUM = 0.9
CONV_LAYERS_PATTERN = re.compile(r"^[1-9]\d{0,3}(-([1-9]\d{0,3}|p))*$")
TOP_LEVEL_KEYS = ("name", "description", "hyperparameters", "training", "pruning")
# Applied by the package's training loop to any network, a model of your own included.
FIT_HYPERPARAMETERS = ("batch_size", "mixup")
PRUNERS = ("median", "percentile", "asha", "catch-up", "none")
BUDGETS = ("epochs", "steps")
PACES = ("held", "slowing")  # catch-up: how a trial's recent pace is carried to its last epoch
MAX_FILTERS = 4096  # per convolution: bounds on what one configuration may ask of memory
MAX_DENSE_UNITS = 65_536
MAX_BATCH_SIZE = 65_536
MAX_RESNET_DEPTH = 200
IN_MEMORY_SOURCE = "<memory>"  # a space given as a dict, not a file
IN_MEMORY_NAME = "space"  # its name when it gives none
MAX_CONFIGURATIONS = 10_000  # a grid is walked and a dry run prints every configuration: bounded here
MAX_SPACE_FILE_BYTES = 1_000_000
BUILTIN_DIR = Path(__file__).resolve().parents[2] / "search_spaces"


@dataclass(frozen=True)
class HyperparameterKind:
    """How to validate one hyperparameter's values, what they mean, and the study's value."""

    convert: Callable[[Any], Any]
    expectation: str
    default: Any = None  # the study's value; None for the learning rate, which depends on the optimizer
    required: bool = False  # every space file must list it
    network: str | None = None  # the one network that uses it (None: every network)


def _positive_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if number > 0 and math.isfinite(number) else None


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value > 0 else None


def _fraction(upper: float) -> Callable[[Any], float | None]:
    def convert(value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value) if 0 <= value < upper else None

    return convert


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def convert(value: Any) -> str | None:
        return value if isinstance(value, str) and value in choices else None

    return convert


def _boolean(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _non_negative_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value >= 0 else None


def _resnet_depth(value: Any) -> int | None:
    depth = _positive_int(value)
    return depth if depth is not None and depth >= 8 and (depth - 2) % 6 == 0 else None


def _conv_layers(value: Any) -> str | None:
    """A layer string whose every layer keeps a 28x28 image at least 1 pixel wide (after the final pool)
    and has at most MAX_FILTERS filters."""
    if not isinstance(value, str) or not CONV_LAYERS_PATTERN.match(value):
        return None
    size = 28
    for token in [*value.split("-"), "p"]:
        if token != "p" and int(token) > MAX_FILTERS:
            return None
        size = size // 2 if token == "p" else size - 2
        if size < 1:
            return None
    return value


def _bounded(convert: Any, maximum: int) -> Any:
    def bounded(value: Any) -> Any:
        result = convert(value)
        return result if result is not None and result <= maximum else None

    return bounded


HYPERPARAMETERS: dict[str, HyperparameterKind] = {
    "learning_rate": HyperparameterKind(_positive_float, "expected a positive number"),
    "batch_size": HyperparameterKind(_bounded(_positive_int, MAX_BATCH_SIZE),
                                     f"expected a whole number from 1 to {MAX_BATCH_SIZE:,}", 128, required=True),
    "loss": HyperparameterKind(_one_of(LOSSES), f"expected one of {', '.join(LOSSES)}", "categorical_crossentropy"),
    "optimizer": HyperparameterKind(_one_of(OPTIMIZERS), f"expected one of {', '.join(OPTIMIZERS)}", "adadelta"),
    "conv_layers": HyperparameterKind(
        _conv_layers, "expected a layer string such as '32-64' (3x3 convolutions with that many filters, at most "
        f"{MAX_FILTERS:,}, 'p' for a 2x2 max-pool; a final pool is always added) that leaves a 28x28 image at "
        "least 1 pixel wide", "32-64", network="cnn"),
    "batch_norm": HyperparameterKind(_boolean, "expected true or false", False, network="cnn"),
    "dropout_conv": HyperparameterKind(_fraction(1.0), "expected a rate in [0, 1)", 0.25, network="cnn"),
    "dense_units": HyperparameterKind(_bounded(_positive_int, MAX_DENSE_UNITS),
                                      f"expected a whole number from 1 to {MAX_DENSE_UNITS:,}", 128, network="cnn"),
    "dropout_dense": HyperparameterKind(_fraction(1.0), "expected a rate in [0, 1)", 0.5, network="cnn"),
    "augment": HyperparameterKind(
        _fraction(0.5), "expected a strength in [0, 0.5): random rotation (fraction of a turn), shift and "
        "zoom during training only", 0.0),
    "cutout": HyperparameterKind(
        _fraction(1.0), "expected a probability in [0, 1): how often a random patch of a training image is "
        "erased (random erasing, training only)", 0.0),
    "mixup": HyperparameterKind(
        _fraction(1.0), "expected a mixup alpha in [0, 1): training batches blend pairs of images and their "
        "labels with a Beta(alpha, alpha) weight (0 = off)", 0.0),
    "network": HyperparameterKind(
        _one_of(NETWORKS), f"expected one of {', '.join(NETWORKS)}: the study's CNN (shaped by conv_layers, "
        "dense_units and the dropouts) or a pre-activation residual network (shaped by resnet_depth and "
        "resnet_width)", "cnn"),
    "resnet_depth": HyperparameterKind(
        _bounded(_resnet_depth, MAX_RESNET_DEPTH), f"expected a depth 6n + 2 (8, 14, 20, 26, ... up to "
        f"{MAX_RESNET_DEPTH}): n pre-activation blocks in each of three stages", 20, network="preact_resnet"),
    "resnet_width": HyperparameterKind(
        _bounded(_positive_int, MAX_FILTERS // 4), f"expected a whole number from 1 to {MAX_FILTERS // 4:,}: the "
        "first stage's filters, doubled in each later stage", 16, network="preact_resnet"),
    "weight_decay": HyperparameterKind(
        _fraction(1.0), "expected a rate in [0, 1): decoupled weight decay applied by the optimizer", 0.0),
    "label_smoothing": HyperparameterKind(
        _fraction(1.0), "expected a share in [0, 1) of each target spread evenly over the classes "
        "(cross-entropy only)", 0.0),
    "nesterov": HyperparameterKind(_boolean, "expected true or false: Nesterov momentum for SGD", False),
    "warmup_epochs": HyperparameterKind(
        _non_negative_int, "expected a whole number >= 0: epochs over which the learning rate rises linearly "
        "to its value before the schedule starts", 0),
    "cutout_area": HyperparameterKind(
        _fraction(1.0), "expected an area share in [0, 1): the size of the patch random erasing blanks (0.25: "
        "a 14x14 Cutout on 28x28 images; 0: a random 2% to 33%, Keras's default)", 0.0),
}


def used_by_network(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved hyperparameters that the network they describe uses: a residual network's without the
    CNN's layer settings, a CNN's without the residual depth and width."""
    network = resolved.get("network", study_default("network"))
    if network not in NETWORKS:  # a model of your own lists only what it uses
        return dict(resolved)
    return {name: value for name, value in resolved.items()
            if name not in HYPERPARAMETERS or HYPERPARAMETERS[name].network in (None, network)}


def study_default(name: str) -> Any:
    """The value a hyperparameter takes when a space does not list it (the study's CNN and recipe)."""
    return HYPERPARAMETERS[name].default


def default_learning_rate(optimizer: str) -> float:
    """The learning rate used when a space does not list one: the optimizer's usual rate."""
    return DEFAULT_LEARNING_RATES[optimizer]


# Keras Tuner stores boolean choices as 0/1; reports turn them back into booleans.
BOOLEAN_HYPERPARAMETERS = frozenset(name for name, kind in HYPERPARAMETERS.items() if kind.convert is _boolean)
TRAINING_KEYS = ("optimizer", "epochs", "validation_images", "train_images", "early_stopping_patience",
                 "lr_schedule", "retrain_epochs")


@dataclass(frozen=True)
class Pruning:
    """How trials are stopped early (the rules are in :mod:`kmnist_search.search.pruners`), defaulted and checked
    here only.

    ``median`` and ``percentile``: after ``warmup_epochs``, a trial whose best validation score so far
    is below the ``percentile`` (median: 50) of the other trials' best scores at the same point is
    stopped, once at least ``min_trials`` trials got there; the point is the same epoch or, with
    ``budget = "steps"``, the same number of optimizer steps. ``asha``: successive halving, keeping
    the top ``1/reduction`` at epochs ``min_epochs * reduction**k``. ``catch-up``: after ``warmup_epochs``,
    a trial that could not reach the best score so far at its recent pace, ``held`` to its last epoch or
    ``slowing`` as 1/epoch, is stopped; with ``peers``, before that, one that could not reach it even by
    gaining what the trials with as few optimizer steps per epoch gained after as many epochs. ``none``: no
    pruning.
    """

    strategy: str = "catch-up"  # with pace "slowing" and peers: the rule the replay's verdict names
    warmup_epochs: int = 1
    min_trials: int = 3
    percentile: float = 50.0
    budget: str = "epochs"
    min_epochs: int = 1
    reduction: int = 3
    pace: str = "slowing"
    peers: bool = True

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise SpaceError(f"[pruning]: {problem}")

    def problem(self) -> str | None:
        """What is wrong with these settings, or None."""
        checks = [
            (self.strategy in PRUNERS, f"strategy {self.strategy!r} must be one of {', '.join(PRUNERS)}"),
            (_is_int(self.warmup_epochs) and self.warmup_epochs >= 0, "warmup_epochs must be a whole number >= 0"),
            (_is_int(self.min_trials) and self.min_trials >= 1,
             "min_trials (minimum trials) must be a whole number >= 1"),
            (not isinstance(self.percentile, bool) and isinstance(self.percentile, (int, float))
             and 0 < self.percentile <= 100, "percentile must be a number in (0, 100]"),
            (self.budget in BUDGETS, f"budget must be one of {', '.join(BUDGETS)}"),
            (self.pace in PACES, f"pace must be one of {', '.join(PACES)}"),
            (isinstance(self.peers, bool), "peers must be true or false"),
            (_is_int(self.min_epochs) and self.min_epochs >= 1, "min_epochs must be a whole number >= 1"),
            (_is_int(self.reduction) and self.reduction >= 2, "reduction must be a whole number >= 2"),
            (self.strategy != "median" or self.percentile == 50, "median is the 50th percentile: use "
             "strategy = \"percentile\" for another"),
        ]
        return next((message for passed, message in checks if not passed), None)

    def describe(self) -> str:
        """The rule in a few words, for the plan."""
        point = "optimizer step" if self.budget == "steps" else "epoch"
        share = "median" if self.percentile == 50 else f"{self.percentile:g}th percentile"
        percentile = (f"{share} at the same {point}, after {self.warmup_epochs} epoch(s), against >= "
                      f"{self.min_trials} trials")
        return {
            "none": "none",
            "median": percentile,
            "percentile": percentile,
            "asha": f"successive halving: the top 1/{self.reduction} go on at epochs {self.min_epochs} x "
                    f"{self.reduction}^k",
            "catch-up": f"catch-up: stop a trial that cannot reach the best score so far at its recent pace"
                        f"{', slowing as 1/epoch' if self.pace == 'slowing' else ''}, after {self.warmup_epochs} "
                        f"epoch(s)" + ("; before that, one that cannot reach it even by gaining what a trial as "
                                       "slow per epoch gained after as many epochs" if self.peers else ""),
        }[self.strategy]

    def record(self) -> dict[str, Any]:
        """The settings as space.json and results.json keep them: the three every version recorded, a
        catch-up rule's pace and peers, and the others only where they differ from their defaults (so earlier
        runs still resume)."""
        data = asdict(self)
        defaults = asdict(Pruning())
        kept = ("strategy", "warmup_epochs", "min_trials",
                *(("pace", "peers") if self.strategy == "catch-up" else ()))
        return {key: value for key, value in data.items() if key in kept or value != defaults[key]}


def recorded_pruning(record: dict[str, Any]) -> dict[str, Any]:
    """Pruning settings as a run recorded them, in today's terms: a catch-up rule recorded without its pace
    held the pace (the only one there was), and one recorded without ``peers`` did not judge by them."""
    if record.get("strategy") == "catch-up":
        return {"pace": "held", "peers": False, **record}
    return record


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


PRUNING_KEYS = tuple(field.name for field in fields(Pruning))


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: the values to try and the fixed training budget."""

    name: str
    description: str
    hyperparameters: dict[str, tuple[Any, ...]]
    optimizer: str
    epochs: int
    validation_images: int
    train_images: int | None
    early_stopping_patience: int = 0
    lr_schedule: str = "constant"
    retrain_epochs: int = 0
    pruning: Pruning = field(default_factory=lambda: Pruning())
    source: str = field(default="", compare=False)
    model: str = ""  # a model of your own (its name), built by your build(hp); "": the package's networks
    model_hyperparameters: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # that model's, by name

    @property
    def learning_rates(self) -> tuple[float, ...]:
        return self.hyperparameters["learning_rate"]

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self.values()["batch_size"]

    @property
    def losses(self) -> tuple[str, ...]:
        return self.hyperparameters["loss"]

    def fixed_value(self, name: str, optimizer: str | None = None) -> Any:
        """The value a hyperparameter the file does not search takes: the study's, or for the learning
        rate the trial's optimizer's usual one."""
        if name == "optimizer":
            return self.optimizer
        if name == "learning_rate":
            return default_learning_rate(optimizer or self.optimizer)
        return study_default(name)

    def effective_hyperparameters(self, values: dict[str, Any]) -> dict[str, Any]:
        """Every hyperparameter's value in a trial whose searched values are ``values``, defaults resolved
        (Keras Tuner's 0/1 for booleans turned back into booleans). For a model of your own: its name as the
        network, the training loop's hyperparameters and the model's own."""
        if self.model:
            searched = self.values()
            return {"network": self.model, **{name: values.get(name, searched[name][0]) for name in searched}}
        listed = {name: bool(value) if name in BOOLEAN_HYPERPARAMETERS else value
                  for name, value in values.items() if name in HYPERPARAMETERS}
        optimizer = listed.get("optimizer", self.hyperparameters.get("optimizer", (self.optimizer,))[0])
        resolved: dict[str, Any] = {}
        for name in HYPERPARAMETERS:
            if name in listed:
                resolved[name] = listed[name]
            elif name in self.hyperparameters:
                resolved[name] = self.hyperparameters[name][0]
            else:
                resolved[name] = self.fixed_value(name, optimizer)
        return resolved

    def describe_optimizer(self) -> str:
        if self.model:
            return "the model's own"
        return "|".join(self.hyperparameters.get("optimizer", (self.optimizer,)))

    @property
    def num_configurations(self) -> int:
        return math.prod(len(values) for values in self.values().values())

    def values(self) -> dict[str, tuple[Any, ...]]:
        """Hyperparameter name -> the values to try, in file order (those the file lists), then a model of
        your own's."""
        return {**self.hyperparameters, **self.model_hyperparameters}

    def configurations(self) -> list[dict[str, Any]]:
        """Every combination, in grid order (at most MAX_CONFIGURATIONS, checked when parsed)."""
        values = self.values()
        return [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a run and its resumption (JSON-ready)."""
        data = asdict(self)
        for key in ("source", "description", "model", "model_hyperparameters"):
            data.pop(key)
        data["hyperparameters"] = {name: list(values) for name, values in self.hyperparameters.items()}
        data["pruning"] = self.pruning.record()
        if self.model:
            own = {name: list(values) for name, values in self.model_hyperparameters.items()}
            data["model"] = {"name": self.model, "hyperparameters": own}
        return data

    def with_model(self, name: str, hyperparameters: dict[str, tuple[Any, ...]]) -> SearchSpace:
        """A copy that searches a model of your own: its hyperparameters, and of the file's only those the
        training loop applies to any network (:data:`FIT_HYPERPARAMETERS`)."""
        where = f"search space {self.source or self.name}"
        searched_elsewhere = [key for key, values in self.hyperparameters.items()
                              if key not in FIT_HYPERPARAMETERS and key not in hyperparameters and len(values) > 1]
        if searched_elsewhere:
            raise SpaceError(f"{where} searches {', '.join(searched_elsewhere)}, which a model of your own sets in "
                             f"its build(hp): declare them there, or use a space that lists one value each")
        if self.lr_schedule != "constant" or "warmup_epochs" in self.hyperparameters:
            raise SpaceError(f"{where} schedules the learning rate, which a model of your own sets in its "
                             f"optimizer: use lr_schedule = \"constant\" and no warmup_epochs")
        declared = {key: values for key, values in hyperparameters.items() if key not in FIT_HYPERPARAMETERS}
        fit = {key: _values(list(values), key, HYPERPARAMETERS[key], where)  # the loop applies them: checked
               for key, values in hyperparameters.items() if key in FIT_HYPERPARAMETERS}
        kept = {key: values for key, values in self.hyperparameters.items() if key in FIT_HYPERPARAMETERS}
        if not NAME_PATTERN.fullmatch(name):
            raise SpaceError(f"model name {name!r} is not a plain name: name the build function or HyperModel "
                             f"with {NAME_RULE}")
        return replace(self, hyperparameters={**kept, **fit}, model=name,
                       model_hyperparameters=_model_hyperparameters(declared, where))

    def with_pruning(self, strategy: str | None = None, warmup_epochs: int | None = None,
                     min_trials: int | None = None) -> SearchSpace:
        """A copy with command-line overrides of the pruning settings."""
        given = {"strategy": strategy, "warmup_epochs": warmup_epochs, "min_trials": min_trials}
        overrides: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
        if overrides.get("strategy") == "median":
            overrides["percentile"] = 50.0
        return SearchSpace(**{**self.__dict__, "pruning": replace(self.pruning, **overrides)})

    def with_epochs(self, epochs: int) -> SearchSpace:
        """A copy with another epoch budget (the ``--epochs`` override)."""
        if epochs < 1:
            raise SpaceError(f"--epochs {epochs}: must be at least 1")
        return SearchSpace(**{**self.__dict__, "epochs": epochs})


def resolve_space_path(name_or_path: str) -> Path:
    """A path as given, or a built-in space name such as ``quick`` or ``report``."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if candidate.exists() and not candidate.is_file():
            raise SpaceError(f"search space {candidate} is not a regular file: pass a .toml file")
        if not candidate.is_file():
            raise SpaceError(f"search space file {candidate} does not exist: pass an existing .toml file "
                             f"or one of the built-in names ({', '.join(builtin_space_names())})")
        return candidate
    for directory in (Path.cwd() / "search_spaces", BUILTIN_DIR):
        path = directory / f"{name_or_path}.toml"
        if path.is_file():
            return path
    raise SpaceError(f"unknown search space {name_or_path!r}: use one of {', '.join(builtin_space_names())} "
                     f"or a path to a .toml file")


def builtin_space_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def load_space(name_or_path: str) -> SearchSpace:
    """Read and validate a search-space file (or built-in name)."""
    path = resolve_space_path(name_or_path)
    if path.stat().st_size > MAX_SPACE_FILE_BYTES:
        raise SpaceError(f"search space {path}: {path.stat().st_size:,} bytes, over the {MAX_SPACE_FILE_BYTES:,}-byte "
                         f"limit for a space file: list fewer values")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise SpaceError(f"search space {path}: malformed TOML ({error}): fix the syntax") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpaceError(f"search space {path}: cannot be read ({error})") from None
    return parse_space(data, source=shown_source(path))


def shown_source(path: Path) -> str:
    """Where a space came from, as records and messages show it: a built-in space (or one of the working
    folder's search_spaces/) as ``search_spaces/NAME.toml``, never the machine's own install path; a file
    the user named, as they gave it."""
    if path.resolve().parent in (BUILTIN_DIR, (Path.cwd() / "search_spaces").resolve()):
        return f"search_spaces/{path.name}"
    return str(path)


def parse_space(data: dict[str, Any], source: str = IN_MEMORY_SOURCE) -> SearchSpace:
    """Validate the parsed TOML of a space file."""
    where = f"search space {source}"
    _reject_unknown(data, TOP_LEVEL_KEYS, where, "")
    hyper = _table(data, "hyperparameters", where)
    training = _table(data, "training", where)
    _reject_unknown(hyper, tuple(HYPERPARAMETERS), where, "[hyperparameters].")
    _reject_unknown(training, TRAINING_KEYS, where, "[training].")
    if "optimizer" in hyper and "optimizer" in training:
        raise SpaceError(f"{where}: optimizer is given in both [hyperparameters] and [training]: keep one")

    hyperparameters: dict[str, tuple[Any, ...]] = {}
    for name, kind in HYPERPARAMETERS.items():
        if name in hyper:
            hyperparameters[name] = _values(hyper[name], name, kind, where)
        elif kind.required:
            raise SpaceError(f"{where}: [hyperparameters].{name} is missing: give a list of values to try")
    optimizer = _one_of(OPTIMIZERS)(training.get("optimizer", "adadelta"))
    if optimizer is None:
        raise SpaceError(f"{where}: [training].optimizer must be one of {', '.join(OPTIMIZERS)}")
    epochs = _integer(training, "epochs", where, minimum=1)
    validation_images = _integer(training, "validation_images", where, minimum=1, default=6000)
    train_images = None
    if "train_images" in training:
        train_images = _integer(training, "train_images", where, minimum=1)
        if train_images < max(hyperparameters["batch_size"]):
            raise SpaceError(f"{where}: [training].train_images = {train_images} is smaller than the largest "
                             f"batch_size {max(hyperparameters['batch_size'])}: raise train_images or lower the "
                             f"batch size")
    pruning_table = data.get("pruning", {})
    if not isinstance(pruning_table, dict):
        raise SpaceError(f"{where}: [pruning] must be a table")
    _reject_unknown(pruning_table, PRUNING_KEYS, where, "[pruning].")
    settings = {**pruning_table}
    if settings.get("strategy") == "percentile" and "percentile" not in settings:
        raise SpaceError(f"{where}: [pruning].percentile is missing: strategy \"percentile\" needs one, e.g. 25")
    try:
        pruning = Pruning(**settings)
    except SpaceError as error:
        raise SpaceError(f"{where}: {error}") from None
    lr_schedule = _one_of(LR_SCHEDULES)(training.get("lr_schedule", "constant"))
    if lr_schedule is None:
        raise SpaceError(f"{where}: [training].lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
    name = data.get("name", IN_MEMORY_NAME if source == IN_MEMORY_SOURCE else Path(source).stem)
    description = data.get("description", "")
    if not isinstance(name, str) or not name or not isinstance(description, str):
        raise SpaceError(f"{where}: name and description must be strings")
    if not NAME_PATTERN.fullmatch(name):
        raise SpaceError(f"{where}: name {name!r} is not a plain name (it names runs and exports): set `name` "
                         f"in the file to {NAME_RULE}")
    configurations = math.prod(len(values) for values in hyperparameters.values())
    if configurations > MAX_CONFIGURATIONS:
        raise SpaceError(f"{where}: {configurations:,} configurations, over the limit of {MAX_CONFIGURATIONS:,}: "
                         f"list fewer values, or split the search into several spaces")
    return SearchSpace(
        name=name, description=description, hyperparameters=hyperparameters, optimizer=optimizer, epochs=epochs,
        validation_images=validation_images, train_images=train_images,
        early_stopping_patience=_integer(training, "early_stopping_patience", where, minimum=0, default=0),
        lr_schedule=lr_schedule,
        retrain_epochs=_integer(training, "retrain_epochs", where, minimum=0, default=0),
        pruning=pruning,
        source=source,
    )


def _model_hyperparameters(hyperparameters: dict[str, Any], where: str) -> dict[str, tuple[Any, ...]]:
    """A model of your own's hyperparameters (name -> values to try), checked: plain names, and values that are
    numbers, strings or booleans (JSON's, so that the record and the journal keep them)."""
    checked: dict[str, tuple[Any, ...]] = {}
    for key, values in hyperparameters.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise SpaceError(f"{where}: model hyperparameter {key!r} is not a plain name: use letters, digits and _")
        listed = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not listed or not all(isinstance(v, (bool, int, float, str)) for v in listed):
            raise SpaceError(f"{where}: model hyperparameter {key} = {values!r}: expected a list of numbers, "
                             f"strings or booleans to try")
        if len(set(listed)) != len(listed):
            raise SpaceError(f"{where}: model hyperparameter {key} lists a value twice: list each once")
        checked[key] = listed
    if math.prod(len(values) for values in checked.values()) > MAX_CONFIGURATIONS:
        raise SpaceError(f"{where}: the model's hyperparameters make over {MAX_CONFIGURATIONS:,} configurations: "
                         f"list fewer values")
    return checked


def _reject_unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            shown = key if key.isidentifier() else repr(key)  # keep the message on one line
            raise SpaceError(f"{where}: unknown key {prefix}{shown}: allowed keys are {', '.join(allowed)}")


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    table = data.get(key)
    if not isinstance(table, dict):
        raise SpaceError(f"{where}: the [{key}] table is missing")
    return table


def _values(raw: Any, name: str, kind: HyperparameterKind, where: str) -> tuple[Any, ...]:
    table = "[hyperparameters]"
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise SpaceError(f"{where}: {table}.{name} is an empty list: give at least one value")
    converted = []
    for value in values:
        result = kind.convert(value)
        if result is None:
            raise SpaceError(f"{where}: {table}.{name} has invalid value {value!r}: {kind.expectation}")
        converted.append(result)
    if len(set(converted)) != len(converted):
        raise SpaceError(f"{where}: {table}.{name} lists a value twice: list each value once")
    return tuple(converted)


def _integer(values: dict[str, Any], key: str, where: str, minimum: int, default: int | None = None,
             section: str = "training") -> int:
    if key not in values:
        if default is None:
            raise SpaceError(f"{where}: [{section}].{key} is missing")
        return default
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpaceError(f"{where}: [{section}].{key} = {value!r}: expected a whole number >= {minimum}")
    return value
